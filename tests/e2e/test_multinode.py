"""A real two-node Ray cluster on this machine (head + a second `ray start` node, one CPU each), a sweep joined
to it with --address and storage both nodes share: trials run on both nodes, every trial (the worker's too) loads
the local --models folder from its copy in the experiment dir, the analysis finds every trial, and both nodes are
gone afterwards (stopped by their own process ids)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from analysis.trials import read_trials, trial_row
from sweeps.shared_models import MODELS_DIR
from tests.helpers.cluster import run_on_cluster, trial_placement, two_node_cluster
from tests.helpers.data import write_goemotions
from tests.helpers.sweeps import results


def files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_sweep_spreads_trials_over_two_nodes(tmp_path, tiny_bert):
    data = write_goemotions(tmp_path / "data", sizes=(12000, 48, 48))  # trials outlast starting a second worker
    with two_node_cluster(cpus_per_node=1) as cluster:
        done, _ = run_on_cluster(cluster, [
            "--data-dir", str(data), "--models", str(tiny_bert), "--budget", "smoke", "--epochs", "1",
            "--train-rows", "12000", "--num-samples", "2", "--search", "random", "--scheduler", "none",
            "--cpus-per-trial", "1", "--max-concurrent", "2", "--storage", str(tmp_path), "--name", "two"])
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        placement = trial_placement(tmp_path / "two", cluster["temp_dirs"])
        nodes = list(cluster["nodes"].values())

    assert len(placement) == 2
    assert set(placement.values()) == {"head", "worker"}, placement

    # the model folder is this machine's: copied once into the storage every node shares, and loaded from there
    placed = tmp_path.resolve() / "two" / MODELS_DIR / tiny_bert.name
    assert f"copied from {tiny_bert.resolve()} before the first trial" in done.stdout
    [saved] = json.loads((tmp_path / "two" / "sweep.json").read_text())["models"]
    assert (saved["source"], saved["copied_from"]) == (str(placed), str(tiny_bert.resolve()))
    assert sorted(p.name for p in placed.parent.iterdir()) == [tiny_bert.name]  # whole: no partial copy left
    assert files(placed) == files(tiny_bert)

    trials = read_trials(tmp_path / "two")
    assert {trial.config["model_source"] for trial in trials} == {str(placed)}  # on the worker node too
    assert sorted(trial.directory.name for trial in trials) == sorted(placement)
    assert all(trial_row(trial) is not None for trial in trials)  # each has a checkpoint with predictions
    best = json.loads((tmp_path / "two" / "best_trials.json").read_text())
    assert len(best) == 1 and Path(best[0]["trial_dir"]).name in placement

    for proc in nodes:
        assert proc.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing left in the node's process group
    trial_pids = {row["pid"] for trial in trials for row in results(trial.directory)}
    deadline = time.monotonic() + 30  # Ray workers run in their own sessions; they exit when their raylet is gone
    while any(Path(f"/proc/{pid}").exists() for pid in trial_pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in trial_pids)
