"""`--warm-start RESULTS_DIR ...`: each model's study starts with the best finished configurations of the earlier
experiments' studies of that model, enqueued (sweeps/warm_start.py). Checked without Ray: the source experiments are
ones a stopped sweep leaves (tests/helpers/experiments.py) with finished trials added through Optuna, or journals
made with Optuna directly; the sweep runs in this process with --dry-run (`run_cli`), and the new experiment's
journal is driven by the real StudySearcher as Tune drives it (write_experiment). Bad input is one line naming the
flag and dir, exit 2, nothing written, the source untouched."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweeps import goemotions_raw
from sweeps.cli import build_parser, resumed_args
from sweeps.cluster import local_cluster
from sweeps.plan import make_plan
from sweeps.run import studies_of
from sweeps.searcher import StudySearcher
from sweeps.studies import JOURNAL, open_journal
from sweeps.warm_start import chosen, fitted, warm_start_lines
from tests.helpers.experiments import epoch_result, write_experiment

VALUES = [0.48, 0.45, 0.30]  # the finished trials added to the source, besides its own (0.1)


def files(root: Path) -> dict:
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(root.rglob("*"))}


def study_trials(journal: Path, name: str) -> list:
    return optuna.load_study(study_name=name, storage=open_journal(journal)).trials


@pytest.fixture(scope="module")
def source(tmp_path_factory, goemotions_dir, tiny_bert) -> Path:
    """An earlier goemotions_raw sweep of tiny_bert, stopped, with three more finished trials (best 0.48)."""
    source = write_experiment(goemotions_raw.EXPERIMENT, [
        "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget", "smoke", "--search", "random",
        "--num-samples", "6", "--storage", str(tmp_path_factory.mktemp("earlier")), "--name", "earlier"])
    study = optuna.load_study(study_name=tiny_bert.name, storage=open_journal(source / JOURNAL))
    [finished] = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    for value, lr in zip(VALUES, (1e-4, 2e-4, 5e-5)):
        study.add_trial(create_trial(value=value, params={**finished.params, "lr": lr},
                                     distributions=finished.distributions))
    return source


def hand_made(path: Path, like: Path, study: str, trials: list) -> Path:
    """An experiment dir with `like`'s sweep.json and a journal, made by Optuna, of one study holding `trials`."""
    path.mkdir(parents=True)
    shutil.copy(like / "sweep.json", path)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path / JOURNAL)))
    optuna.create_study(study_name=study, storage=storage, direction="maximize").add_trials(trials)
    return path


def sweep_args(data: Path, model: Path, storage: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data), "--models", str(model), "--budget", "smoke", "--num-samples", "6", "--storage",
            str(storage), "--name", "next", *extra]


def test_the_plan_names_each_models_warm_start_and_reads_the_source_without_writing(run_cli, source, tmp_path,
                                                                                     goemotions_dir, tiny_bert):
    before = files(source)
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path, "--dry-run", "--warm-start",
                                                 str(source)))
    assert result.returncode == 0, result.stderr
    assert f"    warm start: 3 configurations from {source} (goemotions, val macro_f1 0.4800 best)\n" in result.stdout
    assert files(source) == before and not (tmp_path / "next").exists()


