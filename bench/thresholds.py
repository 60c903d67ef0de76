"""Exact threshold search vs an Optuna TPE study over the same thresholds, on real validation predictions.

    python bench/thresholds.py results/<experiment>        # the best trial per model's saved predictions
    python bench/thresholds.py path/to/predictions.npz [--optuna-trials 200]

Prints time and validation macro-F1 of each (global and per-class thresholds), and, for information only,
test macro-F1 at the thresholds each chose on validation.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analysis.trials import best_per_model, read_trials
from trainables.metrics import multilabel_report, optuna_thresholds
from trainables.thresholds import exact_thresholds


def prediction_files(path: Path) -> list[tuple[str, Path]]:
    if path.suffix == ".npz":
        return [(path.parent.parent.name, path)]
    rows, _ = best_per_model(read_trials(path))
    return [(row["model"], Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz") for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--optuna-trials", type=int, default=200)
    args = parser.parse_args()
    print("| model | val rows x classes | method | seconds | val macro-F1 (global) | val macro-F1 (per-class) "
          "| test macro-F1 (per-class) |")
    print("|---|---|---|---|---|---|---|")
    for model, npz_path in prediction_files(args.path):
        with np.load(npz_path) as npz:
            arrays = dict(npz)
        val_probs, val_labels = arrays["val_probs"], arrays["val_labels"]
        for method, search in (("exact", lambda: exact_thresholds(val_probs, val_labels)),
                               (f"optuna TPE x{args.optuna_trials}",
                                lambda: optuna_thresholds(val_probs, val_labels, n_trials=args.optuna_trials))):
            started = time.perf_counter()
            thresholds = search()
            seconds = time.perf_counter() - started
            val = multilabel_report(val_probs, val_labels, *thresholds)
            test = (multilabel_report(arrays["test_probs"], arrays["test_labels"], *thresholds)
                    ["macro_f1_per_class"] if "test_labels" in arrays else float("nan"))
            print(f"| {model} | {val_probs.shape[0]} x {val_probs.shape[1]} | {method} | {seconds:.2f} | "
                  f"{val['macro_f1_global']:.4f} | {val['macro_f1_per_class']:.4f} | {test:.4f} |")


if __name__ == "__main__":
    main()
