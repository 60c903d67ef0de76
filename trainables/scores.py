"""The three metrics a benchmark may be scored by (`METRICS`), computed by scikit-learn from 0/1 predictions:
macro-F1 (GoEmotions), micro-F1 and sample-averaged Jaccard (the SemEval-2018 E-c official metric). The threshold
searches (trainables/thresholds.py) and the reports (trainables/metrics.py) both score with them."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, jaccard_score

METRICS = ("macro_f1", "micro_f1", "jaccard")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (expected one of {', '.join(METRICS)})")



def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(f1_score(labels, predictions, average="macro", zero_division=0))



def score(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The benchmark's metric of 0/1 predictions (sklearn): macro-F1, micro-F1 or sample-averaged Jaccard
    (a row with empty gold and empty prediction counts 1, as in the SemEval-2018 E-c scorer)."""
    check_metric(metric)
    labels, predictions = np.asarray(labels).astype(int), np.asarray(predictions).astype(int)
    if metric == "macro_f1":
        return macro_f1(labels, predictions)
    if metric == "micro_f1":
        return float(f1_score(labels, predictions, average="micro", zero_division=0))
    return float(jaccard_score(labels, predictions, average="samples", zero_division=1))

