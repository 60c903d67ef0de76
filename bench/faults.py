"""Time lost to faults: one sweep run clean, with one trial's Ray worker SIGKILLed after its first epoch, and with
the driver SIGKILLed after the first trial finished and then resumed with --resume.

    python -m bench.faults                                   # tiny BERT on the tests' fixture data
    python -m bench.faults --train-rows 1500 --epochs 3 --num-samples 3

Every run is a subprocess on its own local Ray cluster under a private temp dir; the clean run is the
reference. "Lost" is wall time minus the clean run's, so it includes Ray restarting the worker or the whole
cluster (driver kill) and the work redone since the last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="GoEmotions files (default: the tests' fixture)")
    parser.add_argument("--models", help="model dir (default: the tests' tiny BERT)")
    parser.add_argument("--num-samples", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=1000)
    args = parser.parse_args()

    from bench.two_node import tiny_fixture

    work = Path(tempfile.mkdtemp(prefix="faults-"))
    data, model = (args.data_dir, args.models) if args.data_dir else tiny_fixture(work, args.train_rows)
    script = REPO / "sweeps" / "goemotions_raw.py"
    sweep = ["--data-dir", data, "--models", model, "--budget", "smoke", "--epochs", args.epochs, "--train-rows",
             args.train_rows, "--num-samples", args.num_samples, "--search", "random", "--scheduler", "none",
             "--cpus-per-trial", 1, "--storage", work, "--no-dashboard"]
    rows = []

    def timed(name: str, fault) -> None:
        started = time.perf_counter()
        proc = start_sweep(script, *sweep, "--name", name)
        note = fault(work / name, proc) if fault else ""
        output = finish(proc)
        if fault is kill_driver:
            proc = start_sweep(script, "--resume", "--name", name, "--storage", work, "--no-dashboard")
            output = finish(proc)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}\n{output[-3000:]}")
        wall = time.perf_counter() - started
        epochs = sum(len(results(d)) for d in trial_dirs(work / name))
        rows.append((name, wall, epochs, note))

    def kill_worker(sweep_dir, proc):
        return f"killed worker pid {kill_worker_after_first_epoch(sweep_dir, proc)} after epoch 1"

    def kill_driver(sweep_dir, proc):
        finished = kill_driver_after_first_trial(sweep_dir, proc, args.epochs)
        return f"killed driver after {finished.name} finished; resumed"

    timed("clean", None)
    timed("worker-kill", kill_worker)
    timed("driver-kill", kill_driver)
    clean = rows[0][1]
    print(f"{args.num_samples} trials x {args.epochs} epochs, {args.train_rows} train rows, 1 CPU per trial, "
          f"one trial at a time")
    print("| run | wall s | lost s | epochs reported | fault |\n|---|---|---|---|---|")
    for name, wall, epochs, note in rows:
        print(f"| {name} | {wall:.1f} | {wall - clean:+.1f} | {epochs} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
