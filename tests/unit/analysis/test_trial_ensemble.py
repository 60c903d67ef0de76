"""The trial ensemble (analysis.trial_ensemble): greedy selection with replacement over every trial's validation
probabilities, on synthetic probabilities whose best ensemble is known; then written by analysis.best_trials beside
the seed ensembles, shown by analysis.report, exported with its weights and averaged with them by analysis.predict."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import export, predict
from analysis.best_trials import write_best_trials
from analysis.decision import average
from analysis.report import build_report
from analysis.seeds import SeedRun
from analysis.tables import members_text
from analysis.trial_ensemble import select, trial_ensemble, tuned_score
from analysis.trials import evaluate
from tests.helpers.exports import LABELS, TEXTS, write_classifier
from trainables.metrics import per_class_thresholds_for, thresholds_for


def two_class(p_one: list[float]) -> np.ndarray:
    """Single-label probabilities of two classes from P(class 1) per row."""
    p = np.array(p_one, dtype=np.float32)
    return np.stack([1 - p, p], axis=1)


# Every row's label is 1. A alone gets rows 0, 1, 4 right, B alone rows 2, 3: (A + B) / 2 gets 0, 2, 3, 1 of them
# right and (2A + B) / 3 all five. C predicts 0 everywhere. The best ensemble needs A twice: with replacement.
A = two_class([0.9, 0.9, 0.4, 0.4, 0.7])
B = two_class([0.2, 0.2, 0.9, 0.9, 0.2])
C = two_class([0.1] * 5)
ONES = np.ones(5, dtype=np.int64)


def test_greedy_picks_with_replacement_and_the_weights_count_the_picks():
    assert [tuned_score(p, ONES, "micro_f1") for p in (A, B, average([A, B]), average([A, A, B]))] == [
        0.6, 0.4, 0.8, 1.0]
    counts = select(np.stack([C, A, B]), ONES, "micro_f1")
    assert counts.tolist() == [0, 2, 1]  # A, then B, then A again; a fourth pick improves nothing: stop
    assert select(np.stack([C, A, B]), ONES, "micro_f1", rounds=2).tolist() == [0, 1, 1]  # capped at two picks
    joint = trial_ensemble([run(f"minilm_{name}", probs, ONES, metric="micro_f1")
                            for name, probs in (("c", C), ("a", A), ("b", B))])
    assert [r.row["trial_dir"] for r in joint.members] == ["/sweep/minilm_a", "/sweep/minilm_b"]
    assert joint.weights == [2, 1] and "per_class_thresholds" not in joint.arrays  # single-label: the argmax
    assert evaluate(joint.arrays)["val_accuracy"] == 1.0


def test_the_obviously_better_member_alone_when_nothing_improves_it():
    perfect = two_class([0.8] * 5)
    assert select(np.stack([A, B, perfect, C]), ONES, "micro_f1").tolist() == [0, 0, 1, 0]


def test_ties_go_to_the_earlier_trial_and_selection_is_deterministic():
    twins = np.stack([C, A, A.copy(), B])
    first = select(twins, ONES, "micro_f1")
    assert first.tolist() == [0, 2, 0, 1]
    assert all(np.array_equal(select(twins, ONES, "micro_f1"), first) for _ in range(3))


@pytest.mark.parametrize("metric, positives", [("macro_f1", 0.3), ("macro_f1", 0.02), ("micro_f1", 0.3),
                                               ("jaccard", 0.3)])
def test_the_cheaper_threshold_search_finds_the_same_thresholds(metric, positives):
    """Without the global search only where it cannot change them: macro-F1 with no class under 5 positives."""
    rng = np.random.default_rng(5)
    labels = (rng.random((200, 6)) < positives).astype(np.float32)
    probs = np.clip(0.4 * labels + 0.6 * rng.random(labels.shape), 0, 1).astype(np.float32)
    assert np.array_equal(per_class_thresholds_for(metric, probs, labels), thresholds_for(metric, probs, labels)[1])


def run(name: str, val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray | None = None,
        labels: list[str] | None = None, metric: str = "macro_f1") -> SeedRun:
    """A finished trial's best checkpoint as analysis.trials reads it, thresholds tuned on its validation rows."""
    multi_label = val_labels.ndim == 2
    names = labels or [f"label{c}" for c in range(val_probs.shape[1])]
    arrays = {"epoch": np.int64(1), "metric": np.str_(metric), "label_names": np.array(names),
              "val_probs": val_probs, "val_labels": val_labels, "test_labels": val_labels,
              "test_probs": val_probs[::-1].copy() if test_probs is None else test_probs}
    if multi_label:
        global_t, per_class_t = thresholds_for(metric, val_probs, val_labels)
        arrays.update(global_threshold=np.float32(global_t), per_class_thresholds=per_class_t)
    row = {"model": name.split("_")[0], "metric": metric, "val_score": tuned_score(val_probs, val_labels, metric),
           "trial_dir": f"/sweep/{name}", "checkpoint": "checkpoint_000001", "config_seed": 0}
    return SeedRun(row, arrays)


