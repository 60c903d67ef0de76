"""The report's parts on planted predictions: bootstrap intervals, FN/FP-heavy marks, the Pareto front, and one
line when nothing is readable."""

import numpy as np

from analysis.figures import pareto_front
from analysis.report import bootstrap_ci, error_analysis, main


def test_cli_one_line_when_nothing_is_readable(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "r" / "report.md").exists()


def test_error_analysis_marks_a_planted_fn_heavy_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    predictions = labels.copy()
    missed = np.flatnonzero(labels == 2)[:60]  # class 2 is mostly missed (predicted as 0)
    predictions[missed] = 0
    alarms = np.flatnonzero(labels == 1)[:15]  # class 3 gets a few false alarms
    predictions[alarms] = 3
    table = {row["label"]: row for row in error_analysis(labels, predictions, ["a", "b", "c", "d"], worst=2)}
    assert table["c"]["mark"].startswith("FN-heavy") and table["c"]["fn"] == 60 and table["c"]["fp"] == 0
    assert "100% of 60 errors" in table["c"]["mark"]
    assert table["a"]["mark"].startswith("FP-heavy")  # the misses of c land on a as false alarms
    assert table["b"]["mark"] == "" and table["b"]["recall"] < 1

    multi = (rng.random((300, 3)) < 0.4).astype(int)
    multi_pred = multi.copy()
    multi_pred[multi[:, 1] == 1, 1] = 0  # label 1 never predicted
    table = {row["label"]: row for row in error_analysis(multi, multi_pred, ["x", "y", "z"])}
    assert table["y"]["mark"].startswith("FN-heavy") and table["y"]["recall"] == 0


def test_bootstrap_interval_contains_the_point_estimate():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 500)
    predictions = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 5, 500))
    low, high = bootstrap_ci(labels, predictions, resamples=300)
    point = f1_score(labels, predictions, average="macro")
    assert low < point < high and high - low < 0.2
    multi = (rng.random((400, 6)) < 0.3).astype(int)
    noisy = np.where(rng.random((400, 6)) < 0.85, multi, 1 - multi)
    low, high = bootstrap_ci(multi, noisy, resamples=300)
    assert low < f1_score(multi, noisy, average="macro", zero_division=0) < high


def test_pareto_front():
    points = [(10, 0.5), (5, 0.4), (20, 0.45), (8, 0.6), (3, 0.1)]
    assert pareto_front(points) == [4, 1, 3]
