"""Metrics and decision-threshold search on validation predictions.

Multi-label macro-F1 is an average of per-class F1 scores, and each class's F1 depends only on that class's
threshold, so maximising every class separately maximises macro-F1. For one class, sorting the scores turns
"every possible threshold" into "every cut of the sorted list": cumulative sums give TP and predicted
positives at all cuts at once, so the exact optimum costs one sort per class (vectorised over classes).

Guard for rare classes: a class with fewer than `min_positives` validation positives gets the best global
threshold instead of its own optimum, because a cut fitted to two or three examples overfits validation and
transfers badly to test. The Optuna variant searches the same thresholds with a TPE study, for comparison.
"""
from __future__ import annotations

import numpy as np
import optuna
from sklearn.metrics import accuracy_score, f1_score, jaccard_score

MIN_POSITIVES = 5


def _f1(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = predicted + positives
    return np.divide(2.0 * tp, denominator, out=np.zeros(np.broadcast(tp, denominator).shape),
                     where=denominator > 0)


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact F1-optimal threshold of every class (predict positive when prob >= threshold).

    Returns (thresholds, best F1 per class). Thresholds sit halfway between the last score kept and the
    first score dropped, so they generalise instead of hugging one validation example.
    """
    n, _ = probs.shape
    order = np.argsort(-probs, axis=0, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=0)
    tp = np.cumsum(np.take_along_axis(labels, order, axis=0), axis=0)  # (N, C): keep the top k+1
    positives = labels.sum(axis=0)
    predicted = np.arange(1, n + 1)[:, None]
    f1 = _f1(tp, predicted, positives[None, :])
    # A cut is only realisable where the next score is strictly lower (ties move together).
    realisable = np.ones_like(f1, dtype=bool)
    realisable[:-1] = sorted_probs[:-1] > sorted_probs[1:]
    f1 = np.where(realisable, f1, -1.0)
    best_cut = f1.argmax(axis=0)
    columns = np.arange(f1.shape[1])
    best_f1 = f1[best_cut, columns]
    kept = sorted_probs[best_cut, columns]
    dropped = sorted_probs[np.minimum(best_cut + 1, n - 1), columns]
    thresholds = np.where(best_cut + 1 < n, (kept + dropped) / 2.0, kept)
    # Predicting nothing is the optimum when no cut scores above 0 (e.g. a class without positives).
    nothing = best_f1 <= 0
    thresholds = np.where(nothing, 1.0 + 1e-6, thresholds)
    return thresholds, np.maximum(best_f1, 0.0)


def global_threshold(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Exact macro-F1-optimal single threshold shared by all classes: (threshold, macro-F1)."""
    candidates = np.unique(probs)[::-1]  # predict prob >= candidate; descending
    per_class_f1 = np.zeros((len(candidates), probs.shape[1]))
    for c in range(probs.shape[1]):
        scores = np.sort(probs[:, c])
        positive_scores = np.sort(probs[labels[:, c] > 0, c])
        predicted = len(scores) - np.searchsorted(scores, candidates, side="left")
        tp = len(positive_scores) - np.searchsorted(positive_scores, candidates, side="left")
        per_class_f1[:, c] = _f1(tp, predicted, len(positive_scores))
    macro = per_class_f1.mean(axis=1)
    best = int(macro.argmax())
    if best + 1 < len(candidates):
        threshold = float((candidates[best] + candidates[best + 1]) / 2.0)
    else:
        threshold = float(candidates[best])
    return threshold, float(macro[best])


def exact_thresholds(probs: np.ndarray, labels: np.ndarray, min_positives: int = MIN_POSITIVES
                     ) -> tuple[float, np.ndarray]:
    """(global threshold, per-class thresholds), rare classes falling back to the global one."""
    best_global, _ = global_threshold(probs, labels)
    per_class, _ = per_class_thresholds(probs, labels)
    rare = labels.sum(axis=0) < min_positives
    return best_global, np.where(rare, best_global, per_class)


def optuna_thresholds(probs: np.ndarray, labels: np.ndarray, n_trials: int = 200, seed: int = 0,
                      min_positives: int = MIN_POSITIVES) -> tuple[float, np.ndarray]:
    """The same thresholds found by two TPE studies (one global threshold; one per-class vector)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    num_classes = probs.shape[1]

    def global_objective(trial: optuna.Trial) -> float:
        return macro_f1(labels, probs >= trial.suggest_float("threshold", 0.0, 1.0))

    global_study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    global_study.optimize(global_objective, n_trials=n_trials)
    best_global = global_study.best_params["threshold"]

    def per_class_objective(trial: optuna.Trial) -> float:
        thresholds = np.array([trial.suggest_float(f"t{c}", 0.0, 1.0) for c in range(num_classes)])
        return macro_f1(labels, probs >= thresholds)

    per_class_study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    per_class_study.enqueue_trial({f"t{c}": best_global for c in range(num_classes)})
    per_class_study.optimize(per_class_objective, n_trials=n_trials)
    per_class = np.array([per_class_study.best_params[f"t{c}"] for c in range(num_classes)])
    rare = labels.sum(axis=0) < min_positives
    return best_global, np.where(rare, best_global, per_class)


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(f1_score(labels, predictions, average="macro", zero_division=0))


def multilabel_report(probs: np.ndarray, labels: np.ndarray, global_t: float, per_class_t: np.ndarray
                      ) -> dict[str, float]:
    """Macro/micro-F1 and Jaccard at 0.5, at the global threshold and at the per-class thresholds."""
    report = {}
    for strategy, thresholds in (("at_0.5", 0.5), ("global", global_t), ("per_class", per_class_t)):
        predictions = (probs >= thresholds).astype(int)
        report[f"macro_f1_{strategy}"] = macro_f1(labels, predictions)
        report[f"micro_f1_{strategy}"] = float(f1_score(labels, predictions, average="micro", zero_division=0))
        report[f"jaccard_{strategy}"] = float(jaccard_score(labels, predictions, average="samples",
                                                            zero_division=1))
    return report


def choose_thresholds(probs: np.ndarray, labels: np.ndarray, method: str, seed: int = 0
                      ) -> tuple[float, np.ndarray]:
    if method == "exact":
        return exact_thresholds(probs, labels)
    if method == "optuna":
        return optuna_thresholds(probs, labels, seed=seed)
    raise ValueError(f"unknown threshold method {method!r}")


def singlelabel_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predictions = probs.argmax(axis=1)
    return {
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
    }
