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
import tempfile
import time
from pathlib import Path

from tests.helpers.sweeps import (REPO, finish, kill_driver_after_first_trial, kill_worker_after_first_epoch, results,
                                  start_sweep, trial_dirs)


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
