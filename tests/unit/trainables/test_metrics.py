"""The exact threshold search equals a brute-force optimum; the rare-class guard and the Optuna variant.

Thresholds tuned for each metric (macro-F1, micro-F1, Jaccard) against brute force over every combination of
per-class cuts on small problems (probabilities from a few distinct values, so that enumeration is exact): equal
where the method is exact (macro- and micro-F1 at any size, Jaccard with one class or when enumerated), and for
Jaccard's coordinate ascent what the method guarantees: no worse than the best global threshold, no better than
brute force, and no single class's threshold change improves it.
"""
import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score

from trainables.metrics import choose_thresholds, multilabel_report, optuna_thresholds, thresholds_for

from trainables.scores import METRICS, score

from trainables.thresholds import (best_class_threshold, coordinate_ascent, exact_thresholds, global_threshold,
                                    global_threshold_for, metric_thresholds, per_class_thresholds)


def random_predictions(seed: int, n: int = 80, classes: int = 5):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < rng.uniform(0.05, 0.5, classes)).astype(np.float32)
    probs = np.clip(0.3 * labels + rng.random((n, classes)) * 0.8, 0, 1).round(2)  # rounded: many ties
    return probs, labels


@pytest.mark.parametrize("seed", range(8))
def test_per_class_thresholds_match_brute_force(seed):
    probs, labels = random_predictions(seed)
    thresholds, best_f1 = per_class_thresholds(probs, labels)
    for c in range(labels.shape[1]):
        candidates = np.append(np.unique(probs[:, c]), 2.0)
        brute = max(f1_score(labels[:, c], probs[:, c] >= t, zero_division=0) for t in candidates)
        assert best_f1[c] == pytest.approx(brute)
        assert f1_score(labels[:, c], probs[:, c] >= thresholds[c], zero_division=0) == pytest.approx(brute)


@pytest.mark.parametrize("seed", range(8))
def test_global_threshold_matches_brute_force(seed):
    probs, labels = random_predictions(seed)
    threshold, macro = global_threshold(probs, labels)
    candidates = np.append(np.unique(probs), 2.0)
    brute = max(f1_score(labels, probs >= t, average="macro", zero_division=0) for t in candidates)
    assert macro == pytest.approx(brute)
    assert f1_score(labels, probs >= threshold, average="macro", zero_division=0) == pytest.approx(brute)


def test_per_class_beats_global_beats_half():
    probs, labels = random_predictions(0, n=300, classes=8)
    report = multilabel_report(probs, labels, *exact_thresholds(probs, labels))
    assert report["macro_f1_per_class"] >= report["macro_f1_global"] >= report["macro_f1_at_0.5"]


def test_rare_classes_fall_back_to_the_global_threshold():
    probs, labels = random_predictions(1, n=200, classes=4)
    labels[:, 2] = 0
    labels[:3, 2] = 1  # three positives: below the guard of five
    best_global, thresholds = exact_thresholds(probs, labels, min_positives=5)
    own, _ = per_class_thresholds(probs, labels)
    assert thresholds[2] == best_global
    assert thresholds[0] == own[0]


def test_optuna_search_approaches_the_exact_optimum():
    probs, labels = random_predictions(2, n=300, classes=4)
    exact = multilabel_report(probs, labels, *exact_thresholds(probs, labels))["macro_f1_per_class"]
    found = multilabel_report(probs, labels, *optuna_thresholds(probs, labels, n_trials=150, seed=0))
    assert exact - 0.05 <= found["macro_f1_per_class"] <= exact + 1e-12


# --- Thresholds tuned for each metric --------------------------------------------------------------------------

