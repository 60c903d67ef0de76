"""The report's parts on planted predictions: bootstrap intervals, FN/FP-heavy marks, the Pareto front, and one
line when nothing is readable."""

import numpy as np

from analysis.figures import pareto_front
from analysis.report import bootstrap_ci, error_analysis, main


def test_cli_one_line_when_nothing_is_readable(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "r").exists()


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


def test_adaptive_allocation_decisions_are_listed_from_the_journal(tmp_path):
    """The report reads what --allocate adaptive decided from the studies' attributes in the Optuna journal."""
    from optuna.distributions import FloatDistribution

    from analysis.report import allocation_lines
    from sweeps.searcher import StudySearcher
    from sweeps.studies import JOURNAL, METRIC, Study

    studies = [Study(name, {"model": name, "epochs": 1}, {"lr": FloatDistribution(1e-5, 1e-3, log=True)},
                     num_samples=4, max_concurrent=4, cpus=1, gpus=0) for name in ("strong", "weak")]
    searcher = StudySearcher(studies, tmp_path / JOURNAL, "random", seed=0, allocate="adaptive")
    for n in range(4):  # two startup trials each (half of 4), then the decision
        config = searcher.suggest(f"t{n}")
        score = 0.5 if config["study"] == "strong" else 0.3
        searcher.on_trial_complete(f"t{n}", {"training_iteration": 1, METRIC: score, "time_total_s": 1.0})
    sweep = {"allocate": "adaptive", "models": [{"name": "strong", "num_samples": 4}, {"name": "weak",
                                                                                      "num_samples": 4}]}
    lines = allocation_lines(tmp_path, sweep)
    assert lines[0] == "- strong: 2 trials, budget 4 planned, 6 after reallocation"
    assert lines[1].startswith("- weak: 2 trials, budget 4 planned, 2 after reallocation; weak (best 0.3000) is "
                               "behind strong (best 0.5000)")
    assert allocation_lines(tmp_path, {**sweep, "allocate": "even"}) == []
