"""best_trials chooses by validation only: a planted trial with the best test score but a worse validation
score must lose. The experiment dirs are written in Tune's on-disk layout (params.json, result.json,
checkpoint_*/predictions.npz), one trial dir per trial, each naming its study."""
import json

import numpy as np
import pytest

from analysis.best_trials import ExperimentError, main, write_best_trials
from analysis.seeds import compare
from analysis.trials import read_trials, reported_runs
from trainables.metrics import thresholds_for
from trainables.scores import score
from trainables.thresholds import exact_thresholds


def plant_trial(experiment, study, name, val_quality, test_quality, seed, epochs=1, cpu_seconds=20.0):
    """A finished trial whose saved probabilities separate the classes with the given quality (0..1)."""
    rng = np.random.default_rng(seed)
    trial = experiment / f"{study}_{name}"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"study": study, "model": study, "lr": 1e-4 * (seed + 1)}))

    def predictions(quality, n=200, classes=6):
        labels = (rng.random((n, classes)) < 0.3).astype(np.float32)
        return np.clip(quality * labels + (1 - quality) * rng.random((n, classes)), 0, 1), labels

    val_probs, val_labels = predictions(val_quality)
    test_probs, test_labels = predictions(test_quality)
    global_t, per_class_t = exact_thresholds(val_probs, val_labels)
    np.savez(trial / "checkpoint_000000" / "predictions.npz", epoch=epochs, val_macro_f1=0.0,
             val_probs=val_probs, val_labels=val_labels, test_probs=test_probs, test_labels=test_labels,
             global_threshold=global_t, per_class_thresholds=per_class_t)
    rows = [{"training_iteration": i + 1, "params_m": 1.5, "time_total_s": 10.0 * (i + 1),
             "cpu_seconds": cpu_seconds * (i + 1) / epochs, "gpu_seconds": 0.0} for i in range(epochs)]
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return trial


def test_best_trial_is_chosen_by_validation_not_test(tmp_path):
    experiment = tmp_path / "exp"
    good_val = plant_trial(experiment, "minilm", "a", val_quality=0.6, test_quality=0.2, seed=0, cpu_seconds=30.0)
    plant_trial(experiment, "minilm", "b", val_quality=0.2, test_quality=0.9, seed=1, epochs=2, cpu_seconds=12.0)
    other = plant_trial(experiment, "albert", "c", val_quality=0.4, test_quality=0.4, seed=2, cpu_seconds=5.0)

    table = write_best_trials(experiment)
    rows = {row["model"]: row for row in json.loads((experiment / "best_trials.json").read_text())}
    assert rows["minilm"]["trial_dir"] == str(good_val)
    assert rows["albert"]["trial_dir"] == str(other)
    assert rows["minilm"]["val_macro_f1"] > rows["albert"]["val_macro_f1"]
    assert rows["minilm"]["config"] == {"lr": 1e-4} and rows["minilm"]["wall_s"] == 10.0
    # what each model cost: every trial of its study, at its last reported cost
    assert (rows["minilm"]["trials"], rows["minilm"]["cpu_s"]) == (2, 42.0)
    assert (rows["albert"]["trials"], rows["albert"]["cpu_s"]) == (1, 5.0)
    assert "Sweep cost: 3 trials, 47 CPU-s (0.01 CPU-h), 0 GPU-s (0.00 GPU-h)" in table


def test_the_best_checkpoint_is_chosen_on_validation_with_or_without_test_predictions(tmp_path, capsys):
    """Trials predict validation only; the sweep predicts test for the checkpoints it reports afterwards. Until then
    (a sweep stopped in between) the best checkpoint by validation is still the one chosen, not a worse one that
    happens to hold test predictions, and the reports refuse it in one line naming the command that adds them."""
    experiment = tmp_path / "exp"
    trial = plant_trial(experiment, "minilm", "a", val_quality=0.2, test_quality=0.9, seed=0)
    with np.load(trial / "checkpoint_000000" / "predictions.npz") as npz:
        better = {key: value for key, value in npz.items() if not key.startswith("test_")}
    (trial / "checkpoint_000001").mkdir()
    np.savez(trial / "checkpoint_000001" / "predictions.npz",
             **{**better, "epoch": 2, "val_macro_f1": 0.9, "val_probs": better["val_labels"] * 0.8 + 0.1})
    [run] = reported_runs(read_trials(experiment))
    assert run.row["checkpoint"] == "checkpoint_000001" and "test_macro_f1" not in run.row
    with pytest.raises(ExperimentError, match="checkpoint_000001: no test predictions yet .*`python -m "
                                              "analysis.best_trials .*exp` adds them"):
        write_best_trials(experiment)
    assert main([str(experiment)]) == 2  # no sweep.json: nothing to predict the test split from
    assert "sweep.json: not found" in capsys.readouterr().err


def test_errored_trials_are_listed_apart(tmp_path):
    plant_trial(tmp_path / "exp", "minilm", "ok", 0.5, 0.5, seed=0)
    broken = tmp_path / "exp" / "trial_broken"
    broken.mkdir()
    (broken / "params.json").write_text(json.dumps({"study": "minilm", "model": "minilm"}))
    (broken / "error.txt").write_text("Traceback ...\nFloatingPointError: epoch 1: training loss is nan\n")
    table = write_best_trials(tmp_path / "exp")
    assert "trial_broken: FloatingPointError: epoch 1: training loss is nan" in table


