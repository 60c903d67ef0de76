"""Decision-threshold search on validation predictions, for the metric a benchmark is scored by.

Three metrics a benchmark may be scored by (`METRICS`, scored by sklearn in trainables.scores): macro-F1 (GoEmotions),
micro-F1 and sample-averaged Jaccard (the SemEval-2018 E-c official metric: |pred & gold| / |pred | gold| per
row, averaged, a row with empty gold and empty prediction counting 1). Predict positive when prob >= threshold.
`metric_thresholds(metric, ...)` tunes (global threshold, per-class thresholds) for one of them
(trainables.metrics.thresholds_for calls it, or the Optuna variant):

macro-F1 is an average of per-class F1 scores, and each class's F1 depends only on that class's threshold, so
maximising every class separately maximises macro-F1. For one class, sorting the scores turns "every possible
threshold" into "every cut of the sorted list": cumulative sums give TP and predicted positives at all cuts at
once, so the exact optimum costs one sort per class (vectorised over classes): O(N C log N).

micro-F1 = 2 TP / (predicted + positives) is not separable by class, but it is a ratio of two separable sums, so
it is solved exactly by Dinkelbach's parametric method: F* is the optimum iff max over thresholds of
2 TP - F* (predicted + positives) is 0, and for a fixed F that maximum IS separable (one argmax per class over its
cuts). Iterate F <- micro-F1 of the per-class argmax; F rises strictly until it stops, at the optimum (finitely
many cuts). Cost: one sort per class, then O(N C) per iteration; a few iterations (typically 3-6).

Jaccard is a mean of per-row ratios: neither separable nor a single ratio. It is searched exhaustively where the
product of the classes' cut counts is at most `EXHAUSTIVE_LIMIT` (tiny problems only), otherwise by coordinate
ascent: each step is an exact 1-D search of one class's threshold with the other classes' predictions fixed
(row intersection and union without that class are fixed, so every cut of that class is scored at once by a
cumulative sum over its sorted scores: O(N) after one sort per class), accepted only if it improves the metric.
Sweeps over the classes repeat until none improves (at most `MAX_ROUNDS`). Two runs, kept the better: from the
macro-F1 per-class optimum and from the best global threshold for the metric. Cost: O(N C log N) to sort, then
O(N C) per sweep per start (C exact 1-D steps of O(N) each, i.e. every cut of every class scored once per sweep).
On synthetic sigmoid scores of SemEval's 3259 x 11 and GoEmotions' 5426 x 28 validation shapes both runs
stopped after 3-4 sweeps; the whole Jaccard search took 0.02 s and 0.09 s on one CPU core, micro-F1 0.01 s and
0.04 s, macro-F1 0.02 s and 0.2 s (bench/threshold_metrics.py prints it for saved predictions). Guarantees:
never worse than the metric's best global threshold (one run starts there and only accepts improvements) and
coordinate-wise optimal (no single class's threshold change improves it); not necessarily the global optimum
(on 120 small random problems checked against brute force it missed it once).

`best_class_threshold` is that exact 1-D step for any metric; `global_threshold_for` the exact best single shared
threshold for any metric (one sort of all N C scores; for Jaccard each score's effect on its row's ratio is
precomputed row by row, so every shared cut is one cumulative sum).

Guard for rare classes: a class with fewer than `min_positives` validation positives gets the best global
threshold (for the metric) instead of its own, because a cut fitted to two or three examples overfits validation
and transfers badly to test; the searches above leave such classes fixed there. The Optuna variant
(trainables.metrics) searches the same thresholds with TPE studies scored by the same metric, for comparison.

Threshold conventions (all searches): a cut sits halfway between the last score kept and the first score
dropped, so it generalises instead of hugging one validation example; predicting nothing for a class is the cut
above its highest score (1 + 1e-6 for probabilities); among equally good cuts the highest threshold wins (the
fewest positive predictions), and a coordinate step replaces a class's threshold only on a strict improvement.
"""
from __future__ import annotations

import itertools

import numpy as np

from trainables.scores import check_metric

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


EXHAUSTIVE_LIMIT = 4096  # Jaccard: enumerate every combination of per-class cuts up to this many
MAX_ROUNDS = 50  # coordinate ascent: sweeps over the classes at most (each accepted step strictly improves)
TOLERANCE = 1e-12  # an improvement smaller than this is float noise, not a better threshold