def test_the_best_trials_are_enqueued_first_recorded_in_sweep_json_and_not_enqueued_again_on_resume(
        source, tmp_path, goemotions_dir, tiny_bert):
    """write_experiment writes sweep.json and asks the real searcher (TPE) for two trials, as Tune would."""
    experiment = write_experiment(goemotions_raw.EXPERIMENT, sweep_args(goemotions_dir, tiny_bert, tmp_path,
                                                                         "--warm-start", str(source)))
    earlier = {trial.number: trial for trial in study_trials(source / JOURNAL, tiny_bert.name)}
    best = sorted((trial for trial in earlier.values() if trial.state == TrialState.COMPLETE),
                  key=lambda trial: trial.value, reverse=True)[:3]
    [row] = json.loads((experiment / "sweep.json").read_text())["models"]
    assert row["warm_start"] == [{"experiment": str(source), "dataset": "goemotions", "metric": "macro_f1",
                                  "best": 0.48, "trials": [{"trial": trial.number, "value": trial.value,
                                                            "params": trial.params} for trial in best]}]
    trials = study_trials(experiment / JOURNAL, tiny_bert.name)
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING]
    assert [trial.params for trial in trials[:2]] == [trial.params for trial in best[:2]]  # in the Tune configs
    assert [trial.user_attrs["warm_start_from"] for trial in trials] == [
        {"experiment": str(source), "trial": trial.number} for trial in best]

    # a resumed searcher (as if Tune had saved no state): the cut trial again, then the third configuration,
    # then the sampler's; nothing enqueued twice
    resumed = StudySearcher(studies_of_saved(experiment), experiment / JOURNAL, "tpe", seed=0)
    configs = []
    for n in range(3):  # one trial at a time: the plan's max_concurrent on CPUs
        configs.append(resumed.suggest(f"r{n}"))
        resumed.on_trial_complete(f"r{n}", epoch_result(configs[-1], 1))
    assert [{key: config[key] for key in best[0].params} for config in configs[:2]] == [best[1].params,
                                                                                         best[2].params]
    assert configs[2]["lr"] not in {trial.params["lr"] for trial in best}
    assert len(study_trials(experiment / JOURNAL, tiny_bert.name)) == 4


def studies_of_saved(experiment: Path) -> list:
    """The studies a --resume of `experiment` builds, from its saved plan (read as resumed_args reads it)."""
    argv = ["--resume", "--storage", str(experiment.parent), "--name", experiment.name]
    args = resumed_args(goemotions_raw.EXPERIMENT, build_parser(goemotions_raw.EXPERIMENT).parse_args(argv), argv)
    plan, _ = make_plan(goemotions_raw.EXPERIMENT, args, local_cluster())
    return studies_of(plan, goemotions_raw.EXPERIMENT)


def test_a_resume_keeps_the_saved_warm_start_without_the_source_and_refuses_another(run_cli, source, tmp_path,
                                                                                    goemotions_dir, tiny_bert):
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    write_experiment(goemotions_raw.EXPERIMENT, sweep_args(goemotions_dir, tiny_bert, tmp_path, "--warm-start",
                                                           str(copy)))
    shutil.rmtree(copy)  # a resume reads what sweep.json saved, not the source again
    resume = ["--resume", "--storage", str(tmp_path), "--name", "next", "--dry-run"]
    result = run_cli(goemotions_raw, *resume)
    assert result.returncode == 0, result.stderr
    assert f"    warm start: 3 configurations from {copy} (goemotions, val macro_f1 0.4800 best)\n" in result.stdout
    assert run_cli(goemotions_raw, *resume, "--warm-start", str(copy)).returncode == 0  # restated
    refused = run_cli(goemotions_raw, *resume, "--warm-start", str(source))
    assert refused.returncode == 2 and refused.stderr.startswith(
        f"error: --warm-start: --resume continues {tmp_path / 'next'} with its saved --warm-start ({copy}); ")


def test_params_outside_the_space_are_clipped_or_dropped_and_kept_once(source, tmp_path, goemotions_dir, tiny_bert):
    """lr above the range is clipped to its top, an unknown batch size and a param the space lacks are dropped;
    two configurations equal once clipped are one, and a study of 2 trials takes 1."""
    wide = {"lr": FloatDistribution(1e-6, 1e-2, log=True), "batch_size": CategoricalDistribution([16, 32, 64]),
            "dropout": FloatDistribution(0.0, 0.5), "epochs": IntDistribution(1, 10)}
    trials = [create_trial(value=value, params={"lr": lr, "batch_size": 64, "dropout": 0.1, "epochs": 4},
                           distributions=wide) for value, lr in ((0.5, 1e-3), (0.4, 2e-3), (0.3, 1e-4))]
    other = hand_made(tmp_path / "other", source, tiny_bert.name, trials)
    args = build_parser(goemotions_raw.EXPERIMENT).parse_args(sweep_args(goemotions_dir, tiny_bert, tmp_path,
                                                                         "--warm-start", str(other)))
    plan, _ = make_plan(goemotions_raw.EXPERIMENT, args, local_cluster())
    [start] = plan.models[0]["warm_start"]
    assert [trial["params"] for trial in start["trials"]] == [{"lr": 3e-4, "epochs": 1}, {"lr": 1e-4, "epochs": 1}]
    assert [trial["trial"] for trial in start["trials"]] == [0, 2]
    assert len(chosen([start], {"lr": FloatDistribution(1e-5, 1e-3)}, num_samples=2)[0]["trials"]) == 1


