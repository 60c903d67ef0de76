"""Thresholds tuned for each metric (macro-F1, micro-F1, Jaccard), each scored by all three, with search time.

    python bench/threshold_metrics.py results/<experiment>     # the best trial per model's saved predictions
    python bench/threshold_metrics.py path/to/predictions.npz
    python bench/threshold_metrics.py --synthetic 886x11 --synthetic 5426x28  # no sweep at hand: random scores

For each set of validation probabilities, thresholds are tuned on validation for each metric (per-class, and the
metric's best global threshold), and the table shows validation macro-F1 / micro-F1 / Jaccard at them, the same
on test where test is labelled (for information only: test never influences a threshold), and how long each
search took. The best trial per model is the one analysis.best_trials picks.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analysis.trials import best_per_model, read_trials
from trainables.metrics import thresholds_for
from trainables.scores import METRICS, score
from trainables.thresholds import global_threshold_for

HEADER = ("| model | val rows x classes | tuned for | thresholds | seconds | val macro-F1 | val micro-F1 | val Jaccard "
          "| test macro-F1 | test micro-F1 | test Jaccard |")


def prediction_sets(path: Path) -> list[tuple[str, dict]]:
    """(name, arrays) of a predictions.npz, or of the best trial per model of an experiment dir."""
    if path.suffix == ".npz":
        files = [(path.parent.parent.name, path)]
    else:
        rows, _ = best_per_model(read_trials(path))
        files = [(row["model"], Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz") for row in rows]
    sets = []
    for name, npz_path in files:
        with np.load(npz_path) as npz:
            arrays = dict(npz)
        if arrays["val_labels"].ndim == 2:  # multi-label only: single-label runs have no thresholds
            sets.append((name, arrays))
    return sets


def shape(text: str) -> tuple[int, int]:
    try:
        rows, classes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROWSxCLASSES, e.g. 886x11") from None
    if rows < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: rows and classes must be positive")
    return rows, classes


def synthetic(rows: int, classes: int, seed: int = 0) -> tuple[str, dict]:
    """Random multi-label scores of `rows` x `classes` (label rates 1-35 %, informative but noisy logits), and
    as many again as a labelled test split."""
    rng = np.random.default_rng(seed)
    rates, signal = rng.uniform(0.01, 0.35, classes), rng.uniform(1.0, 4.0, classes)
    arrays = {}
    for split in ("val", "test"):
        labels = (rng.random((rows, classes)) < rates).astype(np.float32)
        logits = rng.normal(-2.0, 1.5, (rows, classes)) + labels * signal
        arrays.update({f"{split}_probs": (1.0 / (1.0 + np.exp(-logits))).astype(np.float32),
                       f"{split}_labels": labels})
    return f"synthetic (seed {seed})", arrays


def scores(arrays: dict, split: str, thresholds) -> list[str]:
    if f"{split}_labels" not in arrays:
        return ["-"] * len(METRICS)
    predictions = arrays[f"{split}_probs"] >= thresholds
    return [f"{score(metric, arrays[f'{split}_labels'], predictions):.4f}" for metric in METRICS]


def table(sets: list[tuple[str, dict]]) -> list[str]:
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for name, arrays in sets:
        val_probs, val_labels = arrays["val_probs"], arrays["val_labels"]
        for metric in METRICS:
            started = time.perf_counter()
            best_global, _ = global_threshold_for(metric, val_probs, val_labels)
            global_seconds = time.perf_counter() - started
            started = time.perf_counter()
            _, per_class = thresholds_for(metric, val_probs, val_labels)  # includes its own global search
            per_class_seconds = time.perf_counter() - started
            for kind, thresholds, seconds in (("per-class", per_class, per_class_seconds),
                                              ("global", best_global, global_seconds)):
                cells = [name, f"{val_probs.shape[0]} x {val_probs.shape[1]}", metric, kind, f"{seconds:.3f}",
                         *scores(arrays, "val", thresholds), *scores(arrays, "test", thresholds)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="*", help="results/<experiment> dirs or predictions.npz files")
    parser.add_argument("--synthetic", action="append", default=[], type=shape, metavar="ROWSxCLASSES",
                        help="random validation and test scores of this shape (repeatable), instead of or besides "
                             "saved ones")
    args = parser.parse_args()
    if not args.paths and not args.synthetic:
        parser.error("name an experiment dir, a predictions.npz or --synthetic ROWSxCLASSES")
    sets = [synthetic(rows, classes, seed) for seed, (rows, classes) in enumerate(args.synthetic)]
    for path in args.paths:
        sets.extend(prediction_sets(path))
    print("\n".join(table(sets)))


if __name__ == "__main__":
    main()
