"""Faults with real processes: a trial's Ray worker SIGKILLed mid-training, the driver SIGKILLed mid-sweep and
resumed, a NaN trial, and security (the W&B key kept out of everything the sweep writes, a localhost dashboard).

Each sweep runs as a subprocess, as a user would run it, on its own local Ray cluster under a private temp dir.
Trials are counted by the `training_iteration` lines Tune appends to each trial's result.json (and the `pid` it
stamps on them): a trial continued from its checkpoint goes 1, 2, 3 with no repeats; one that started over
would repeat 1.
"""
from __future__ import annotations

import json
import re
import signal

import pytest
from optuna.trial import TrialState

from tests.helpers.data import write_goemotions
from tests.helpers.sweeps import (REPO, finish, kill_driver_after_first_trial, kill_worker_after_first_epoch,
                                  load_studies, results, start_sweep, sweep_env, trial_dirs)

TRAIN_ROWS = 600  # enough that an epoch of the tiny BERT lasts a few seconds: time to kill mid-training


@pytest.fixture(scope="module")
def slow_epochs_data(tmp_path_factory):
    return write_goemotions(tmp_path_factory.mktemp("goemotions-slow"), sizes=(TRAIN_ROWS, 48, 48))


def test_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path, tiny_bert, slow_epochs_data):
    proc = start_sweep(REPO / "sweeps" / "goemotions_raw.py", "--data-dir", slow_epochs_data, "--models", tiny_bert,
                       "--budget", "smoke", "--epochs", 3, "--train-rows", TRAIN_ROWS, "--num-samples", 2,
                       "--cpus-per-trial", 1, "--search", "random", "--scheduler", "none", "--storage", tmp_path,
                       "--name", "kill", "--no-dashboard")
    sweep_dir = tmp_path / "kill"
    worker_pid = kill_worker_after_first_epoch(sweep_dir, proc)  # the Ray worker running the training loop
    output = finish(proc)
    assert proc.returncode == 0, output[-3000:]

    trials = trial_dirs(sweep_dir)
    assert len(trials) == 2, output[-3000:]
    for trial in trials:
        rows = results(trial)
        assert [r["training_iteration"] for r in rows] == [1, 2, 3], (trial.name, rows)
        assert [r["epoch"] for r in rows] == [1, 2, 3], trial.name
        assert len(list(trial.glob("checkpoint_*"))) <= 2  # num_to_keep=1: the best, plus the latest while running
    victim = next(trial for trial in trials if results(trial)[0]["pid"] == worker_pid)
    assert worker_pid not in {row["pid"] for row in results(victim)[1:]}, "the killed trial was not retried"
    assert len(json.loads((sweep_dir / "best_trials.json").read_text())) == 1


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_killed_qlora_trial_continues_from_its_adapter_checkpoint(tmp_path, kind, slow_epochs_data):
    """QLoRA checkpoints hold adapters and head only: the retried trial rebuilds the 4-bit base and loads them
    (encoder: emotion6's qlora variant; decoder: the head mode)."""
    from tests.helpers.models import build_tiny_bert
    from tests.helpers.data import write_emotion6
    from tests.helpers.models import build_tiny_qwen, fixture_texts

    if kind == "encoder":
        data_dir = write_emotion6(tmp_path / "e6", sizes=(TRAIN_ROWS, 48, 48))
        texts = [line.split(";")[0] for f in ("train.txt", "val.txt", "test.txt")
                 for line in (data_dir / f).read_text().splitlines()]
        model = build_tiny_bert(tmp_path / "bert", texts)
        script, extra = "emotion6.py", ["--variant", "qlora"]
    else:
        data_dir, model = slow_epochs_data, build_tiny_qwen(tmp_path / "qwen", fixture_texts(slow_epochs_data))
        script, extra = "qlora_goemotions.py", ["--mode", "head"]
    proc = start_sweep(REPO / "sweeps" / script, "--data-dir", data_dir, "--models", model, "--budget", "smoke",
                       "--epochs", 3, "--train-rows", TRAIN_ROWS, "--num-samples", 1, "--cpus-per-trial", 1,
                       "--scheduler", "none", "--storage", tmp_path, "--name", "kill", "--no-dashboard", *extra)
    worker_pid = kill_worker_after_first_epoch(tmp_path / "kill", proc)
    output = finish(proc)
    assert proc.returncode == 0, output[-3000:]
    [trial] = trial_dirs(tmp_path / "kill")
    rows = results(trial)
    assert [r["epoch"] for r in rows] == [1, 2, 3], output[-3000:]
    assert rows[0]["pid"] == worker_pid and worker_pid not in {r["pid"] for r in rows[1:]}


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, tiny_bert, slow_epochs_data):
    args = ["--data-dir", slow_epochs_data, "--models", tiny_bert, "--budget", "smoke", "--epochs", 2,
            "--train-rows", TRAIN_ROWS, "--num-samples", 3, "--cpus-per-trial", 1, "--search", "random",
            "--scheduler", "none", "--storage", tmp_path, "--name", "resume", "--no-dashboard"]
    script = REPO / "sweeps" / "goemotions_raw.py"
    proc = start_sweep(script, *args)
    sweep_dir = tmp_path / "resume"

    finished = kill_driver_after_first_trial(sweep_dir, proc, epochs=2)
    finish(proc, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = results(finished)
    assert len(trial_dirs(sweep_dir)) < 3 or not all(len(results(d)) == 2 for d in trial_dirs(sweep_dir)), \
        "the driver was killed too late: the sweep had already finished"

    resumed = start_sweep(script, "--resume", "--name", "resume", "--storage", tmp_path, "--no-dashboard")
    output = finish(resumed)
    assert resumed.returncode == 0, output[-3000:]

    trials = trial_dirs(sweep_dir)
    assert len(trials) == 3, output[-3000:]
    for trial in trials:
        assert [r["training_iteration"] for r in results(trial)] == [1, 2], trial.name
    assert results(finished) == before, "a finished trial was run again"
    assert len(json.loads((sweep_dir / "best_trials.json").read_text())) == 1

    # The Optuna study went on where it stopped: one Optuna trial per Tune trial, none lost, none doubled, each
    # with the parameters its trial ran with, all told COMPLETE.
    [study] = load_studies(sweep_dir).values()
    by_tune_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert len(by_tune_id) == len(study.trials) == 3
    for trial in trials:
        frozen = by_tune_id[trial.name.removeprefix(f"{tiny_bert.name}_")]
        params = json.loads((trial / "params.json").read_text())
        assert frozen.state == TrialState.COMPLETE and frozen.params == {k: params[k] for k in frozen.params}
    # the resumed random sampler drew new configurations, not the killed run's first ones again
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3


NAN_SWEEP = '''
"""One sane learning rate and one absurd one (1e30): the second overflows the weights within a step."""
from sweeps.experiment import Experiment
from sweeps.run import main

EXPERIMENT = Experiment(name="nan_lr", dataset="goemotions", models=("minilm",), search_space=lambda budget: {},
                        grid=lambda budget: {"lr": [1e-3, 1e30]})
if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
'''


def failures(trial_dir) -> int:
    return (trial_dir / "error.txt").read_text().count("FloatingPointError: epoch 1: training loss is nan")


WANDB_KEY = "fake0wandb0key0" + "7" * 25  # 40 characters, like a real key


@pytest.fixture(scope="module")
def nan_sweep(tmp_path_factory, tiny_bert, goemotions_dir):
    """The NaN sweep, run once for two tests: with W&B offline, a W&B key in its environment and the dashboard on,
    it is also the sweep the security test reads (one sweep fewer in the suite)."""
    tmp_path = tmp_path_factory.mktemp("nan")
    script = tmp_path / "nan_lr.py"
    script.write_text(NAN_SWEEP)
    proc = start_sweep(script, "--data-dir", goemotions_dir, "--models", tiny_bert, "--budget", "smoke",
                       "--search", "grid", "--max-failures", 1, "--wandb", "offline", "--storage", tmp_path,
                       "--name", "nan", env=sweep_env(PYTHONPATH=str(REPO), WANDB_API_KEY=WANDB_KEY))
    output = finish(proc)
    assert proc.returncode == 0, output[-3000:]
    return tmp_path, script, output


def test_nan_trial_ends_errored_with_its_reason_and_the_sweep_goes_on(nan_sweep):
    tmp_path, script, _ = nan_sweep
    sweep_dir = tmp_path / "nan"
    by_lr = {json.loads((d / "params.json").read_text())["lr"]: d for d in trial_dirs(sweep_dir)}
    assert sorted(by_lr) == [1e-3, 1e30]
    assert not (by_lr[1e-3] / "error.txt").exists() and results(by_lr[1e-3])[-1]["epoch"] == 1
    assert "FloatingPointError: epoch 1: training loss is nan" in (by_lr[1e30] / "error.txt").read_text()
    assert results(by_lr[1e30]) == []

    report = (sweep_dir / "best_trials.md").read_text()
    table, skipped = report.split("Skipped")
    assert by_lr[1e-3].name in table and by_lr[1e30].name not in table
    assert f"{by_lr[1e30].name}: FloatingPointError: epoch 1: training loss is nan" in skipped

    assert failures(by_lr[1e30]) == 2  # one try and one retry (--max-failures 1)

    # --resume --restart-errored starts the errored trial over (Tune gives it a new trial id) and leaves the
    # finished one alone.
    finished_before = results(by_lr[1e-3])
    proc = start_sweep(script, "--resume", "--restart-errored", "--name", "nan", "--storage", tmp_path,
                       "--no-dashboard", env=sweep_env(PYTHONPATH=str(REPO)))
    output = finish(proc)
    assert proc.returncode == 0, output[-3000:]
    assert results(by_lr[1e-3]) == finished_before
    restarted = [d for d in trial_dirs(sweep_dir) if d not in by_lr.values()]
    assert [json.loads((d / "params.json").read_text())["lr"] for d in restarted] == [1e30]
    assert failures(restarted[0]) == 2 and results(restarted[0]) == []


def test_wandb_key_is_never_written_and_dashboard_is_local_only(nan_sweep):
    tmp_path, _, output = nan_sweep
    assert re.search(r"^Ray dashboard: http://127\.0\.0\.1:\d+ ", output, re.MULTILINE), "dashboard not on localhost"

    sweep_dir = tmp_path / "nan"
    assert list(sweep_dir.rglob("run-*.wandb")), "W&B wrote no offline run: the check below would be vacuous"
    leaks = [str(p) for p in sweep_dir.rglob("*") if p.is_file() and WANDB_KEY.encode() in p.read_bytes()]
    assert leaks == []
    assert WANDB_KEY not in output
