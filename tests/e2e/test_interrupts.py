"""A sweep stopped with Ctrl-C resumes without losing or repeating a trial; one driver per experiment; a planted
pickle in a checkpoint is refused. Real processes on real local Ray clusters (bench/faults.py helpers): Ctrl-C is
sent to the sweep's whole process group, as a terminal sends it, Ray's processes included."""
from __future__ import annotations

import os
import re
import shlex
import signal

import pytest

from tests.helpers.data import write_goemotions
from tests.helpers.sweeps import REPO, finish, first_trial_with, results, start_sweep, trial_dirs, wait_until


SCRIPT = REPO / "sweeps" / "goemotions_raw.py"
WORKER_LINE = re.compile(r"^(\x1b\[\d+m)?\((\w+ )?pid=\d+")
TRAIN_ROWS = 600  # an epoch of the tiny BERT lasts a few seconds: time to interrupt mid-training


def driver_lines(output: str) -> str:
    """The driver's own output: without the lines Ray forwards from trial workers ("(train_encoder pid=N) ..."). A
    worker that Ray's teardown SIGTERMs inside a weakref callback prints Python's "Exception ignored" traceback; that
    is Ray's shutdown noise, not a crash of the sweep."""
    return "\n".join(line for line in output.splitlines() if not WORKER_LINE.match(line))


@pytest.fixture(scope="module")
def slow_epochs_data(tmp_path_factory):
    return write_goemotions(tmp_path_factory.mktemp("goemotions-slow"), sizes=(TRAIN_ROWS, 48, 48))


def sweep_args(data, model, storage, name: str, samples: int) -> list:
    return ["--data-dir", data, "--models", model, "--budget", "smoke", "--epochs", 2, "--train-rows", TRAIN_ROWS,
            "--num-samples", samples, "--cpus-per-trial", 1, "--search", "random", "--scheduler", "none",
            "--storage", storage, "--name", name, "--no-dashboard"]


def test_ctrl_c_saves_the_sweep_and_resume_runs_every_trial_exactly_once(tmp_path, tiny_bert, slow_epochs_data):
    proc = start_sweep(SCRIPT, *sweep_args(slow_epochs_data, tiny_bert, tmp_path, "ctrl-c", 3))
    sweep_dir = tmp_path / "ctrl-c"
    finished = wait_until(first_trial_with(sweep_dir, 2), proc)
    before = results(finished)
    os.killpg(proc.pid, signal.SIGINT)
    output = finish(proc, timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in driver_lines(output), output[-3000:]
    assert len(trial_dirs(sweep_dir)) < 3 or not all(len(results(d)) == 2 for d in trial_dirs(sweep_dir)), \
        "interrupted too late: the sweep had already finished"
    [line] = [line for line in output.splitlines() if line.startswith("interrupted; resume with: ")]
    command = shlex.split(line.removeprefix("interrupted; resume with: "))
    assert command[:2] == ["python", str(SCRIPT)] and "--resume" in command

    resumed = start_sweep(SCRIPT, *command[2:])
    output = finish(resumed)
    assert resumed.returncode == 0, output[-3000:]
    trials = trial_dirs(sweep_dir)
    assert len(trials) == 3, output[-3000:]
    for trial in trials:  # interrupted trials went on from their checkpoints: 1, 2, never 1 again
        assert [r["training_iteration"] for r in results(trial)] == [1, 2], trial.name
    assert results(finished) == before, "a finished trial was run again"
    assert (sweep_dir / "best_trials.json").is_file()


def test_one_driver_per_experiment(tmp_path, tiny_bert, slow_epochs_data):
    first = start_sweep(SCRIPT, *sweep_args(slow_epochs_data, tiny_bert, tmp_path, "taken", 1))
    wait_until(lambda: (tmp_path / "taken" / "sweep.json").is_file(), first)
    # a second driver, asking to resume it or not, is refused and names the first (both at once: each takes
    # seconds to start, and the first must still be running when they ask)
    seconds = [start_sweep(SCRIPT, *sweep_args(slow_epochs_data, tiny_bert, tmp_path, "taken", 1), *extra)
               for extra in ([], ["--resume"])]
    # two drivers started on one new name at the same moment (checked below): beside the first, not after it
    racers = [start_sweep(SCRIPT, *sweep_args(slow_epochs_data, tiny_bert, tmp_path, "race", 1)) for _ in range(2)]
    for second in seconds:
        output = finish(second, timeout=120)
        assert second.returncode == 2, output[-3000:]
        [error] = [line for line in output.splitlines() if line.startswith("error: ")]
        assert f"another driver is running this experiment (PID {first.pid} on " in error
    assert finish(first) and first.returncode == 0

    # the two racers: exactly one runs
    outputs = [finish(proc) for proc in racers]
    assert sorted(proc.returncode for proc in racers) == [0, 2], [out[-2000:] for out in outputs]
    loser = outputs[[proc.returncode for proc in racers].index(2)]
    assert len([line for line in loser.splitlines() if line.startswith("error: ")]) == 1, loser[-2000:]
    assert len(trial_dirs(tmp_path / "race")) == 1