def test_a_number_is_clipped_and_rounded_to_its_step_a_choice_kept_only_if_offered():
    space = {"r": IntDistribution(8, 64, step=8), "x": FloatDistribution(0.0, 1.0, step=0.25),
             "c": CategoricalDistribution(["a", "b"])}
    assert fitted({"r": 100, "x": 0.3, "c": "a"}, space) == {"r": 64, "x": 0.25, "c": "a"}
    assert fitted({"r": 13, "x": float("nan"), "c": "z", "gone": 1}, space) == {"r": 16}


def test_a_model_no_source_has_a_configuration_for_says_so():
    assert warm_start_lines({"name": "albert", "warm_start": []}, asked=True) == [
        "warm start: none (no finished trial of albert in the --warm-start experiments has a value this study "
        "searches)"]
    assert warm_start_lines({"name": "albert", "warm_start": []}, asked=False) == []


def bad(run_cli, source: Path, storage: Path, goemotions_dir: Path, tiny_bert: Path, *extra: str) -> str:
    """The one error line of a refused --warm-start; nothing written under `storage`, the source untouched."""
    before = files(source), files(storage)
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, storage, "--dry-run", *extra,
                                                 "--warm-start", str(source)))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    assert (files(source), files(storage)) == before
    [line] = result.stderr.strip().splitlines()
    return line


def test_a_dir_that_is_not_a_sweep_experiment_is_refused(run_cli, tmp_path, goemotions_dir, tiny_bert):
    (tmp_path / "plain").mkdir()
    assert bad(run_cli, tmp_path / "plain", tmp_path, goemotions_dir, tiny_bert) == (
        f"error: --warm-start {tmp_path / 'plain'}: not a sweep experiment (no sweep.json and {JOURNAL} in it)")


def test_an_experiment_with_no_study_of_the_sweeps_models_is_refused(run_cli, source, tmp_path, goemotions_dir,
                                                                     tiny_bert):
    albert = hand_made(tmp_path / "albert", source, "albert", [])
    assert bad(run_cli, albert, tmp_path, goemotions_dir, tiny_bert) == (
        f"error: --warm-start {albert}: no study of {tiny_bert.name} in {albert} (it has: albert)")


def test_a_journal_without_finished_trials_is_refused(run_cli, source, tmp_path, goemotions_dir, tiny_bert):
    lr = {"lr": FloatDistribution(1e-6, 1e-2, log=True)}
    unfinished = hand_made(tmp_path / "unfinished", source, tiny_bert.name, [
        create_trial(state=TrialState.PRUNED, params={"lr": 1e-4}, distributions=lr, intermediate_values={1: 0.2}),
        create_trial(state=TrialState.FAIL, params={"lr": 1e-3}, distributions=lr)])
    assert bad(run_cli, unfinished, tmp_path, goemotions_dir, tiny_bert) == (
        f"error: --warm-start {unfinished}: no finished trial of {tiny_bert.name} in {unfinished / JOURNAL} (only "
        f"running, pruned or failed ones)")


def test_an_unreadable_journal_is_refused_naming_its_line(run_cli, source, tmp_path, goemotions_dir, tiny_bert):
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / JOURNAL).write_text("not a journal\n")
    assert bad(run_cli, broken, tmp_path, goemotions_dir, tiny_bert) == (
        f"error: --warm-start {broken}: {broken / JOURNAL}:1: not an Optuna journal (each line is a JSON operation "
        f"with an op_code)")


def test_a_grid_search_is_refused(run_cli, source, tmp_path, goemotions_dir, tiny_bert):
    assert bad(run_cli, source, tmp_path, goemotions_dir, tiny_bert, "--search", "grid") == (
        "error: --warm-start: --search grid tries every point of its grid in its own order, so it has no first "
        "trials to seed; warm-start a --search tpe or random sweep")
