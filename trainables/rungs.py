"""Rungs shorter than an epoch: where inside an epoch a trial reports, and on which validation rows.

ASHA can stop a poor trial only where it reports. With one report per epoch, a configuration that learns nothing
costs a whole epoch (about 2.5 minutes of a 30-minute CPU sweep) before it can be stopped. With
`rungs_per_epoch` R > 1 an encoder trial also reports after each R-th of an epoch's batches, scored on a fixed
validation subset (the same rows for every trial, so a rung compares like with like), small enough that scoring
it costs a small part of the rung's training. The epoch's end is scored on the whole validation split as before:
only those scores pick thresholds, checkpoints, the best epoch and the best trial.
"""
from __future__ import annotations

import numpy as np

RUNG_METRIC = "rung_score"  # in every report: the subset's score inside an epoch, val_score at its end
RUNG_SUBSET_MIN_ROWS = 500  # fewer rows make macro-F1 over rare labels too noisy to rank trials by
# Scoring a row costs about a third of training on it (forward only, larger batches), so a subset of a quarter
# of the rung's training rows costs under a tenth of the rung.
RUNG_SUBSET_SHARE = 0.25


def rung_ends(batches: int, rungs_per_epoch: int) -> list[int]:
    """After how many of an epoch's batches each rung inside the epoch ends, evenly spaced (the last rung is the
    epoch's end, which reports on its own). Every epoch reports exactly `rungs_per_epoch` times, which is what the
    searcher and ASHA count epochs by, so an epoch needs at least that many batches (the plan checks)."""
    if batches < rungs_per_epoch:
        raise ValueError(f"rungs_per_epoch {rungs_per_epoch}: an epoch has only {batches} batches")
    return [round(batches * k / rungs_per_epoch) for k in range(1, rungs_per_epoch)]


def rung_subset_rows(validation_rows: int, train_rows: int, rungs_per_epoch: int) -> int:
    """How many validation rows a rung inside an epoch is scored on: a share of the rung's training rows, at least
    RUNG_SUBSET_MIN_ROWS, at most the whole split."""
    share = int(RUNG_SUBSET_SHARE * train_rows / rungs_per_epoch)
    return min(validation_rows, max(RUNG_SUBSET_MIN_ROWS, share))


def rung_subset(labels: np.ndarray, size: int) -> np.ndarray:
    """`size` validation rows, sorted, stratified by each row's rarest label (single-label: its label; multi-label:
    the rarest label it has, or none), so rare emotions are in the subset in their share of the split. The same
    rows for the same labels and size: every trial of a sweep is scored on them."""
    if size >= len(labels):
        return np.arange(len(labels))
    if labels.ndim == 1:
        strata = labels
    else:
        frequency = labels.sum(axis=0)
        rarity = np.where(labels > 0, frequency[None, :], np.inf)
        strata = np.where(labels.any(axis=1), rarity.argmin(axis=1), -1)
    rng = np.random.default_rng(0)
    groups = [rng.permutation(np.flatnonzero(strata == stratum)) for stratum in np.unique(strata)]
    quotas = np.array([len(group) for group in groups]) * size / len(labels)
    taken = np.floor(quotas).astype(int)
    for index in np.argsort(taken - quotas)[: size - taken.sum()]:  # largest remainders get the rows left
        taken[index] += 1
    return np.sort(np.concatenate([group[:count] for group, count in zip(groups, taken)]))
