"""One Tune experiment per sweep, on real Ray clusters: every model's Optuna study runs at once, each held to its
own concurrency bound and trial budget, GPU shares packed without oversubscribing a (declared) GPU, ASHA rungs
per study, the studies in an Optuna journal, and a time budget that ends the sweep cleanly."""
from __future__ import annotations

import json
import re
import shutil
import time
from datetime import date, datetime
from itertools import combinations
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers.cluster import run_on_cluster, two_node_cluster
from tests.helpers.data import write_goemotions
from tests.helpers.models import build_tiny_bert
from tests.helpers.sweeps import load_studies, results, run_sweep, trial_dirs


def run_interval(trial_dir: Path) -> tuple[float, float]:
    """When the trial held its resources: from its attempt's start to its last report."""
    last = results(trial_dir)[-1]
    return last["attempt_started_at"], last["attempt_started_at"] + last["trial_wall_s"]


def overlapping(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    live = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        live += step
        peak = max(peak, live)
    return peak


def test_studies_run_at_once_within_their_bounds_on_a_cluster_with_gpus(tmp_path, tiny_bert):
    """Three models, 3 trials each, at most 2 at once per study, half a (declared) GPU per trial on a head that
    has 2 GPUs and 6 CPUs: resources allow 4 trials at once, the studies would take 6."""
    data = write_goemotions(tmp_path / "data", sizes=(1000, 48, 48))  # trials long enough to overlap
    models = [shutil.copytree(tiny_bert, tmp_path / name) for name in ("alpha", "beta", "gamma")]
    with two_node_cluster(cpus_per_node=6, gpus_per_node=2, workers=0) as cluster:
        done, _ = run_on_cluster(cluster, [
            "--data-dir", str(data), "--models", *map(str, models), "--budget", "smoke", "--epochs", "1",
            "--train-rows", "1000", "--num-samples", "3", "--search", "random", "--scheduler", "none",
            "--cpus-per-trial", "1", "--gpus-per-trial", "0.5", "--max-concurrent", "2",
            "--storage", str(tmp_path), "--name", "cluster"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweep_dir = tmp_path / "cluster"

    trials = {d: json.loads((d / "params.json").read_text())["study"] for d in trial_dirs(sweep_dir)}
    assert sorted(trials.values()) == sorted(["alpha", "beta", "gamma"] * 3)  # each study its exact budget
    intervals = {d: run_interval(d) for d in trials}
    for study in ("alpha", "beta", "gamma"):
        assert most_at_once([intervals[d] for d, s in trials.items() if s == study]) <= 2, study
    assert any(trials[a] != trials[b] and overlapping(intervals[a], intervals[b])
               for a, b in combinations(trials, 2)), "no two models ever trained at the same time"

    gpu_of = {d: results(d)[-1]["gpu_ids"] for d in trials}
    assert set(gpu_of.values()) <= {"0", "1"}  # every trial got one GPU of the two, half of it
    for gpu in ("0", "1"):
        assert most_at_once([intervals[d] for d in trials if gpu_of[d] == gpu]) <= 2, f"GPU {gpu} oversubscribed"
    assert all(results(d)[-1]["gpu_seconds"] == pytest.approx(0.5 * results(d)[-1]["trial_wall_s"]) for d in trials)

    studies = load_studies(sweep_dir)
    assert sorted(studies) == ["alpha", "beta", "gamma"]
    for name, study in studies.items():
        assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
        assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(
            d.name.removeprefix(f"{name}_") for d, s in trials.items() if s == name)

    best = json.loads((sweep_dir / "best_trials.json").read_text())
    assert sorted(row["model"] for row in best) == ["alpha", "beta", "gamma"]
    assert all(row["trials"] == 3 and row["gpu_s"] > 0 for row in best)


def test_asha_rungs_are_per_study_and_stopped_trials_are_pruned(tmp_path, goemotions_dir, tiny_bert):
    """A weak model (its tokenizer knows no word, so every text looks the same) and a strong one, one trial at
    a time, alternating. Under one ASHA for both, the weak model's first trial would be stopped at epoch 1 by
    the strong model's score; per study it is the first at its rungs, so it runs all its epochs."""
    weak = build_tiny_bert(tmp_path / "weak", texts=[])
    strong = shutil.copytree(tiny_bert, tmp_path / "strong")
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(strong), str(weak),
                       "--budget", "smoke", "--epochs", "3", "--lr", "1e-3", "--train-rows", "96",
                       "--num-samples", "4", "--search", "random", "--cpus-per-trial", "2", "--storage",
                       str(tmp_path), "--name", "asha", "--no-dashboard", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "asha"

    by_study: dict[str, list[Path]] = {"strong": [], "weak": []}
    for trial in sorted(trial_dirs(sweep_dir), key=lambda d: results(d)[0]["attempt_started_at"]):
        by_study[json.loads((trial / "params.json").read_text())["study"]].append(trial)
    first_weak, first_strong = by_study["weak"][0], by_study["strong"][0]
    assert results(first_strong)[0]["attempt_started_at"] < results(first_weak)[0]["attempt_started_at"]
    assert results(first_weak)[0]["val_macro_f1"] < results(first_strong)[0]["val_macro_f1"], \
        "the planted weak model scored as well as the strong one: the test would prove nothing"
    assert len(results(first_weak)) == 3, "the weak model's first trial was stopped by the strong model's rung"

    studies = load_studies(sweep_dir)
    pruned = 0
    for name, trials in by_study.items():
        assert len(studies[name].trials) == len(trials) == 4
        for frozen in studies[name].trials:
            [trial] = [d for d in trials if d.name == f"{name}_{frozen.user_attrs['tune_trial_id']}"]
            values = [row["val_macro_f1"] for row in results(trial)]
            assert frozen.intermediate_values == dict(enumerate(values, start=1))
            if len(values) == 3:
                assert frozen.state == TrialState.COMPLETE and frozen.value == pytest.approx(max(values))
            else:
                assert frozen.state == TrialState.PRUNED
                pruned += 1
    assert pruned >= 1, "ASHA stopped no trial: the PRUNED check above was vacuous"


def test_time_budget_ends_the_sweep_and_the_analysis_runs(tmp_path, tiny_bert):
    """The search ends when what is left of the budget is what the confirmation seed of the best configuration
    takes (priced from that trial's epochs), cutting the trials still running; the seed then trains all its
    epochs within the budget. The budget counts from the driver's start, Ray's start included, so it must hold Ray's
    start, a trial's first epoch and the seed's price (its epochs, the search's own measured start and
    CONFIRMATION_START_S, 30 s) even when the other test process loads the machine: 75 s (with 45 s, a loaded run
    left the seed 12 s after Ray's start and a 6.5-s first epoch)."""
    data = write_goemotions(tmp_path / "data", sizes=(600, 48, 48))
    started = time.time()
    result = run_sweep("goemotions_raw.py", "--data-dir", str(data), "--models", str(tiny_bert), "--budget", "smoke",
                       "--epochs", "2", "--train-rows", "600", "--num-samples", "500", "--search", "random",
                       "--scheduler", "none", "--time-budget", "75s", "--confirm-seeds", "1", "--storage",
                       str(tmp_path), "--name", "budget", "--no-dashboard")
    assert result.returncode == 0, result.stderr[-3000:]
    [ends] = re.findall(r"time budget 75s: trials stop by (\d\d:\d\d:\d\d)", result.stdout)
    deadline = datetime.combine(date.fromtimestamp(started), datetime.strptime(ends, "%H:%M:%S").time()).timestamp()
    assert started + 75 <= deadline <= started + 75 + 30  # the budget counts from the driver's start
    sweep_dir = tmp_path / "budget"
    rows = [row for trial in trial_dirs(sweep_dir) for row in results(trial)]
    assert rows, "no trial finished an epoch inside the budget (Ray's start took it all): nothing was cut short"
    longest_epoch = max(row["time_this_iter_s"] for row in rows)
    assert max(row["timestamp"] for row in rows) <= deadline + longest_epoch + 2  # timestamps are whole seconds
    assert len(trial_dirs(sweep_dir)) < 500
    states = [t.state for study in load_studies(sweep_dir).values() for t in study.trials]
    assert TrialState.RUNNING not in states  # the trials the budget cut short are told as such
    assert (sweep_dir / "best_trials.md").is_file()
    assert re.search(r"search starts no more trials with \d+\.\d min of the time budget left, \d+\.\d of them kept "
                     r"for 1 confirmation seed \(", result.stdout), result.stdout[-3000:]
    [seed] = [trial for trial in trial_dirs(sweep_dir)
              if json.loads((trial / "params.json").read_text()).get("confirm_of")]
    seed_rows = results(seed)
    assert [row["training_iteration"] for row in seed_rows] == [1, 2], result.stdout[-3000:]  # all, not cut
    assert seed_rows[-1]["timestamp"] <= deadline + 2
