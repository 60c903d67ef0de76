"""StudySearcher driven the way Tune drives it (suggest, on_trial_result, on_trial_complete, save/restore) over
a real Optuna journal, without a cluster: budgets, bounds, the time budget, and a driver killed between Tune's
experiment-state saves."""
from __future__ import annotations

import pickle

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweeps.tuning import JOURNAL, METRIC, Study, StudySearcher, open_journal


def studies(num_samples: int = 3, max_concurrent: int = 2) -> list[Study]:
    return [Study(name, {"model": name, "epochs": 2}, {"lr": FloatDistribution(1e-5, 1e-3, log=True)},
                  num_samples=num_samples, max_concurrent=max_concurrent, cpus=1, gpus=0.25)
            for name in ("alpha", "beta")]


def result(config: dict, epoch: int, score: float, seconds: float = 1.0) -> dict:
    """A result as Tune passes it to a searcher: flattened, with the trial's config under config/."""
    return {"training_iteration": epoch, METRIC: score, "time_total_s": seconds * epoch,
            **{f"config/{key}": value for key, value in config.items()}}


def journal_states(path) -> dict[str, list[TrialState]]:
    storage = open_journal(path)
    return {name: [t.state for t in optuna.load_study(study_name=name, storage=storage).trials]
            for name in optuna.get_all_study_names(storage)}


def test_budgets_bounds_and_how_each_trial_is_told(tmp_path):
    searcher = StudySearcher(studies(), tmp_path / JOURNAL, "tpe", seed=0)
    configs = {}
    for n in range(5):
        configs[f"t{n}"] = searcher.suggest(f"t{n}")
    assert [c["study"] for c in configs.values() if isinstance(c, dict)] == ["alpha", "beta", "alpha", "beta"]
    assert configs["t4"] is None  # both studies at their bound of 2: wait

    searcher.on_trial_result("t0", result(configs["t0"], 1, 0.3))
    searcher.on_trial_complete("t0", result(configs["t0"], 2, 0.4))  # ran both epochs
    searcher.on_trial_complete("t1", result(configs["t1"], 1, 0.2))  # stopped after one (ASHA)
    searcher.on_trial_complete("t2", error=True)
    assert searcher.suggest("t5")["study"] == "alpha" and searcher.suggest("t6")["study"] == "beta"
    assert searcher.suggest("t7") == StudySearcher.FINISHED  # 3 trials each asked: the running ones finish
    for trial_id in ("t3", "t5", "t6"):
        searcher.on_trial_complete(trial_id, result({}, 2, 0.1))

    storage = open_journal(tmp_path / JOURNAL)
    alpha = optuna.load_study(study_name="alpha", storage=storage).trials
    assert [t.state for t in alpha] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert alpha[0].value == 0.4 and alpha[0].intermediate_values == {1: 0.3, 2: 0.4}
    [pruned, *_] = optuna.load_study(study_name="beta", storage=storage).trials
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {1: 0.2}
    assert [t.user_attrs["tune_trial_id"] for t in alpha] == ["t0", "t2", "t5"]


def test_a_trial_asked_after_the_last_save_is_handed_out_again(tmp_path):
    """Tune saves its experiment state and the searcher's together, now and then; a driver killed between two
    saves has asked the journal for trials Tune's saved state never heard of. They come back, same parameters."""
    searcher = StudySearcher(studies(num_samples=2, max_concurrent=1), tmp_path / JOURNAL, "random", seed=0)
    pickled = pickle.dumps(searcher)  # what Tuner keeps in tuner.pkl
    first = searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher-state"))  # an experiment checkpoint: t0 is known to Tune
    lost = searcher.suggest("t1")  # asked, then the driver is SIGKILLed before the next save

    restored = pickle.loads(pickled)
    restored.restore(str(tmp_path / "searcher-state"))
    again = restored.suggest("t2")
    assert again == lost  # beta's orphan, not a new sample
    assert restored.suggest("t3") is None  # alpha: t0 (resumed by Tune) holds its one slot
    restored.on_trial_complete("t0", result(first, 2, 0.5))
    restored.on_trial_complete("t2", result(again, 2, 0.6))
    assert restored.suggest("t4")["study"] == "alpha" and restored.suggest("t5")["study"] == "beta"
    restored.on_trial_complete("t4", result({}, 2, 0.1))
    restored.on_trial_complete("t5", result({}, 2, 0.1))
    assert restored.suggest("t6") == StudySearcher.FINISHED
    assert journal_states(tmp_path / JOURNAL) == {"alpha": [TrialState.COMPLETE] * 2,
                                                  "beta": [TrialState.COMPLETE] * 2}


