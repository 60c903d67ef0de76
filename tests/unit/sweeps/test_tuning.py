"""StudySearcher driven the way Tune drives it (suggest, on_trial_result, on_trial_complete, save/restore) over
a real Optuna journal, without a cluster: budgets, bounds, the time budget, and a driver killed between Tune's
experiment-state saves."""
from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweeps.searcher import time_left_when_saved, StudySearcher
from sweeps.seed_price import CONFIRMATION_SLACK, CONFIRMATION_START_S
from sweeps.studies import JOURNAL, METRIC, RUNG_METRIC, open_journal, Study
from sweeps.tuning import pending_limit, PerStudyASHA, SearchEnd


class ManualClock:
    """A clock the test moves (picklable, as Tune pickles the searcher)."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


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
    searcher = StudySearcher(studies(), tmp_path / JOURNAL, "random", seed=0)
    configs = {}
    for n in range(5):
        configs[f"t{n}"] = searcher.suggest(f"t{n}")
    assert [c["study"] for c in configs.values() if isinstance(c, dict)] == ["alpha", "beta", "alpha", "beta"]
    assert configs["t4"] is None  # both studies at their bound of 2: wait

    searcher.on_trial_result("t0", result(configs["t0"], 1, 0.3))
    searcher.on_trial_complete("t0", result(configs["t0"], 2, 0.4))  # ran both epochs
    searcher.on_trial_complete("t1", result(configs["t1"], 1, 0.2))  # stopped after one (ASHA)
    searcher.on_trial_complete("t2", error=True)  # a failed trial does not count against alpha's 3
    # fewest trials asked first: alpha has asked 1 besides its failure, beta 2
    assert [searcher.suggest(trial_id)["study"] for trial_id in ("t5", "t6", "t7")] == ["alpha", "alpha", "beta"]
    assert searcher.suggest("t8") == StudySearcher.FINISHED  # both asked 3 (alpha besides its failure)
    for trial_id in ("t3", "t5", "t6", "t7"):
        searcher.on_trial_complete(trial_id, result({}, 2, 0.1))

    storage = open_journal(tmp_path / JOURNAL)
    alpha = optuna.load_study(study_name="alpha", storage=storage).trials
    assert [t.state for t in alpha] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                        TrialState.COMPLETE]
    assert alpha[0].value == 0.4 and alpha[0].intermediate_values == {1: 0.3, 2: 0.4}
    [pruned, *_] = optuna.load_study(study_name="beta", storage=storage).trials
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {1: 0.2}
    assert [t.user_attrs["tune_trial_id"] for t in alpha] == ["t0", "t2", "t5", "t6"]


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


def test_the_search_leaves_the_confirmation_seeds_what_the_best_configuration_needs(tmp_path, capsys):
    """2 confirmation seeds, one at a time. The reserve is priced from the best trial so far: its measured first
    epoch, its later epochs as long as they took, times the epochs its configuration trains; it follows the leader."""
    now = [1000.0]
    [alpha] = studies(num_samples=10, max_concurrent=1)[:1]
    searcher = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=2,
                             clock=lambda: now[0])
    stopper = SearchEnd(searcher)
    first = searcher.suggest("a0")
    deadline = now[0] + 600
    assert searcher.search_deadline() == deadline and not stopper.stop_all()  # nothing measured: no reserve
    # a 2-epoch trial: 30 s to its first epoch (loading included), 20 s for its second
    searcher.on_trial_result("a0", {**result(first, 1, 0.5), "time_total_s": 30.0})
    searcher.on_trial_complete("a0", {**result(first, 2, 0.6), "time_total_s": 50.0})
    priced = 2 * (30 + 20) * CONFIRMATION_SLACK + CONFIRMATION_START_S
    assert searcher.search_deadline() == pytest.approx(deadline - priced)
    # a better 1-epoch configuration leads now: its seeds take one 40 s epoch each
    second = searcher.suggest("a1")
    searcher.on_trial_complete("a1", {**result({**second, "epochs": 1}, 1, 0.7), "time_total_s": 40.0})
    priced = 2 * 40 * CONFIRMATION_SLACK + CONFIRMATION_START_S
    assert searcher.search_deadline() == pytest.approx(deadline - priced)

    now[0] = deadline - priced - 35  # 35 s before the search ends: a first epoch (median 35 s) just fits
    assert isinstance(searcher.suggest("a2"), dict) and not stopper.stop_all()
    assert "search starts no more" not in capsys.readouterr().out
    now[0] += 1  # no longer: no new trial, and the running one stops when the search ends
    assert searcher.suggest("a3") == StudySearcher.FINISHED and not stopper.stop_all()
    now[0] = deadline - priced
    assert stopper.stop_all()
    [line] = capsys.readouterr().out.splitlines()  # said once, when no trial could start any more
    assert line == (f"search starts no more trials with {(priced + 34) / 60:.1f} min of the time budget left, "
                    f"{priced / 60:.1f} of them kept for 2 confirmation seeds "
                    f"(alpha's best, 1 epoch at ~0.7 min a seed; a trial took 0 s to start)")


def test_the_reserve_holds_the_searchs_own_start_as_measured(tmp_path):
    """The confirmation phase starts a new Tuner, as the search did: from the search's first ask to its first trial's
    trainable starting (the first report's clock less the time the trainable had run) is priced in again. Only the
    first report of a run is that start; the measurement survives the saved state."""
    now = [1000.0]
    [alpha] = studies(num_samples=10, max_concurrent=1)[:1]
    searcher = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=1,
                             clock=lambda: now[0])
    first = searcher.suggest("a0")
    now[0] += 25 + 30  # 25 s placing the trial and starting its process, then a 30-s epoch
    searcher.on_trial_result("a0", {**result(first, 1, 0.5), "time_total_s": 30.0})
    assert searcher.start_s == pytest.approx(25.0)
    now[0] += 20
    searcher.on_trial_complete("a0", {**result(first, 2, 0.6), "time_total_s": 50.0})
    second = searcher.suggest("a1")  # a reused process: starts at once, but is not the search's start
    now[0] += 100 + 30
    searcher.on_trial_complete("a1", {**result({**second, "epochs": 1}, 1, 0.7), "time_total_s": 30.0})
    assert searcher.start_s == pytest.approx(25.0)
    assert searcher.search_deadline() == pytest.approx(1000.0 + 600 - (30 * CONFIRMATION_SLACK + 25
                                                                         + CONFIRMATION_START_S))
    searcher.save(str(tmp_path / "state.json"))
    again = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=1,
                          clock=lambda: now[0])
    again.restore(str(tmp_path / "state.json"))
    assert again.start_s == pytest.approx(25.0) and again._reserve_s == pytest.approx(searcher._reserve_s)


def test_the_reserve_survives_the_searchers_saved_state(tmp_path):
    """What --resume restores: a searcher that knows the measured trials prices the seeds as the killed one did."""
    [alpha] = studies(num_samples=10, max_concurrent=1)[:1]
    searcher = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=3)
    first = searcher.suggest("a0")
    searcher.on_trial_complete("a0", {**result(first, 1, 0.5), "time_total_s": 30.0})
    searcher.save(str(tmp_path / "state.json"))
    again = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=3)
    again.restore(str(tmp_path / "state.json"))
    assert again._reserve_s == searcher._reserve_s == pytest.approx(3 * 60 * CONFIRMATION_SLACK + CONFIRMATION_START_S)


def test_tpe_launches_its_startup_trials_at_once_and_guided_ones_only_as_results_come_in(tmp_path):
    [alpha] = studies(num_samples=30, max_concurrent=100)[:1]
    searcher = StudySearcher([alpha], tmp_path / JOURNAL, "tpe", seed=0)
    startup = [searcher.suggest(f"s{n}") for n in range(10)]  # TPE's 10 random startup trials
    assert all(isinstance(config, dict) for config in startup)
    assert searcher.suggest("g0") is None  # a guided trial now would learn from nothing
    for n in range(4):
        searcher.on_trial_complete(f"s{n}", result(startup[n], 2, 0.1 * n))
    # 6 in flight, 4 results: guided trials may fill up to max(10 startup, 4 results) in flight
    guided = [searcher.suggest(f"g{n}") for n in range(5)]
    assert [isinstance(config, dict) for config in guided] == [True] * 4 + [False]


def test_trials_in_flight_hold_at_most_the_clusters_capacity_split_evenly_between_open_studies(tmp_path):
    alpha, beta = studies(num_samples=20, max_concurrent=100)
    beta.gpus = 0.5
    searcher = StudySearcher([alpha, beta], tmp_path / JOURNAL, "random", seed=0, capacity=2)
    handed = [searcher.suggest(f"t{n}") for n in range(7)]
    names = [config["study"] for config in handed if isinstance(config, dict)]
    # even part: 2 GPUs / (0.25 + 0.5) = 2.67 trials per study, taken in turn; then whoever fits what is left
    assert names == ["alpha", "beta", "alpha", "beta", "alpha", "alpha"] and handed[-1] is None
    first_alpha = names.index("alpha")
    searcher.on_trial_complete(f"t{first_alpha}", result(handed[first_alpha], 2, 0.3))
    assert searcher.suggest("t6")["study"] == "alpha"  # 0.25 GPU freed: only an alpha trial fits


def test_before_any_trial_has_run_the_plans_compute_estimate_starts_the_longest_work_first(tmp_path):
    alpha, beta = studies(num_samples=4, max_concurrent=1)
    alpha.epoch_tflop, beta.epoch_tflop = 100.0, 800.0  # beta: an ALBERT to alpha's MiniLM
    searcher = StudySearcher([alpha, beta], tmp_path / JOURNAL, "random", seed=0)
    assert [searcher.suggest(f"t{n}")["study"] for n in range(2)] == ["beta", "alpha"]


def test_each_study_draws_its_own_configurations_and_a_resumed_one_draws_no_configuration_again(tmp_path):
    searcher = StudySearcher(studies(num_samples=6, max_concurrent=6), tmp_path / JOURNAL, "random", seed=0)
    first = [searcher.suggest(f"t{n}") for n in range(6)]
    by_study = {name: [c["lr"] for c in first if c["study"] == name] for name in ("alpha", "beta")}
    assert not set(by_study["alpha"]) & set(by_study["beta"])  # not one seed for all studies
    for n, config in enumerate(first):
        searcher.on_trial_complete(f"t{n}", result(config, 2, 0.5))

    resumed = StudySearcher(studies(num_samples=6, max_concurrent=6), tmp_path / JOURNAL, "random", seed=0)
    later = [resumed.suggest(f"r{n}") for n in range(6)]
    assert not {c["lr"] for c in later} & {c["lr"] for c in first}


def test_the_time_left_is_saved_and_a_resumed_searcher_goes_on_with_it(tmp_path):
    clock = ManualClock(1000.0)
    searcher = StudySearcher(studies(num_samples=10, max_concurrent=1), tmp_path / JOURNAL, "random", seed=0,
                             time_budget_s=600, clock=clock)
    pickled = pickle.dumps(searcher)
    searcher.suggest("t0")
    clock.now += 400  # 400 s into the 600 s budget, Tune saves the experiment
    searcher.save(str(tmp_path / "searcher-state-x.pkl"))
    assert time_left_when_saved(tmp_path) == 200

    restored = pickle.loads(pickled)
    restored.restore(str(tmp_path / "searcher-state-x.pkl"))
    restored.clock.now = clock.now + 5000  # the driver was dead for over an hour: that time is not the sweep's
    restored.suggest("t1")
    assert restored._deadline == restored.clock.now + 200


def test_adaptive_allocation_moves_a_model_reliably_behind_to_the_leaders(tmp_path):
    three = studies(num_samples=4, max_concurrent=10) + [Study(
        "gamma", {"model": "gamma", "epochs": 2}, {"lr": FloatDistribution(1e-5, 1e-3, log=True)},
        num_samples=4, max_concurrent=10, cpus=1, gpus=0.25)]
    searcher = StudySearcher(three, tmp_path / JOURNAL, "random", seed=0, allocate="adaptive")
    configs = {f"t{n}": searcher.suggest(f"t{n}") for n in range(6)}  # 2 per study (startup: 2 of 4)
    scores = {"alpha": 0.50, "beta": 0.49, "gamma": 0.40}  # gamma is behind by far more than 2 seed sds
    for trial_id, config in configs.items():
        searcher.on_trial_complete(trial_id, result(config, 2, scores[config["study"]]))
    storage = open_journal(tmp_path / JOURNAL)
    gamma = optuna.load_study(study_name="gamma", storage=storage)
    assert "gamma (best 0.4000) is behind alpha" in gamma.user_attrs["allocation"]
    budgets = {name: optuna.load_study(study_name=name, storage=storage).user_attrs["trial_budget"]
               for name in ("alpha", "beta", "gamma")}
    assert budgets == {"alpha": 5, "beta": 5, "gamma": 2}  # gamma's 2 remaining trials, one to each leader
    later = [searcher.suggest(f"n{n}") for n in range(7)]
    assert sorted(c["study"] for c in later if isinstance(c, dict)) == ["alpha"] * 3 + ["beta"] * 3
    assert later[-1] == StudySearcher.FINISHED


def test_asha_rungs_are_rebuilt_from_the_journal_so_a_resumed_sweep_prunes_as_before(tmp_path):
    from ray.tune.experiment import Trial

    searcher = StudySearcher(studies(num_samples=6, max_concurrent=6)[:1], tmp_path / JOURNAL, "random", seed=0)
    for n, score in enumerate((0.5, 0.6, 0.7, 0.8)):
        config = searcher.suggest(f"t{n}")
        searcher.on_trial_complete(f"t{n}", result(config, 1, score))  # stopped after epoch 1

    scheduler = PerStudyASHA(max_t=2, journal=tmp_path / JOURNAL)  # a fresh one, as after a resume
    scheduler.set_search_properties(METRIC, "max")
    weak = Trial("sim", config={"study": "alpha"}, trial_id="late", stub=True)
    scheduler.on_trial_add(None, weak)
    assert scheduler.on_trial_result(None, weak, {"training_iteration": 1, METRIC: 0.55}) == "STOP"
    strong = Trial("sim", config={"study": "alpha"}, trial_id="good", stub=True)
    scheduler.on_trial_add(None, strong)
    assert scheduler.on_trial_result(None, strong, {"training_iteration": 1, METRIC: 0.9}) == "CONTINUE"


def test_tune_may_keep_as_many_trials_waiting_as_the_whole_cluster_holds():
    alpha, beta = studies()
    beta.gpus = 0.5
    assert pending_limit([alpha, beta], capacity=None) == 2  # no cluster given: one per study
    assert pending_limit([alpha, beta], capacity=64) == 256  # 64 GPUs at the smallest share, 0.25


def test_a_trial_tune_resumes_after_its_journal_trial_ended_keeps_the_epochs_it_trains_on(tmp_path):
    """An errored trial is told FAIL; `--resume` resumes it from its checkpoint and it trains on. Its epochs go
    into a trial of their own (Optuna does not reopen a finished trial) that says which one it continues."""
    searcher = StudySearcher(studies(num_samples=2, max_concurrent=1)[:1], tmp_path / JOURNAL, "random", seed=0)
    config = searcher.suggest("t0")
    searcher.on_trial_result("t0", result(config, 1, 0.4))
    searcher.on_trial_complete("t0", error=True)  # errored after epoch 1: FAIL (not counted)
    searcher.live["t0"] = ("alpha", 0)  # Tune resumes it: its saved state still names the Optuna trial
    searcher.on_trial_result("t0", result(config, 1, 0.4))  # epoch 1 again, from the checkpoint: known
    searcher.on_trial_complete("t0", result(config, 2, 0.6))
    trials = optuna.load_study(study_name="alpha", storage=open_journal(tmp_path / JOURNAL)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].intermediate_values == {1: 0.4, 2: 0.6} and trials[1].user_attrs["continues"] == 0
    assert trials[1].params == trials[0].params


def test_a_study_that_cannot_use_its_even_part_leaves_it_to_the_others(tmp_path):
    """A 7B study holds at most its few large GPUs: the rest of the cluster is split between the other studies,
    and their random startup trials fill it."""
    small, large = studies(num_samples=200, max_concurrent=1000)
    large.gpus, large.max_concurrent = 1.0, 2  # two large GPUs in the cluster
    searcher = StudySearcher([small, large], tmp_path / JOURNAL, "tpe", seed=0, capacity=10)
    assert searcher.even_parts(["alpha", "beta"]) == {"beta": 2, "alpha": 32.0}  # (10 - 2) GPUs / 0.25
    assert searcher.startup("alpha") == 32 and searcher.startup("beta") == 20  # a tenth of its 200 trials


def test_rungs_inside_epochs_are_curve_points_and_only_epoch_ends_value_and_time_a_trial(tmp_path):
    """rungs_per_epoch 2: steps 1 and 3 are validation-subset scores (set higher than any epoch's here, as a small
    subset may score), steps 2 and 4 the epochs' whole-split scores. The journal keeps every step; the trial's value,
    the study's best and the seeds' price come from the epoch ends only."""
    now = [1000.0]
    alpha = Study("alpha", {"model": "alpha", "epochs": 2, "rungs_per_epoch": 2},
                  {"lr": FloatDistribution(1e-5, 1e-3, log=True)}, num_samples=4, max_concurrent=1, cpus=1, gpus=0)
    searcher = StudySearcher([alpha], tmp_path / JOURNAL, "random", seed=0, time_budget_s=600, confirm_seeds=1,
                             clock=lambda: now[0])

    def report(config: dict, step: int, score: float, seconds: float) -> dict:
        """What the trainable reports: METRIC at epoch ends only, RUNG_METRIC at every rung."""
        reported = {**result(config, step, score), RUNG_METRIC: score, "time_total_s": seconds}
        return reported if step % 2 == 0 else {key: value for key, value in reported.items() if key != METRIC}

    config = searcher.suggest("t0")
    for step, score, seconds in ((1, 0.9, 10.0), (2, 0.5, 30.0), (3, 0.95, 40.0)):
        searcher.on_trial_result("t0", report(config, step, score, seconds))
    searcher.on_trial_complete("t0", report(config, 4, 0.6, 50.0))
    # stopped by ASHA at its first rung: a result TPE learns from, with no epoch to select
    searcher.on_trial_complete("t1", report(searcher.suggest("t1"), 1, 0.99, 10.0))

    first, stopped = optuna.load_study(study_name="alpha", storage=open_journal(tmp_path / JOURNAL)).trials
    assert first.state == TrialState.COMPLETE and first.value == 0.6
    assert first.intermediate_values == {1: 0.9, 2: 0.5, 3: 0.95, 4: 0.6}
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.99}
    assert searcher._counts["alpha"].best == 0.6 and searcher._counts["alpha"].finished == 2
    # one seed of the 2-epoch configuration: its first epoch as measured (30 s), the second as long (20 s)
    assert searcher.search_deadline() == pytest.approx(1600.0 - ((30 + 20) * CONFIRMATION_SLACK
                                                                 + CONFIRMATION_START_S))


def test_asha_in_rungs_cuts_a_trial_inside_its_first_epoch():
    from ray.tune.experiment import Trial

    scheduler = PerStudyASHA(max_t=2 * 4)  # 2 epochs of 4 rungs
    scheduler.set_search_properties(RUNG_METRIC, "max")
    trials = []
    for trial_id, first_rung in (("good", 0.4), ("poor", 0.1)):
        trials.append(Trial("sim", config={"study": "alpha"}, trial_id=trial_id, stub=True))
        scheduler.on_trial_add(None, trials[-1])
        decision = scheduler.on_trial_result(None, trials[-1], {"training_iteration": 1, RUNG_METRIC: first_rung})
    assert decision == "STOP"  # a quarter epoch in, below the good trial's first rung