def reference(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The metrics written out from their definitions (fast enough to brute-force; checked against sklearn)."""
    gold, predicted = labels > 0, predictions > 0
    hits = (gold & predicted).sum(axis=0)
    if metric == "micro_f1":
        denominator = predicted.sum() + gold.sum()
        return 2.0 * hits.sum() / denominator if denominator else 0.0
    if metric == "macro_f1":
        denominator = predicted.sum(axis=0) + gold.sum(axis=0)
        return float(np.mean([2.0 * h / d if d else 0.0 for h, d in zip(hits, denominator)]))
    inter, union = (gold & predicted).sum(axis=1), (gold | predicted).sum(axis=1)
    return float(np.mean([i / u if u else 1.0 for i, u in zip(inter, union)]))  # empty gold and prediction: 1


def small_problem(seed: int, n: int = 12, classes: int = 3, levels: int = 4):
    """Few rows, scores on a coarse grid (ties), some rows without any gold label."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < rng.uniform(0.2, 0.6, classes)).astype(np.float32)
    probs = (0.25 * labels + rng.integers(0, levels, (n, classes)) / levels * 0.75).round(3)
    return probs, labels


def candidates(scores: np.ndarray) -> np.ndarray:
    return np.append(np.unique(scores), 2.0)  # every cut of one class, "nothing" included


def brute_force(metric: str, probs: np.ndarray, labels: np.ndarray, fixed: dict | None = None) -> float:
    """The best metric over every combination of per-class cuts (classes in `fixed` held at their threshold)."""
    fixed = fixed or {}
    options = [[fixed[c]] if c in fixed else candidates(probs[:, c]) for c in range(probs.shape[1])]
    return max(reference(metric, labels, probs >= np.array(t)) for t in itertools.product(*options))


def at(metric, probs, labels, thresholds) -> float:
    return reference(metric, labels, probs >= thresholds)


@pytest.mark.parametrize("metric", METRICS)
def test_reference_metrics_equal_sklearn(metric):
    probs, labels = small_problem(0, n=40, classes=4)
    labels[:5] = 0  # empty gold rows: Jaccard counts 1 only when the prediction is empty too
    for thresholds in (0.3, 0.6, 2.0, np.array([0.2, 0.5, 0.9, 2.0])):
        predictions = probs >= thresholds
        assert score(metric, labels, predictions) == pytest.approx(reference(metric, labels, predictions), abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(6))
def test_global_threshold_for_matches_brute_force(metric, seed):
    probs, labels = small_problem(seed, n=30, classes=4)
    threshold, value = global_threshold_for(metric, probs, labels)
    brute = max(at(metric, probs, labels, t) for t in candidates(probs))
    assert value == pytest.approx(brute, abs=1e-12)
    assert at(metric, probs, labels, threshold) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(6))
def test_one_class_step_matches_brute_force_over_its_candidates(metric, seed):
    probs, labels = small_problem(seed, n=30, classes=4, levels=6)
    others = np.random.default_rng(seed).choice(candidates(probs), size=4)
    for c in range(4):
        threshold, value = best_class_threshold(metric, probs, labels, others, c)
        trials = [at(metric, probs, labels, np.where(np.arange(4) == c, t, others)) for t in candidates(probs[:, c])]
        assert value == pytest.approx(max(trials), abs=1e-12)
        assert at(metric, probs, labels, np.where(np.arange(4) == c, threshold, others)) == pytest.approx(max(trials),
                                                                                                          abs=1e-12)