def test_not_an_experiment(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no Tune trials found" in capsys.readouterr().err
    with pytest.raises(ExperimentError, match="not a directory"):
        write_best_trials(tmp_path / "missing")


def test_trials_a_crash_left_damaged_are_named_and_the_rest_reported(tmp_path, capsys):
    experiment = tmp_path / "exp"
    good = plant_trial(experiment, "minilm", "good", 0.2, 0.2, seed=0)
    truncated = plant_trial(experiment, "minilm", "truncated", 0.9, 0.9, seed=1, epochs=2)
    text = (truncated / "result.json").read_text()
    (truncated / "result.json").write_text(text[:len(text) - 20])  # cut inside its last line
    empty = plant_trial(experiment, "minilm", "empty", 0.9, 0.9, seed=2)
    (empty / "checkpoint_000000" / "predictions.npz").write_bytes(b"")
    cut = plant_trial(experiment, "minilm", "cut", 0.9, 0.9, seed=3)
    npz = cut / "checkpoint_000000" / "predictions.npz"
    npz.write_bytes(npz.read_bytes()[:300])
    no_params = plant_trial(experiment, "minilm", "params", 0.9, 0.9, seed=4)
    (no_params / "params.json").write_text('{"study": "mini')

    assert main([str(experiment)]) == 0
    out = capsys.readouterr().out
    [row] = json.loads((experiment / "best_trials.json").read_text())
    assert row["trial_dir"] == str(good)  # the others would have won on validation, had they been readable
    for damaged, file in ((truncated, "result.json"), (empty, "predictions.npz"), (cut, "predictions.npz"),
                          (no_params, "params.json")):
        [line] = [line for line in out.splitlines() if line.startswith(f"- minilm {damaged.name}:")]
        assert f"{file}: unreadable (" in line, line
    assert not list(experiment.glob("**/.*.tmp")), "a temporary file of an atomic write was left behind"

    for trial in (good,):  # nothing usable left: one line, exit 2
        (trial / "checkpoint_000000" / "predictions.npz").write_bytes(b"PK\x03\x04")
    assert main([str(experiment)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def plant_scored_trial(experiment, name, probs, labels, metric, seed):
    """A finished one-epoch trial whose saved thresholds were tuned for `metric` on validation (test = val)."""
    trial = experiment / f"minilm_{name}"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"study": "minilm", "model": "minilm", "seed": seed,
                                                   "metric": metric}))
    global_t, per_class_t = thresholds_for(metric, probs, labels)
    np.savez(trial / "checkpoint_000000" / "predictions.npz", epoch=1, metric=metric, val_score=0.0,
             val_macro_f1=0.0, val_probs=probs, val_labels=labels, test_probs=probs, test_labels=labels,
             global_threshold=global_t, per_class_thresholds=per_class_t)
    (trial / "result.json").write_text(json.dumps({"training_iteration": 1, "params_m": 1.0}) + "\n")
    return trial


@pytest.mark.parametrize("metric, winner", [("macro_f1", "rare_classes_right"), ("jaccard", "common_class_right")])
def test_the_selected_metric_decides_the_best_trial(tmp_path, metric, winner):
    """Two trials whose order differs between macro-F1 and Jaccard: one gets the three rare classes right and the
    common one wrong half the time, the other the reverse. Macro-F1 prefers the first, Jaccard (per row) the
    second; the sweep's --metric decides which is the model's best."""
    rng = np.random.default_rng(0)
    labels = np.zeros((400, 4), dtype=np.float32)
    labels[:, 0] = rng.random(400) < 0.9
    for c in (1, 2, 3):
        labels[rng.choice(400, 20, replace=False), c] = 1
    noisy = rng.random((400, 4)).astype(np.float32)
    rare_right, common_right = noisy.copy(), noisy.copy()
    rare_right[:, 1:] = labels[:, 1:] * 0.8 + 0.1
    common_right[:, 0] = labels[:, 0] * 0.8 + 0.1
    experiment = tmp_path / metric
    trials = {name: plant_scored_trial(experiment, name, probs, labels, metric, seed)
              for seed, (name, probs) in enumerate((("rare_classes_right", rare_right),
                                                    ("common_class_right", common_right)))}

    def tuned(probs: np.ndarray, for_metric: str) -> float:  # the metric at thresholds tuned for it
        return score(for_metric, labels, (probs >= thresholds_for(for_metric, probs, labels)[1]).astype(int))

    # the premise: each metric, at its own thresholds, orders the two trials the other way
    assert tuned(rare_right, "macro_f1") > tuned(common_right, "macro_f1")
    assert tuned(rare_right, "jaccard") < tuned(common_right, "jaccard")
    write_best_trials(experiment)
    [row] = json.loads((experiment / "best_trials.json").read_text())
    assert row["trial_dir"] == str(trials[winner]) and row["metric"] == metric
    assert row["val_score"] == row[f"val_{metric}"]
    assert f"chosen by validation {metric}" in (experiment / "best_trials.md").read_text()


def test_the_top_two_are_compared_by_a_paired_bootstrap_over_test_rows():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 5)) < 0.3).astype(np.float32)

    def predictions(quality: float) -> dict:
        probs = np.clip(quality * labels + (1 - quality) * rng.random(labels.shape), 0, 1).astype(np.float32)
        return {"test_probs": probs, "test_labels": labels, "per_class_thresholds": np.full(5, 0.5)}

    strong, weak = predictions(0.8), predictions(0.1)
    assert compare("A", strong, "B", weak, "macro_f1", resamples=200).endswith(": A beats B")
    assert compare("B", weak, "A", strong, "jaccard", resamples=200).endswith(": A beats B")
    same = compare("A", strong, "A'", dict(strong), "macro_f1", resamples=200)
    assert "difference +0.0000" in same and same.endswith("are not separable on this test set")
    unlabelled = {k: v for k, v in strong.items() if k != "test_labels"}
    assert "not tested (the test split has no labels" in compare("A", unlabelled, "B", weak, "macro_f1")
