"""The GoEmotions sweep end to end: a real local Ray cluster, OptunaSearch (TPE / grid), ASHA with rungs inside
epochs, checkpoints, W&B offline runs, TensorBoard files and the best-per-model analysis, on a tiny BERT; the test
split predicted for the reported checkpoints only."""
import json
import math
import re
import shutil
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState
from sklearn.metrics import f1_score, jaccard_score

from analysis import best_trials, export
from analysis.decision import average
from tests.helpers.sweeps import NOISE, checkpoints_with_test_predictions, load_studies, reported_checkpoints, run_sweep


def trial_dirs(sweep_dir: Path, model: str) -> list[Path]:
    """The trials of one model's study: all trials share the sweep's one Tune experiment dir."""
    return sorted(p.parent for p in sweep_dir.glob(f"{model}_*/params.json"))


@pytest.fixture(scope="module")
def tpe(tmp_path_factory, goemotions_dir, tiny_bert):
    storage = tmp_path_factory.mktemp("tpe")
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--num-samples", "3", "--epochs", "2", "--train-rows", "96",
                       "--val-rows", "48", "--test-rows", "48", "--storage", str(storage), "--name", "tpe",
                       "--wandb", "offline", "--no-dashboard", "--seed", "1", "--rungs-per-epoch", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return result, storage / "tpe"


