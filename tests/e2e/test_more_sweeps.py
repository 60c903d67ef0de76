"""Smoke sweeps of goemotions_simplified.py, semeval_ec.py and emotion6.py on a tiny BERT and release-format
fixtures, run as a user runs them (subprocess, fresh local Ray cluster, real Optuna): each prints its table
with the dataset's own metrics and per-class F1, and E-c leaves a leaderboard file that parses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import write_emotion6, write_goemotions, write_semeval_ec
from tests.helpers.models import build_tiny_bert
from tests.helpers.sweeps import REPO, run_sweep
from trainables.data import load_dataset, read_semeval_ec
from trainables.tweets import normalise_tweet


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"goemotions": write_goemotions(root / "go"), "semeval_ec": write_semeval_ec(root / "ec"),
            "emotion6": write_emotion6(root / "e6")}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, data_dirs) -> Path:
    """A tiny BERT whose vocabulary covers every fixture text, raw and tweet-normalised."""
    texts = []
    for name, directory in data_dirs.items():
        data = load_dataset(name, directory)
        for split in (data.train, data.validation, data.test):
            texts += split.texts + [normalise_tweet(text) for text in split.texts]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny", texts)


def smoke(script: str, data_dir: Path, model: Path, storage: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_sweep(script, "--data-dir", str(data_dir), "--models", str(model), "--budget", "smoke",
                       "--num-samples", "1", "--storage", str(storage), "--name", "smoke", "--no-dashboard", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def best_arrays(sweep_dir: Path) -> tuple[dict, dict]:
    row = json.loads((sweep_dir / "best_trials.json").read_text())[0]
    with np.load(Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz") as npz:
        return row, dict(npz)


def test_goemotions_simplified_reports_and_trains_on_the_rows_its_rule_kept(tmp_path, data_dirs, tiny_model):
    result = smoke("goemotions_simplified.py", data_dirs["goemotions"], tiny_model, tmp_path,
                   "--label-rule", "single", "--val-rows", "1000", "--test-rows", "1000")
    expected = load_dataset("goemotions_single", data_dirs["goemotions"], label_rule="single")
    assert expected.note in result.stdout
    row, arrays = best_arrays(tmp_path / "smoke")
    assert len(arrays["val_labels"]) == len(expected.validation) and len(arrays["test_labels"]) == len(expected.test)
    assert arrays["val_labels"].ndim == 1  # class ids: softmax + cross-entropy
    header = next(line for line in result.stdout.splitlines() if line.startswith("| model |"))
    for column in ("val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy", "test_weighted_f1"):
        assert column in header and column in row
    assert "### Per-class F1: tiny" in result.stdout


def test_semeval_ec_writes_a_leaderboard_file_that_round_trips(tmp_path, data_dirs, tiny_model):
    # --test-rows limits labelled test splits only: the unlabelled E-c test file is predicted whole, in order
    result = smoke("semeval_ec.py", data_dirs["semeval_ec"], tiny_model, tmp_path, "--preprocess", "tweet",
                   "--test-rows", "8", "--num-samples", "2")  # two trials: a trial ensemble
    sweep_dir = tmp_path / "smoke"
    row, arrays = best_arrays(sweep_dir)
    assert row["config"]["preprocess"] == "tweet" and "test_labels" not in arrays
    assert {"val_jaccard", "val_micro_f1", "val_macro_f1"} <= set(row)
    assert "val_jaccard" in result.stdout and "Prediction file (tiny, 24 test rows)" in result.stdout

    path = sweep_dir / "predictions" / "tiny.txt"
    test = read_semeval_ec(data_dirs["semeval_ec"] / "2018-E-c-En-test.txt", labelled=False)
    back = read_semeval_ec(path, labelled=True)
    assert back.ids == test.ids and back.texts == test.texts  # same tweets, same order, raw text
    assert np.array_equal(back.labels, (arrays["test_probs"] >= arrays["per_class_thresholds"]).astype(np.float32))

    # the trial ensemble's file: its weighted average at its own thresholds, for the same tweets
    [joint] = [row for row in json.loads((sweep_dir / "ensembles.json").read_text()) if row["kind"] == "trials"]
    with np.load(joint["predictions"]) as npz:
        decided = (npz["test_probs"] >= npz["per_class_thresholds"]).astype(np.float32)
    joint_path = sweep_dir / "predictions" / "trial_ensemble.txt"
    from_joint = read_semeval_ec(joint_path, labelled=True)
    assert from_joint.ids == test.ids and np.array_equal(from_joint.labels, decided)

    # The analysis entry point rewrites the same files from the experiment dir alone.
    first, first_joint = path.read_bytes(), joint_path.read_bytes()
    path.unlink()
    joint_path.unlink()
    rerun = subprocess.run([sys.executable, "-m", "analysis.predictions", str(sweep_dir)], capture_output=True,
                           text=True, cwd=REPO, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert path.read_bytes() == first and joint_path.read_bytes() == first_joint


def test_emotion6_reports_accuracy_and_per_class_f1(tmp_path, data_dirs, tiny_model):
    result = smoke("emotion6.py", data_dirs["emotion6"], tiny_model, tmp_path, "--variant", "baseline")
    row, arrays = best_arrays(tmp_path / "smoke")
    assert {"test_accuracy", "test_macro_f1"} <= set(row) and "test_accuracy" in result.stdout
    per_class = (tmp_path / "smoke" / "per_class_f1.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in per_class[1:]] == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert sum(int(line.split(",")[-1]) for line in per_class[1:]) == len(arrays["test_labels"])