def _nothing(top: float) -> float:
    """A threshold above every score: predict nothing (1 + 1e-6 for probabilities, as per_class_thresholds)."""
    return 1.0 + 1e-6 if top < 1.0 + 1e-6 else float(np.nextafter(top, np.inf))


def _cut_thresholds(values: np.ndarray) -> np.ndarray:
    """Thresholds of the cuts of descending distinct `values`: [nothing, halfway below values[0], ...,
    values[-1]]. Halfway falls back to the kept value where the two are adjacent floats."""
    below = values[1:]
    middle = (values[:-1] + below) / 2.0
    middle = np.where(middle > below, middle, values[:-1])
    return np.concatenate([[_nothing(values[0])], middle, values[-1:]])


def _sorted_cuts(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(descending order of `scores`, how many scores each cut keeps (0 = nothing, then one cut per distinct
    value), the cuts' thresholds)."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    last = np.flatnonzero(np.append(ordered[:-1] > ordered[1:], True))  # last index of each distinct value
    return order, np.concatenate([[0], last + 1]), _cut_thresholds(ordered[last])


class _ClassCuts:
    """Every cut of one class: which rows it keeps (a prefix of `order`), its threshold, TP and predicted."""

    def __init__(self, scores: np.ndarray, gold: np.ndarray):
        self.order, self.kept, self.thresholds = _sorted_cuts(scores)
        self.gold_sorted = gold[self.order]
        self.tp = np.concatenate([[0], np.cumsum(self.gold_sorted)])[self.kept]
        self.positives = int(gold.sum())


class _Predictions:
    """0/1 predictions at the current thresholds with the counts every metric needs, updated one class at a
    time, so one class's cuts are all scored in O(N) with the other classes fixed."""

    def __init__(self, metric: str, probs: np.ndarray, gold: np.ndarray, cuts: list[_ClassCuts],
                 thresholds: np.ndarray):
        self.metric, self.probs, self.gold, self.cuts = metric, probs, gold, cuts
        self.thresholds = np.array(thresholds, dtype=float)
        self.predicted = probs >= self.thresholds
        hits = self.predicted & gold
        self.tp, self.count = hits.sum(axis=0), self.predicted.sum(axis=0)  # per class
        self.inter, self.union = hits.sum(axis=1), (self.predicted | gold).sum(axis=1)  # per row

    def value(self) -> float:
        return _fast_score(self.metric, self.gold, self.predicted)

    def cut_values(self, c: int) -> np.ndarray:
        """The metric at every cut of class c (see _ClassCuts), the other classes as they are."""
        cuts = self.cuts[c]
        if self.metric == "macro_f1":
            f1 = _f1(self.tp, self.count, self.gold.sum(axis=0))
            return (f1.sum() - f1[c] + _f1(cuts.tp, cuts.kept, cuts.positives)) / len(self.tp)
        if self.metric == "micro_f1":
            tp = self.tp.sum() - self.tp[c] + cuts.tp
            denominator = self.count.sum() - self.count[c] + cuts.kept + self.gold.sum()
            return np.divide(2.0 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
        gold_c, predicted_c = self.gold[:, c], self.predicted[:, c]
        inter = self.inter - (predicted_c & gold_c)  # rows without class c
        union = self.union - (predicted_c | gold_c)
        absent_union = union + gold_c
        absent = np.divide(inter, absent_union, out=np.ones(len(inter)), where=absent_union > 0)
        present = (inter + gold_c) / (union + 1)
        gain = np.concatenate([[0.0], np.cumsum((present - absent)[cuts.order])])
        return (absent.sum() + gain[cuts.kept]) / len(inter)

    def set(self, c: int, threshold: float) -> None:
        gold_c = self.gold[:, c]
        old = self.predicted[:, c]
        new = self.probs[:, c] >= threshold
        self.inter += (new & gold_c).astype(int) - (old & gold_c)
        self.union += (new | gold_c).astype(int) - (old | gold_c)
        self.tp[c], self.count[c] = int((new & gold_c).sum()), int(new.sum())
        self.predicted[:, c], self.thresholds[c] = new, threshold


def _fast_score(metric: str, gold: np.ndarray, predicted: np.ndarray) -> float:
    """`score` in numpy (same definitions, no sklearn input checks): for the inner loops of the searches."""
    hits = predicted & gold
    if metric == "macro_f1":
        return float(_f1(hits.sum(axis=0), predicted.sum(axis=0), gold.sum(axis=0)).mean())
    if metric == "micro_f1":
        return float(_f1(hits.sum(), predicted.sum(), gold.sum()))
    union = (predicted | gold).sum(axis=1)
    return float(np.divide(hits.sum(axis=1), union, out=np.ones(len(union)), where=union > 0).mean())


def _prepare(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[_ClassCuts]]:
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(labels) > 0
    return probs, gold, [_ClassCuts(probs[:, c], gold[:, c]) for c in range(probs.shape[1])]


def best_class_threshold(metric: str, probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, c: int
                         ) -> tuple[float, float]:
    """The exact 1-D step: class c's best threshold with every other class at `thresholds` (threshold, metric).

    The metric only changes where class c's threshold crosses one of its scores, so its distinct scores (and
    "nothing") are every candidate; all are scored at once in O(N) after one sort. Ties: the highest threshold.
    """
    check_metric(metric)
    probs, gold, cuts = _prepare(probs, labels)
    values = _Predictions(metric, probs, gold, cuts, thresholds).cut_values(c)
    best = int(values.argmax())
    return float(cuts[c].thresholds[best]), float(values[best])


def global_threshold_for(metric: str, probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Exact best single threshold shared by all classes for `metric`: (threshold, metric there).

    Every distinct score is a candidate (and "nothing"); all are scored in one pass over the N C scores sorted
    once. macro-F1 is `global_threshold`. Jaccard: each score's effect on its own row's ratio, were it predicted
    after that row's higher scores, is precomputed row by row; a shared threshold predicts exactly the scores
    above it, so the metric at every candidate is one cumulative sum of those effects.
    """
    check_metric(metric)
    if metric == "macro_f1":
        return global_threshold(probs, labels)
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(labels) > 0
    if metric == "micro_f1":
        order, kept, thresholds = _sorted_cuts(probs.ravel())
        tp = np.concatenate([[0], np.cumsum(gold.ravel()[order])])[kept]
        values = _f1(tp, kept, gold.sum())
    else:
        row_order = np.argsort(-probs, axis=1, kind="stable")
        gold_sorted = np.take_along_axis(gold, row_order, axis=1)
        inter = np.cumsum(gold_sorted, axis=1)
        union = gold.sum(axis=1, keepdims=True) + np.cumsum(~gold_sorted, axis=1)  # > 0: something predicted
        empty = (gold.sum(axis=1, keepdims=True) == 0).astype(float)  # a row predicting nothing scores 1 or 0
        ratio = np.concatenate([empty, inter / union], axis=1)
        effect = np.diff(ratio, axis=1)  # effect[r, j]: predicting row r's (j+1)-th highest score
        scores = np.take_along_axis(probs, row_order, axis=1).ravel()
        order, kept, thresholds = _sorted_cuts(scores)
        gain = np.concatenate([[0.0], np.cumsum(effect.ravel()[order])])
        values = (empty.sum() + gain[kept]) / len(probs)
    best = int(values.argmax())
    return float(thresholds[best]), float(values[best])


def _ascend(state: _Predictions, free: np.ndarray, max_rounds: int) -> tuple[np.ndarray, float, int]:
    """Coordinate ascent from `state`: exact 1-D steps over the free classes until a sweep improves nothing."""
    current = state.value()
    for sweep in range(1, max_rounds + 1):
        improved = False
        for c in free:
            values = state.cut_values(c)
            best = int(values.argmax())
            if values[best] > current + TOLERANCE:
                state.set(c, float(state.cuts[c].thresholds[best]))
                current, improved = float(values[best]), True
        if not improved:
            return state.thresholds, current, sweep
    return state.thresholds, current, max_rounds


def coordinate_ascent(metric: str, probs: np.ndarray, labels: np.ndarray, starts: list[np.ndarray],
                      free: np.ndarray | None = None, max_rounds: int = MAX_ROUNDS) -> tuple[np.ndarray, float]:
    """Per-class thresholds by coordinate ascent from each of `starts` (per-class threshold vectors), the best
    run kept (the earlier start on a tie): (thresholds, metric). Only the classes in `free` (default all) move.

    Never worse than any start (a step is taken only on a strict improvement); the result is coordinate-wise
    optimal (no single free class's threshold change improves it) unless `max_rounds` sweeps ran out.
    """
    check_metric(metric)
    probs, gold, cuts = _prepare(probs, labels)
    free = np.arange(probs.shape[1]) if free is None else np.asarray(free, dtype=int)
    best = None
    for start in starts:
        thresholds, value, _ = _ascend(_Predictions(metric, probs, gold, cuts, start), free, max_rounds)
        if best is None or value > best[1] + TOLERANCE:
            best = (thresholds.copy(), value)
    return best


def _micro_f1_exact(probs: np.ndarray, gold: np.ndarray, cuts: list[_ClassCuts], start: np.ndarray,
                    free: np.ndarray) -> np.ndarray:
    """Exact micro-F1 optimum over the free classes' thresholds (the rest fixed at `start`), by Dinkelbach."""
    thresholds = np.array(start, dtype=float)
    state = _Predictions("micro_f1", probs, gold, cuts, thresholds)
    fixed = np.setdiff1d(np.arange(probs.shape[1]), free)
    fixed_tp, fixed_count, positives = state.tp[fixed].sum(), state.count[fixed].sum(), gold.sum()
    best = state.value()
    if positives == 0:
        return thresholds
    for _ in range(100):  # terminates after a handful; the bound only guards against float surprises
        choice = {c: int((2.0 * cuts[c].tp - best * cuts[c].kept).argmax()) for c in free}
        tp = fixed_tp + sum(cuts[c].tp[j] for c, j in choice.items())
        count = fixed_count + sum(cuts[c].kept[j] for c, j in choice.items())
        value = 2.0 * tp / (count + positives)
        if value <= best + TOLERANCE:
            break
        best = value
        for c, j in choice.items():
            thresholds[c] = cuts[c].thresholds[j]
    return thresholds


def _exhaustive(metric: str, probs: np.ndarray, gold: np.ndarray, cuts: list[_ClassCuts], start: np.ndarray,
                free: np.ndarray) -> np.ndarray:
    """Every combination of the free classes' cuts (the rest fixed at `start`); the first best wins."""
    best_value, best = -1.0, np.array(start, dtype=float)
    for combination in itertools.product(*(cuts[c].thresholds for c in free)):
        thresholds = np.array(start, dtype=float)
        thresholds[free] = combination
        value = _fast_score(metric, gold, probs >= thresholds)
        if value > best_value + TOLERANCE:
            best_value, best = value, thresholds
    return best


def metric_thresholds(metric: str, probs: np.ndarray, labels: np.ndarray, min_positives: int = MIN_POSITIVES,
                      exhaustive_limit: int = EXHAUSTIVE_LIMIT, max_rounds: int = MAX_ROUNDS
                      ) -> tuple[float, np.ndarray]:
    """(global threshold, per-class thresholds) best for `metric` on these predictions; see the module docstring.

    macro-F1: `exact_thresholds`. micro-F1: exact (Dinkelbach). Jaccard: exhaustive if the free classes have at
    most `exhaustive_limit` cut combinations, else coordinate ascent from the macro-F1 optimum and from the best
    global threshold. Classes with fewer than `min_positives` positives stay at the global threshold.
    """
    check_metric(metric)
    if metric == "macro_f1":
        return exact_thresholds(probs, labels, min_positives)
    best_global, _ = global_threshold_for(metric, probs, labels)
    probs, gold, cuts = _prepare(probs, labels)
    free = np.flatnonzero(gold.sum(axis=0) >= min_positives)
    at_global = np.full(probs.shape[1], best_global)
    if metric == "micro_f1":
        return best_global, _micro_f1_exact(probs, gold, cuts, at_global, free)
    if np.prod([float(len(cuts[c].thresholds)) for c in free]) <= exhaustive_limit:
        return best_global, _exhaustive(metric, probs, gold, cuts, at_global, free)
    macro_optimum, _ = per_class_thresholds(probs, gold.astype(int))
    macro_start = at_global.copy()
    macro_start[free] = macro_optimum[free]
    thresholds, _ = coordinate_ascent(metric, probs, gold, [macro_start, at_global], free, max_rounds)
    return best_global, thresholds