@pytest.mark.parametrize("metric", ["macro_f1", "micro_f1"])
@pytest.mark.parametrize("seed", range(10))
def test_exact_metrics_equal_brute_force(metric, seed):
    """macro-F1 (separable) and micro-F1 (Dinkelbach) are exact at any number of classes."""
    probs, labels = small_problem(seed)
    _, thresholds = metric_thresholds(metric, probs, labels, min_positives=0)
    assert at(metric, probs, labels, thresholds) == pytest.approx(brute_force(metric, probs, labels), abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_jaccard_enumerated_equals_brute_force(seed):
    probs, labels = small_problem(seed)
    _, thresholds = metric_thresholds("jaccard", probs, labels, min_positives=0)  # few enough combinations
    assert at("jaccard", probs, labels, thresholds) == pytest.approx(brute_force("jaccard", probs, labels),
                                                                     abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_jaccard_ascent_is_exact_for_one_class(seed):
    probs, labels = small_problem(seed, classes=1)
    _, thresholds = metric_thresholds("jaccard", probs, labels, min_positives=0, exhaustive_limit=0)
    assert at("jaccard", probs, labels, thresholds) == pytest.approx(brute_force("jaccard", probs, labels),
                                                                     abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_jaccard_ascent_keeps_its_guarantees(seed):
    """Coordinate ascent (enumeration switched off): at least the best global threshold, at most brute force,
    and coordinate-wise optimal: no single class's cut improves it."""
    probs, labels = small_problem(seed, n=14, classes=4, levels=3)
    best_global, thresholds = metric_thresholds("jaccard", probs, labels, min_positives=0, exhaustive_limit=0)
    found = at("jaccard", probs, labels, thresholds)
    assert at("jaccard", probs, labels, best_global) - 1e-12 <= found <= brute_force("jaccard", probs, labels) + 1e-12
    for c in range(4):
        for t in candidates(probs[:, c]):
            assert at("jaccard", probs, labels, np.where(np.arange(4) == c, t, thresholds)) <= found + 1e-12


@pytest.mark.parametrize("metric", ["micro_f1", "jaccard"])
def test_coordinate_ascent_is_never_worse_than_its_starts(metric):
    probs, labels = small_problem(3, n=60, classes=5, levels=8)
    starts = [np.full(5, 0.5), np.array([0.1, 0.9, 0.3, 2.0, 0.6])]
    thresholds, value = coordinate_ascent(metric, probs, labels, starts)
    assert value == pytest.approx(at(metric, probs, labels, thresholds), abs=1e-12)
    assert value >= max(at(metric, probs, labels, start) for start in starts)


@pytest.mark.parametrize("metric", ["micro_f1", "jaccard"])
@pytest.mark.parametrize("exhaustive_limit", [0, 10**6])
def test_rare_classes_keep_the_metric_global_threshold(metric, exhaustive_limit):
    probs, labels = small_problem(4, n=20, classes=3, levels=5)
    labels[:, 1] = 0
    labels[:3, 1] = 1  # three positives: below the guard of five
    best_global, thresholds = metric_thresholds(metric, probs, labels, min_positives=5,
                                                exhaustive_limit=exhaustive_limit)
    assert best_global == global_threshold_for(metric, probs, labels)[0]
    assert thresholds[1] == best_global
    found = at(metric, probs, labels, thresholds)
    best_with_guard = brute_force(metric, probs, labels, fixed={1: best_global})
    assert at(metric, probs, labels, best_global) - 1e-12 <= found <= best_with_guard + 1e-12
    if metric == "micro_f1" or exhaustive_limit:  # exact searches: the optimum over the other classes
        assert found == pytest.approx(best_with_guard, abs=1e-12)


def test_macro_f1_is_the_existing_search_and_choose_thresholds_defaults_to_it():
    probs, labels = random_predictions(5, n=200, classes=6)
    expected_global, expected = exact_thresholds(probs, labels)
    for found_global, found in (thresholds_for("macro_f1", probs, labels), choose_thresholds(probs, labels, "exact")):
        assert found_global == expected_global
        np.testing.assert_array_equal(found, expected)
    with pytest.raises(ValueError, match="unknown metric"):
        thresholds_for("accuracy", probs, labels)


def test_each_metric_is_best_at_its_own_thresholds_on_a_larger_problem():
    probs, labels = random_predictions(6, n=400, classes=8)
    tuned = {metric: choose_thresholds(probs, labels, "exact", metric=metric) for metric in METRICS}
    for metric in ("macro_f1", "micro_f1"):  # exact searches: nothing else does better on validation
        assert all(at(metric, probs, labels, tuned[metric][1]) >= at(metric, probs, labels, other[1]) - 1e-12
                   for other in tuned.values())
    report = multilabel_report(probs, labels, *tuned["jaccard"])
    assert report["jaccard_per_class"] >= report["jaccard_global"] - 1e-12
    assert report["jaccard_global"] == pytest.approx(global_threshold_for("jaccard", probs, labels)[1], abs=1e-12)
    for strategy in ("at_0.5", "global", "per_class"):
        assert {f"{metric}_{strategy}" for metric in METRICS} <= set(report)


def test_optuna_search_for_another_metric_stays_below_the_exact_optimum():
    probs, labels = random_predictions(2, n=200, classes=3)
    exact = at("micro_f1", probs, labels, thresholds_for("micro_f1", probs, labels)[1])
    found = optuna_thresholds(probs, labels, n_trials=40, seed=0, metric="micro_f1")
    assert exact - 0.1 <= at("micro_f1", probs, labels, found[1]) <= exact + 1e-12
