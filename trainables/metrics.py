"""The thresholds a trial tunes, and what it reports about its validation predictions.

`thresholds_for(metric, ...)` tunes (global threshold, per-class thresholds) for the metric a benchmark is scored by:
"exact" runs the exact searches of trainables/thresholds.py (their derivation is there), "optuna" TPE studies scored
by the same metric, for comparison. `validation_scores` reports every metric at the tuned thresholds, at 0.5 and at
the best global threshold, or argmax scores for single-label data."""
from __future__ import annotations

import numpy as np
import optuna
from sklearn.metrics import accuracy_score, f1_score, jaccard_score

from trainables.scores import check_metric, macro_f1, score
from trainables.thresholds import MIN_POSITIVES, metric_thresholds, per_class_thresholds


def optuna_thresholds(probs: np.ndarray, labels: np.ndarray, n_trials: int = 200, seed: int = 0,
                      min_positives: int = MIN_POSITIVES, metric: str = "macro_f1") -> tuple[float, np.ndarray]:
    """The same thresholds found by two TPE studies scored by `metric` (one global threshold; one per-class
    vector, started from the global one)."""
    check_metric(metric)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    num_classes = probs.shape[1]

    def global_objective(trial: optuna.Trial) -> float:
        return score(metric, labels, probs >= trial.suggest_float("threshold", 0.0, 1.0))

    global_study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    global_study.optimize(global_objective, n_trials=n_trials)
    best_global = global_study.best_params["threshold"]

    def per_class_objective(trial: optuna.Trial) -> float:
        thresholds = np.array([trial.suggest_float(f"t{c}", 0.0, 1.0) for c in range(num_classes)])
        return score(metric, labels, probs >= thresholds)

    per_class_study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    per_class_study.enqueue_trial({f"t{c}": best_global for c in range(num_classes)})
    per_class_study.optimize(per_class_objective, n_trials=n_trials)
    per_class = np.array([per_class_study.best_params[f"t{c}"] for c in range(num_classes)])
    rare = labels.sum(axis=0) < min_positives
    return best_global, np.where(rare, best_global, per_class)


def thresholds_for(metric: str, probs: np.ndarray, labels: np.ndarray, method: str = "exact", seed: int = 0,
                   min_positives: int = MIN_POSITIVES) -> tuple[float, np.ndarray]:
    """(global threshold, per-class thresholds) tuned for `metric`: "exact" is `metric_thresholds` (exact for
    macro- and micro-F1, coordinate ascent for Jaccard), "optuna" the TPE studies scored by the same metric."""
    check_metric(metric)
    if method == "exact":
        return metric_thresholds(metric, probs, labels, min_positives)
    if method == "optuna":
        return optuna_thresholds(probs, labels, seed=seed, min_positives=min_positives, metric=metric)
    raise ValueError(f"unknown threshold method {method!r}")


def per_class_thresholds_for(metric: str, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`thresholds_for(metric, probs, labels)[1]` (exact), without the global search where it cannot change them:
    for macro-F1 with no class under MIN_POSITIVES positives they are the per-class optima alone (about 10x cheaper
    on GoEmotions' validation shape, for analysis.trial_ensemble, which tunes thresholds for many candidates)."""
    if metric == "macro_f1" and (np.asarray(labels).sum(axis=0) >= MIN_POSITIVES).all():
        return per_class_thresholds(probs, labels)[0]
    return thresholds_for(metric, probs, labels)[1]


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


def choose_thresholds(probs: np.ndarray, labels: np.ndarray, method: str, seed: int = 0,
                      metric: str = "macro_f1") -> tuple[float, np.ndarray]:
    """The trainables' entry point: `thresholds_for(metric, ...)`; macro-F1 by default, as before."""
    return thresholds_for(metric, probs, labels, method, seed)


def singlelabel_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predictions = probs.argmax(axis=1)
    return {
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
    }



def validation_scores(probs: np.ndarray, labels: np.ndarray, multi_label: bool, metric: str, method: str,
                      seed: int = 0) -> tuple[dict[str, float | str], dict[str, np.ndarray]]:
    """What a trial reports about an epoch's validation predictions, and the thresholds it saves with them.

    Multi-label: thresholds tuned for `metric` on these rows, then macro-F1, micro-F1 and Jaccard all at those
    thresholds (`val_macro_f1`, `val_micro_f1`, `val_jaccard`; the `_at_0.5` / `_global` / `_per_class` keys
    beside them), so every metric is reported at the thresholds the selection used. Single-label: argmax, where
    micro-F1 is accuracy. `val_score` is the selected metric's value: what ASHA, Optuna and the choice of the
    best epoch and trial read."""
    if not multi_label:
        report = singlelabel_report(probs, labels)
        scores = {f"val_{key}": value for key, value in report.items()}
        scores["val_micro_f1"] = report["accuracy"]
        if metric not in ("macro_f1", "micro_f1"):
            raise ValueError(f"metric {metric!r} does not apply to single-label predictions")
        return {**scores, "val_score": scores[f"val_{metric}"]}, {}
    global_t, per_class_t = choose_thresholds(probs, labels, method, seed, metric=metric)
    report = multilabel_report(probs, labels, global_t, per_class_t)
    strategies = {"0.5": report[f"{metric}_at_0.5"], "global": report[f"{metric}_global"],
                  "per_class": report[f"{metric}_per_class"]}
    scores = {**{f"val_{key}": value for key, value in report.items()},
              "val_macro_f1": report["macro_f1_per_class"], "val_micro_f1": report["micro_f1_per_class"],
              "val_jaccard": report["jaccard_per_class"], "threshold_strategy": max(strategies, key=strategies.get),
              "global_threshold": global_t}
    scores["val_score"] = scores[f"val_{metric}"]
    return scores, {"global_threshold": np.float32(global_t), "per_class_thresholds": per_class_t}