def half_experts(rows: int = 300, classes: int = 6, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Multi-label validation labels and three trials: one that knows the first half of the classes, one the second
    half (each guessing on the rest), and one that predicts the opposite of the labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((rows, classes)) < 0.3).astype(np.float32)
    noise = rng.random((3, rows, classes)).astype(np.float32)
    knows_first, knows_second = noise[0].copy(), noise[1].copy()
    half = classes // 2
    knows_first[:, :half] = 0.7 * labels[:, :half] + 0.3 * noise[0][:, :half]
    knows_second[:, half:] = 0.7 * labels[:, half:] + 0.3 * noise[1][:, half:]
    return labels, [knows_first, knows_second, 1 - 0.8 * labels - 0.2 * noise[2]]


@pytest.mark.parametrize("metric", ["macro_f1", "jaccard"])
def test_multi_label_halves_are_joined_with_thresholds_chosen_again_on_validation(metric):
    labels, (first, second, opposite) = half_experts()
    runs = [run("minilm_opposite", opposite, labels, metric=metric), run("minilm_first", first, labels, metric=metric),
            run("albert_second", second, labels, metric=metric)]
    joint = trial_ensemble(runs)
    assert {r.row["trial_dir"] for r in joint.members} == {"/sweep/minilm_first", "/sweep/albert_second"}
    assert joint.library == 3 and joint.weights == sorted(joint.weights, reverse=True)  # the most picked first
    arrays = joint.arrays
    assert np.array_equal(arrays["val_probs"], average([r.arrays["val_probs"] for r in joint.members], joint.weights))
    assert np.array_equal(arrays["test_probs"], average([r.arrays["test_probs"] for r in joint.members], joint.weights))
    assert np.array_equal(arrays["per_class_thresholds"], thresholds_for(metric, arrays["val_probs"], labels)[1])
    joint_score = evaluate(arrays)[f"val_{metric}"]
    assert joint_score > max(r.row["val_score"] for r in runs) + 0.05


def test_selection_never_reads_test():
    labels, probs = half_experts(seed=1)
    clean = [run(f"minilm_{i}", p, labels) for i, p in enumerate(probs)]
    poisoned = [run(f"minilm_{i}", p, labels, test_probs=np.full_like(p, np.nan)) for i, p in enumerate(probs)]
    a, b = trial_ensemble(clean), trial_ensemble(poisoned)
    assert [r.row["trial_dir"] for r in a.members] == [r.row["trial_dir"] for r in b.members]
    assert a.weights == b.weights
    assert np.array_equal(a.arrays["val_probs"], b.arrays["val_probs"])
    assert np.array_equal(a.arrays["per_class_thresholds"], b.arrays["per_class_thresholds"])
    assert np.isnan(b.arrays["test_probs"]).all()