def test_tpe_sweep_with_asha_wandb_and_analysis(tpe, tiny_bert):
    result, sweep_dir = tpe
    # per-trial chatter that would bury a real warning (tests/unit/trainables/test_encoder_logs.py: those still show)
    for noise in NOISE:
        assert noise not in result.stdout + result.stderr, noise
    model = tiny_bert.name
    lines = result.stdout.splitlines()
    # The console: the plan, a line per trial event, the table; none of Tune's status tables or trial-count line.
    assert lines[0].startswith("Sweep goemotions_raw:")
    assert "Trial status" not in result.stdout and "9223372036854775807" not in result.stdout + result.stderr
    assert "tensorboard --logdir" not in result.stdout
    for trial in trial_dirs(sweep_dir, model):
        events = [line for line in lines if line.startswith("[") and f"] {trial.name} " in line]
        assert " started: lr=" in events[0], events
        # one line per epoch end: the rungs inside an epoch are not printed
        assert [" epoch " in line for line in events[1:-1]] == [True] * (len(events) - 2), events
        epoch_ends = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert len(events) - 2 == sum("val_score" in row for row in epoch_ends), events
        assert re.search(r" (finished|stopped early at epoch [\d.]+): (best val|val subset) macro_f1 \d\.\d{4} · "
                         r"\d/3 trials",
                         events[-1]), events
    header = next(line for line in lines if line.startswith("| model | params_m |"))
    assert lines.index(header) > max(i for i, line in enumerate(lines) if line.startswith("["))
    assert {"val_macro_f1", "test_macro_f1", "test_micro_f1", "best_epoch", "wall_s"} <= set(header.split(" | "))

    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["seed"] == 1 and saved["versions"]["ray"].startswith("2.") and saved["search"] == "tpe"

    trials = trial_dirs(sweep_dir, model)
    assert len(trials) == 3
    studies = load_studies(sweep_dir)
    best_val_per_trial = {}
    for trial in trials:
        config = json.loads((trial / "params.json").read_text())
        assert 2e-5 <= config["lr"] <= 3e-4 and 3e-4 <= config["head_lr"] <= 1e-2
        assert config["epochs"] == 2 and config["model_source"] == str(tiny_bert)
        reports = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert [r["training_iteration"] for r in reports] == list(range(1, len(reports) + 1))
        # --rungs-per-epoch 2: a rung half way through each epoch (the validation subset's score, no checkpoint),
        # then the epoch's end, scored on the whole split, which alone decides the trial's value
        assert [math.ceil(r["epoch"]) for r in reports] == [1, 1, 2, 2][:len(reports)]
        assert all(("val_score" in r) == (r["training_iteration"] % 2 == 0) for r in reports)
        assert all("rung_score" in r for r in reports)
        rows = [r for r in reports if "val_score" in r]
        assert all(r["rung_score"] == r["val_score"] for r in rows)
        if rows:  # progress.csv: the epochs, with their columns
            progress = (trial / "progress.csv").read_text().splitlines()
            assert len(progress) == 1 + len(rows) and "val_score" in progress[0].split(",")
        optuna_trial = next(t for t in studies[model].trials if t.user_attrs["tune_trial_id"] in trial.name)
        assert optuna_trial.intermediate_values == {r["training_iteration"]: r["rung_score"] for r in reports}
        if optuna_trial.state == TrialState.COMPLETE:
            assert optuna_trial.value == max(r["val_score"] for r in rows)
        for row in rows:
            assert row["val_macro_f1_per_class"] >= row["val_macro_f1_global"] >= row["val_macro_f1_at_0.5"]
            assert row["threshold_strategy"] in {"0.5", "global", "per_class"}
        checkpoints = list(trial.glob("checkpoint_*"))
        assert len(checkpoints) == 0 if not rows else 1 <= len(checkpoints) <= 2  # the best plus the latest
        if not rows:  # ASHA stopped it half way through its first epoch: nothing to select
            assert optuna_trial.state == TrialState.PRUNED
            continue
        best_val_per_trial[trial] = max(r["val_macro_f1"] for r in rows)
        for checkpoint in checkpoints:  # resuming needs the optimizer state; after the last epoch nothing resumes
            with np.load(checkpoint / "predictions.npz") as npz:
                last_epoch = int(npz["epoch"]) == config["epochs"]
            assert (checkpoint / "training_state.pt").exists() != last_epoch, checkpoint
        assert list(trial.glob("events.out.tfevents.*")), "TensorBoard files missing"

    rows = json.loads((sweep_dir / "best_trials.json").read_text())
    [row] = rows
    assert {"model", "val_macro_f1", "test_macro_f1", "test_micro_f1", "params_m", "config",
            "trial_dir"} <= set(row)
    best_trial = max(best_val_per_trial, key=best_val_per_trial.get)
    assert Path(row["trial_dir"]) == best_trial
    assert row["val_macro_f1"] == pytest.approx(best_val_per_trial[best_trial])
    assert 0.0 <= row["test_macro_f1"] <= 1.0 and row["params_m"] > 0
    assert (sweep_dir / "best_trials.md").read_text().count(model) >= 1
    assert (sweep_dir / "best_trials.csv").read_text().startswith("model,")

    # The saved predictions are the best epoch's, with thresholds chosen on validation.
    with np.load(next(best_trial.glob("checkpoint_*/predictions.npz"))) as npz:
        assert npz["val_probs"].shape == (48, 28) and npz["test_probs"].shape == (48, 28)
        assert npz["per_class_thresholds"].shape == (28,)

    runs = sorted((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, f"expected one W&B run per trial, found {runs}"
    assert all(list(run.glob("*.wandb")) for run in runs)


def scores_at(arrays: dict) -> dict:
    """The test scores the tables report, by scikit-learn from 0/1 decisions at the saved validation thresholds."""
    scores = {}
    for suffix, thresholds in (("", arrays["per_class_thresholds"]), ("_global", arrays["global_threshold"])):
        predicted = (arrays["test_probs"] >= thresholds).astype(int)
        scores.update({
            f"test_macro_f1{suffix}": f1_score(arrays["test_labels"], predicted, average="macro", zero_division=0),
            f"test_micro_f1{suffix}": f1_score(arrays["test_labels"], predicted, average="micro", zero_division=0),
            f"test_jaccard{suffix}": jaccard_score(arrays["test_labels"], predicted, average="samples",
                                                   zero_division=1)})
    return scores


def test_the_test_split_is_predicted_for_the_reported_checkpoints_only(tpe):
    """Trials predict validation only. Once the search ends, the sweep predicts the test split for what its tables
    report, the best trial and the trial ensemble's members, and for nothing else: every other checkpoint (the other
    trials', an earlier epoch's) holds no test predictions. Every reported test score comes back, exactly, from the
    saved test predictions; the trial ensemble's are its members' averaged with its weights."""
    _, sweep_dir = tpe
    reported = reported_checkpoints(sweep_dir)
    with_test, checkpoints = checkpoints_with_test_predictions(sweep_dir)
    assert with_test == reported and checkpoints > len(reported)

    [best] = json.loads((sweep_dir / "best_trials.json").read_text())
    with np.load(Path(best["trial_dir"]) / best["checkpoint"] / "predictions.npz") as npz:
        arrays = dict(npz)
    assert arrays["test_probs"].shape == arrays["test_labels"].shape == (48, 28)
    reported_scores = {key: value for key, value in best.items() if key.startswith("test_")}
    assert reported_scores and reported_scores == {key: scores_at(arrays)[key] for key in reported_scores}

    [joint] = json.loads((sweep_dir / "ensembles.json").read_text())
    members = []
    for trial_dir, checkpoint in zip(joint["members"], joint["checkpoints"]):
        with np.load(Path(trial_dir) / checkpoint / "predictions.npz") as npz:
            members.append(npz["test_probs"])
    with np.load(joint["predictions"]) as npz:
        arrays = dict(npz)
    assert np.array_equal(arrays["test_probs"], average(members, joint["weights"]))
    reported_scores = {key: value for key, value in joint.items() if key.startswith("test_")}
    assert reported_scores and reported_scores == {key: scores_at(arrays)[key] for key in reported_scores}


def test_the_analysis_alone_predicts_what_a_stopped_sweep_left_unpredicted(tpe, tmp_path, capsys):
    """A sweep stopped after its trials, before it predicted the test split, leaves its reported checkpoints without
    test predictions: the reports refuse it in one line naming the command that adds them, and that command
    (`python -m analysis.best_trials`) predicts them in its own process, to the bits the sweep's driver did, and
    writes the same tables; run again, it predicts nothing."""
    _, sweep_dir = tpe
    stopped = shutil.copytree(sweep_dir, tmp_path / "tpe")
    predicted = {}
    for trial_dir, checkpoint in reported_checkpoints(sweep_dir):
        path = stopped / Path(trial_dir).name / checkpoint / "predictions.npz"
        with np.load(path) as npz:
            predicted[path] = dict(npz)
        np.savez_compressed(path, **{key: value for key, value in predicted[path].items()
                                     if not key.startswith("test_")})
    assert checkpoints_with_test_predictions(stopped)[0] == set()

    assert export.main([str(stopped)]) == 2
    assert "no test predictions yet" in capsys.readouterr().err
    assert best_trials.main([str(stopped)]) == 0
    for path, arrays in predicted.items():
        with np.load(path) as npz:
            assert set(npz.files) == set(arrays) and all(np.array_equal(npz[key], arrays[key]) for key in arrays)
    original, again = (json.loads((sweep / "best_trials.json").read_text())[0] for sweep in (sweep_dir, stopped))
    assert {key: value for key, value in again.items() if key.startswith("test_")} == \
        {key: value for key, value in original.items() if key.startswith("test_")}
    modified = {path: path.stat().st_mtime_ns for path in predicted}
    assert best_trials.main([str(stopped)]) == 0
    assert {path: path.stat().st_mtime_ns for path in predicted} == modified


def test_grid_search_runs_every_point_once(tmp_path, goemotions_dir, tiny_bert):
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--search", "grid", "--scheduler", "none", "--storage", str(tmp_path),
                       "--name", "grid", "--no-dashboard", "--verbose")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trial status" in result.stdout  # --verbose: Tune's own tables as well as the trial lines
    assert " started: " in result.stdout
    points = [(json.loads((t / "params.json").read_text())["lr"], json.loads((t / "params.json").read_text())
               ["pos_weight"]) for t in trial_dirs(tmp_path / "grid", tiny_bert.name)]
    assert sorted(points) == sorted(product([5e-5, 1.5e-4], ["none", "inverse_frequency"]))
    assert not list((tmp_path / "grid").glob("*/error.txt"))  # the used-up grid ends no trial in error
    [study] = load_studies(tmp_path / "grid").values()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.metric_names == ["val macro_f1"]  # optuna-dashboard's name for the objective
