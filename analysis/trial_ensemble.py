"""An ensemble from the trials already trained: greedy ensemble selection with replacement (Caruana et al., 2004, as
auto-sklearn and AutoGluon build theirs) over every finished trial's saved validation probabilities, all models of the
sweep together.

The library is every trial with a best checkpoint whose predictions share the best trial's label names, validation
labels and shape (the same rows and classes, so averaging them means something; a sweep's trials all share its test
rows too) and whose validation probabilities are finite, in trial order. Each round adds the trial whose addition
makes the best ensemble, scored as a trial's own `val_score` is: the sweep's selected metric (`score`) on the
averaged validation probabilities, at thresholds chosen again on those rows by the exact search (trainables.metrics,
as a seed ensemble's; multi-label) or at the argmax (single-label). A trial may be added again (with replacement:
its weight grows), ties go to the earlier trial, and selection stops after `ROUNDS` additions or as soon as no
addition improves the score, so the result is deterministic. The weights are the selection counts. Only validation
is read while choosing (the members are chosen before any test split is predicted: analysis.trials.reported_runs);
test is averaged once, with the final weights, for the report (`TrialEnsemble.arrays`).

Cost: one threshold search and score per library trial per round (stopping early makes it fewer): milliseconds on
the tiny test sweeps; on GoEmotions' validation shape (5,426 x 28) about 0.03 s per candidate for macro-F1 (no class
is rare there, so no global search: trainables.metrics.per_class_thresholds_for), 7 s for 20 trials that stopped
after 9 picks (2 shared CPU cores); micro-F1 and Jaccard searches cost 0.05-0.1 s each.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from analysis.decision import decide, selected_metric
from analysis.seeds import SeedRun, ensemble
from trainables.metrics import per_class_thresholds_for
from trainables.scores import score
from trainables.thresholds import TOLERANCE

ROUNDS = 25


@dataclass
class TrialEnsemble:
    members: list[SeedRun]  # the trials picked, most picked first (then in trial order)
    weights: list[int]  # how many times each was picked
    metric: str  # the selected metric its thresholds are chosen for
    library: int  # how many trials it chose from

    @cached_property
    def arrays(self) -> dict:
        """The weighted average in predictions.npz layout, thresholds chosen on validation; the members' test
        predictions averaged too, so every member must hold them."""
        return ensemble(self.members, self.metric, "exact", self.weights)


def tuned_score(probs: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """The validation `metric` of `probs` at thresholds chosen for it on these rows (multi-label) or at the argmax."""
    thresholds = per_class_thresholds_for(metric, probs, labels) if labels.ndim == 2 else None
    return score(metric, labels, decide(probs, thresholds))


def select(val_probs: np.ndarray, val_labels: np.ndarray, metric: str, rounds: int = ROUNDS) -> np.ndarray:
    """How many times each of the library's K trials (`val_probs`: (K, N, C)) is picked by greedy forward selection
    with replacement (see the module docstring); every candidate ensemble is a float32 average, as the saved one."""
    counts = np.zeros(len(val_probs), dtype=np.int64)
    total = np.zeros(val_probs.shape[1:])
    best = -np.inf
    for picked in range(1, rounds + 1):
        scores = [tuned_score(((total + probs) / picked).astype(np.float32), val_labels, metric)
                  for probs in val_probs]
        choice = int(np.argmax(scores))  # the first of equals: the earlier trial
        if scores[choice] <= best + TOLERANCE:
            break
        counts[choice] += 1
        total += val_probs[choice]
        best = scores[choice]
    return counts


def same_rows(run: SeedRun, reference: SeedRun) -> bool:
    """Whether `run` predicted the reference's rows and classes: its probabilities can be averaged with them."""
    mine, theirs = run.arrays, reference.arrays
    return (mine.get("label_names", np.array([])).tolist() == theirs.get("label_names", np.array([])).tolist()
            and ("per_class_thresholds" in mine) == ("per_class_thresholds" in theirs)
            and np.array_equal(mine["val_labels"], theirs["val_labels"])
            and mine["val_probs"].shape == theirs["val_probs"].shape
            and bool(np.isfinite(mine["val_probs"]).all()))


def trial_ensemble(runs: list[SeedRun], rounds: int = ROUNDS) -> TrialEnsemble | None:
    """The greedy ensemble of `runs` (every trial's best checkpoint, in trial order), or None when fewer than two
    trials can be averaged with the best one."""
    if not runs:
        return None
    reference = max(runs, key=lambda run: run.row["val_score"])  # the first of equals
    library = [run for run in runs if same_rows(run, reference)]
    if len(library) < 2:
        return None
    metric = selected_metric(reference.arrays)
    counts = select(np.stack([run.arrays["val_probs"] for run in library]), reference.arrays["val_labels"], metric,
                    rounds)
    order = sorted(np.flatnonzero(counts), key=lambda k: -counts[k])  # stable: trial order among equals
    members, weights = [library[k] for k in order], [int(counts[k]) for k in order]
    return TrialEnsemble(members, weights, metric, len(library))
