"""Sweeps run as a user runs them, and what they leave, read back.

`run_sweep` runs a sweep file to its end on a fresh local Ray cluster; `start_sweep` / `finish` run one in its own
process group under a private Ray temp dir, for tests that kill its trial workers or its driver midway (the
`kill_*` helpers) or send it Ctrl-C. The readers (`trial_dirs`, `results`, `load_studies`, `reported_checkpoints`,
`checkpoints_with_test_predictions`) read a sweep's experiment dir: its trial folders, each trial's reported epochs,
its Optuna journal, what its tables report and which checkpoints hold test predictions."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_sweep(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a sweep file as a user would, on a fresh local Ray cluster, without the dashboard."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0", "TUNE_RESULT_BUFFER_LENGTH": "1"}
    return subprocess.run([sys.executable, str(REPO / "sweeps" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def load_studies(sweep_dir: Path) -> dict:
    """The sweep's Optuna studies, by name, from its journal file."""
    import optuna

    from sweeps.studies import JOURNAL, open_journal

    storage = open_journal(sweep_dir / JOURNAL)
    return {name: optuna.load_study(study_name=name, storage=storage) for name in optuna.get_all_study_names(storage)}


def sweep_env(**extra: str) -> dict:
    ray_tmp = tempfile.mkdtemp(prefix="ray-f-", dir="/tmp")  # short: Ray's socket paths live under it
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0", "TUNE_RESULT_BUFFER_LENGTH": "1",
            "RAY_TMPDIR": ray_tmp, **extra}


def start_sweep(script: Path, *args, env: dict | None = None) -> subprocess.Popen:
    """The sweep in its own process group, so whatever Ray processes outlive a killed driver can be ended."""
    env = env or sweep_env()
    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    proc.ray_tmp = env["RAY_TMPDIR"]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for the sweep, then end what is left of its process group (the Ray processes of a killed driver)
    and remove its Ray temp dir."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(proc.ray_tmp, ignore_errors=True)
    return output


def results(trial_dir: Path) -> list[dict]:
    """The rows Tune appended to the trial's result.json: one per reported epoch, stamped with the worker pid."""
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(params.parent for params in sweep_dir.glob("*/params.json"))


def reported_checkpoints(sweep_dir: Path) -> set[tuple[str, str]]:
    """(trial dir, checkpoint) of each checkpoint a sweep without confirmation seeds reports, as its tables name them:
    each model's best trial (best_trials.json) and the trial ensemble's members (ensembles.json)."""
    best = json.loads((sweep_dir / "best_trials.json").read_text())
    reported = {(row["trial_dir"], row["checkpoint"]) for row in best}
    for row in json.loads((sweep_dir / "ensembles.json").read_text()):
        assert row["kind"] == "trials", row["kind"]
        reported |= set(zip(row["members"], row["checkpoints"]))
    return reported


def checkpoints_with_test_predictions(sweep_dir: Path) -> tuple[set[tuple[str, str]], int]:
    """(trial dir, checkpoint) of each of the sweep's checkpoints whose predictions.npz holds test predictions, and
    how many checkpoints there are."""
    import numpy as np

    saved = sorted(sweep_dir.glob("*/checkpoint_*/predictions.npz"))
    with_test = set()
    for path in saved:
        with np.load(path) as npz:
            if {"test_probs", "test_labels", "test_generated"} & set(npz.files):
                with_test.add((str(path.parent.parent), path.parent.name))
    return with_test, len(saved)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 300):
    """Poll until condition() returns something truthy; fail if the sweep exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"sweep exited ({proc.returncode}) before the fault:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    raise TimeoutError("timed out waiting for the sweep")


def first_trial_with(sweep_dir: Path, epochs: int):
    return lambda: next((d for d in trial_dirs(sweep_dir) if len(results(d)) == epochs), None)


def kill_worker_after_first_epoch(sweep_dir: Path, proc: subprocess.Popen) -> int:
    """SIGKILL the Ray worker process running the first trial that reported an epoch; returns its pid."""
    pid = results(wait_until(first_trial_with(sweep_dir, 1), proc))[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def kill_driver_after_first_trial(sweep_dir: Path, proc: subprocess.Popen, epochs: int) -> Path:
    finished = wait_until(first_trial_with(sweep_dir, epochs), proc)
    os.kill(proc.pid, signal.SIGKILL)
    return finished


NOISE = ("LOAD REPORT", "Loading weights", "Writing model shards", "kernels-community",
         "Checkpoint successfully created", "were not sharded")