def test_only_trials_of_the_same_rows_and_labels_join_the_library():
    labels, (first, second, _) = half_experts(seed=2)
    other_rows = labels.copy()
    other_rows[0] = 1 - other_rows[0]
    broken = second.copy()
    broken[3, 1] = np.nan
    runs = [run("minilm_first", first, labels), run("minilm_second", second, labels),
            run("minilm_renamed", second, labels, labels=[f"x{c}" for c in range(6)]),
            run("minilm_other_rows", second, other_rows), run("minilm_nan", broken, labels)]
    assert trial_ensemble(runs).library == 2
    assert trial_ensemble(runs[:1] + runs[2:]) is None  # nothing left to join the best trial


def plant(experiment, name: str, probs: np.ndarray, labels: np.ndarray, seed: int, confirm_of: str | None = None):
    """A finished trial in Tune's layout whose best checkpoint holds these validation (and test) probabilities."""
    trial = experiment / name
    checkpoint = trial / "checkpoint_000001"
    checkpoint.mkdir(parents=True, exist_ok=True)
    study = name.rsplit("_", 1)[0]
    (trial / "params.json").write_text(json.dumps({"study": study, "model": study, "seed": seed,
                                                   "confirm_of": confirm_of, "lr": 1e-3 * (seed + 1),
                                                   "max_length": 32, "preprocess": "none", "thresholds": "exact"}))
    (trial / "result.json").write_text(json.dumps({"training_iteration": 1, "params_m": 1.0, "time_total_s": 1.0,
                                                   "cpu_seconds": 1.0, "gpu_seconds": 0.0}) + "\n")
    global_t, per_class_t = thresholds_for("macro_f1", probs, labels)
    np.savez(checkpoint / "predictions.npz", epoch=1, metric="macro_f1", val_score=0.0, val_macro_f1=0.0,
             label_names=np.array([f"label{c}" for c in range(labels.shape[1])]), val_probs=probs, val_labels=labels,
             test_probs=probs, test_labels=labels, global_threshold=global_t, per_class_thresholds=per_class_t)
    return trial


def test_best_trials_and_the_report_show_the_trial_ensemble_beside_the_best_trial_and_the_seed_ensemble(tmp_path):
    labels, (first, second, opposite) = half_experts(seed=3)
    experiment = tmp_path / "sweep"
    plant(experiment, "minilm_00000", first, labels, seed=0)
    plant(experiment, "minilm_00001", np.clip(first + 0.05, 0, 1), labels, seed=1, confirm_of="minilm_00000")
    plant(experiment, "albert_00002", second, labels, seed=2)
    plant(experiment, "albert_00003", opposite, labels, seed=3)
    (experiment / "sweep.json").write_text(json.dumps({"experiment": "goemotions_raw", "dataset": "goemotions"}))

    table = write_best_trials(experiment)
    seeds, joint = json.loads((experiment / "ensembles.json").read_text())
    assert seeds["kind"] == "seeds" and seeds["model"] == "minilm (2-seed ensemble)"
    assert joint["kind"] == "trials" and joint["model"] == "trial ensemble" and joint["library"] == 4
    assert str(experiment / "albert_00002") in joint["members"] and str(experiment / "albert_00003") not in joint[
        "members"]
    assert sum(joint["weights"]) == joint["rounds"] and set(joint["checkpoints"]) == {"checkpoint_000001"}
    with np.load(joint["predictions"]) as npz:
        assert [str(name) for name in npz["label_names"]] == [f"label{c}" for c in range(6)]
        assert np.array_equal(np.array(joint["thresholds"], dtype=np.float32), npz["per_class_thresholds"])
        assert npz["val_probs"].shape == npz["test_probs"].shape == labels.shape
        assert evaluate(dict(npz))["test_macro_f1"] == joint["test_macro_f1"]
    assert "| trial ensemble |" in table
    assert "- trial ensemble: greedy selection with replacement over 4 trials (3 picks)" in table

    report, _ = build_report([experiment], tmp_path / "report", resamples=20)
    section = report.split("## Ensembles")[1].split("\n## ")[0]
    assert "| best trial (minilm) | minilm_00000 |" in section and "| minilm (2-seed ensemble) | 2 seeds |" in section
    assert f"| trial ensemble | {members_text(joint)} | {joint['val_macro_f1']:.4f} |" in section


