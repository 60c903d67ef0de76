"""The exact threshold search equals a brute-force optimum; the rare-class guard and the Optuna variant."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from trainables.metrics import (exact_thresholds, global_threshold, multilabel_report, optuna_thresholds,
                                per_class_thresholds)


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