def test_no_trial_starts_that_could_not_finish_an_epoch_in_the_time_budget(tmp_path):
    searcher = StudySearcher(studies(num_samples=10, max_concurrent=1), tmp_path / JOURNAL, "random", seed=0,
                             time_budget_s=60)
    alpha, beta = searcher.suggest("a0"), searcher.suggest("b0")
    searcher.on_trial_complete("a0", result(alpha, 1, 0.5, seconds=30))  # alpha's first epoch took 30 s
    searcher.on_trial_complete("b0", result(beta, 1, 0.5, seconds=90))  # beta's took 90 s: too slow for 60
    assert searcher.suggest("a1")["study"] == "alpha"
    assert searcher.suggest("b1") is None  # alpha at its bound, beta too late
    searcher._deadline -= 45  # 45 s later: 15 s left, alpha needs 30
    searcher.on_trial_complete("a1", result(alpha, 1, 0.5, seconds=30))
    assert searcher.suggest("a2") == StudySearcher.FINISHED


def test_a_grid_runs_each_point_once_and_its_end_is_no_error(tmp_path):
    """GridSampler asks Optuna to stop the study when its grid is used up, which Optuna refuses outside
    study.optimize; the searcher ends the study by its budget instead."""
    grid = [Study("alpha", {"epochs": 1}, {"lr": [1e-4, 1e-3], "batch_size": [16]}, num_samples=2,
                  max_concurrent=2, cpus=1, gpus=0)]
    searcher = StudySearcher(grid, tmp_path / JOURNAL, "grid", seed=0)
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert sorted(config["lr"] for config in (first, second)) == [1e-4, 1e-3]
    searcher.on_trial_complete("t0", result(first, 1, 0.5))
    searcher.on_trial_complete("t1", result(second, 1, 0.6))
    assert searcher.suggest("t2") == StudySearcher.FINISHED
    assert journal_states(tmp_path / JOURNAL) == {"alpha": [TrialState.COMPLETE] * 2}


def test_once_every_study_has_a_finished_trial_the_most_work_left_goes_first(tmp_path):
    """alpha's trials take 10 s, beta's 100 s: beta would run alone at the end if slots went round-robin."""
    searcher = StudySearcher(studies(num_samples=4, max_concurrent=1), tmp_path / JOURNAL, "random", seed=0)
    alpha, beta = searcher.suggest("a0"), searcher.suggest("b0")
    searcher.on_trial_complete("a0", result(alpha, 2, 0.5, seconds=5))
    assert searcher.suggest("a1")["study"] == "alpha"  # beta has not finished a trial yet: round-robin
    searcher.on_trial_complete("b0", result(beta, 2, 0.5, seconds=50))
    searcher.on_trial_complete("a1", result(alpha, 2, 0.5, seconds=5))
    assert [searcher.suggest(f"n{n}")["study"] for n in range(2)] == ["beta", "alpha"]


def test_the_search_leaves_room_for_the_confirmation_seeds(tmp_path):
    """2 confirmation seeds, one at a time, each up to 2 epochs of 10 s: 40 s are kept free at the budget's end."""
    searcher = StudySearcher(studies(num_samples=10, max_concurrent=1)[:1], tmp_path / JOURNAL, "random", seed=0,
                             time_budget_s=100, confirm_seeds=2)
    alpha = searcher.suggest("a0")
    searcher.on_trial_complete("a0", result(alpha, 1, 0.5, seconds=10))  # one epoch of 10 s, the trial 10 s
    assert searcher.suggest("a1")["study"] == "alpha"  # 10 s + 40 s reserved fits in the 100 s left
    searcher.on_trial_complete("a1", result(alpha, 1, 0.5, seconds=10))
    searcher._deadline -= 55  # 45 s left: a 10 s trial and the 40 s of confirmations no longer fit
    assert searcher.suggest("a2") == StudySearcher.FINISHED