def rewrite_predictions(trial, probs: np.ndarray, labels: np.ndarray) -> None:
    """The tiny experiment's trial with these validation probabilities (three labels, tests/helpers/exports.py)."""
    npz_path = next(trial.glob("checkpoint_*/predictions.npz"))
    with np.load(npz_path) as npz:
        arrays = dict(npz)
    global_t, per_class_t = thresholds_for("macro_f1", probs, labels)
    arrays.update(val_probs=probs, val_labels=labels, global_threshold=np.float32(global_t),
                  per_class_thresholds=per_class_t)
    np.savez(npz_path, **arrays)


@pytest.fixture
def two_trials(experiment_dir, tiny_bert):
    """The tiny finished experiment with a second trial of other weights; each trial knows other validation labels,
    so the trial ensemble takes both."""
    second = experiment_dir / "tiny_00001"
    shutil.copytree(experiment_dir / "tiny_00000", second)
    shutil.rmtree(second / "checkpoint_000000" / "model")
    write_classifier(tiny_bert, second / "checkpoint_000000" / "model", seed=1)
    labels, (first, other, _) = half_experts(rows=40, classes=len(LABELS), seed=4)
    rewrite_predictions(experiment_dir / "tiny_00000", first, labels)
    rewrite_predictions(second, other, labels)
    return experiment_dir


def test_export_writes_the_trial_ensemble_and_predict_averages_its_members_with_their_weights(two_trials, tmp_path):
    write_best_trials(two_trials)
    [joint] = [row for row in json.loads((two_trials / "ensembles.json").read_text()) if row["kind"] == "trials"]
    assert len(joint["members"]) == 2  # the premise: both trials picked
    out = tmp_path / "exports" / "joint"
    assert export.main([str(two_trials), "--ensemble", "trials", "--out", str(out)]) == 0
    rule = json.loads((out / "decision.json").read_text())
    assert rule["members"] == [".", f"members/{Path(joint['members'][1]).name}"]
    assert rule["weights"] == joint["weights"] and rule["provenance"]["model"] == "trial ensemble"
    assert rule["provenance"]["trials"] == [os.path.realpath(member) for member in joint["members"]]
    assert rule["thresholds"] == joint["thresholds"]
    assert rule["provenance"]["scores"]["test"]["macro_f1"] == round(joint["test_macro_f1"], 6)
    _, _, members = predict.member_probs(out, TEXTS)
    _, _, probs = predict.predict(out, TEXTS)
    assert np.array_equal(probs, average(members, rule["weights"]))
    (out / "decision.json").write_text(json.dumps({**rule, "weights": [3, 1]}))  # predict follows the file's weights
    assert np.array_equal(predict.predict(out, TEXTS)[2], average(members, [3, 1]))


def test_an_ensemble_whose_members_label_sets_differ_is_refused(experiment_dir, tmp_path, capsys):
    """A confirmation trial (a seed ensemble's member) whose predictions name other labels: one line, exit 2."""
    confirm = experiment_dir / "tiny_00001"
    shutil.copytree(experiment_dir / "tiny_00000", confirm)
    params = json.loads((confirm / "params.json").read_text())
    (confirm / "params.json").write_text(json.dumps({**params, "seed": 1, "confirm_of": "tiny_00000"}))
    npz_path = confirm / "checkpoint_000000" / "predictions.npz"
    with np.load(npz_path) as npz:
        arrays = dict(npz)
    np.savez(npz_path, **{**arrays, "label_names": np.array(["anger", "joy", "grief"])})
    out = tmp_path / "exports" / "tiny"
    capsys.readouterr()
    assert export.main([str(experiment_dir), "--out", str(out)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"error: {npz_path}: its label names or task differ from {experiment_dir}/tiny_00000/"
                    f"checkpoint_000000's; an ensemble averages the probabilities of the same labels")
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("flag", [["--single"], ["--model", "tiny"]])
def test_the_trial_ensemble_is_every_models_so_model_flags_are_refused(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        export.main([str(tmp_path), "--ensemble", "trials", *flag])
    assert exit.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == ("python -m analysis.export: error: --ensemble trials: chooses its members from every model's "
                    "trials; drop --model and --single")
