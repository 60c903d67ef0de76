"""Winners confirmed over seeds: each model's best configuration re-trained with further seeds (`--confirm-seeds`,
trials whose config names the trial they confirm in `confirm_of`), summarised as mean ± standard deviation, a seed
ensemble (the seeds' probabilities averaged, thresholds chosen again on validation), and whether the top two
models differ by more than the test rows' sampling noise.

The comparison is a paired bootstrap over test rows: both models' (seed-averaged) predictions are resampled on
the same rows, 1,000 times, and the difference of the selected metric is taken on each resample; "A beats B" is
stated only when the 95% percentile interval of that difference excludes 0. Seeds and rows are the two sources of
noise a single run hides; the seed ensemble averages the first out before the bootstrap measures the second.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap

from analysis.decision import average, decisions
from trainables.metrics import thresholds_for
from trainables.scores import score


@dataclass
class SeedRun:
    row: dict  # analysis.trials.trial_row of the run's best checkpoint
    arrays: dict  # that checkpoint's predictions.npz


def confirmed_runs(best: SeedRun, confirmations: list[SeedRun]) -> list[SeedRun]:
    """The best search trial and the confirmation trials of its configuration that trained all their epochs (one
    a time budget cut short would count a weaker model as seed noise)."""
    name = Path(best.row["trial_dir"]).name
    return [best] + [run for run in confirmations if run.row["config_confirm_of"] == name
                     and run.row["epochs_run"] >= int(run.row["config"].get("epochs", 0))]


def summary(runs: list[SeedRun], metric: str) -> dict:
    """Mean and standard deviation over the seeds of the validation and (labelled) test scores."""
    out = {"seeds": len(runs)}
    for split in ("val", "test"):
        values = [run.row[f"{split}_{metric}"] for run in runs if f"{split}_{metric}" in run.row]
        if values:
            out[f"{split}_{metric}_mean"] = statistics.fmean(values)
            out[f"{split}_{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def ensemble(runs: list[SeedRun], metric: str, method: str = "exact", weights: list[int] | None = None
             ) -> dict[str, np.ndarray]:
    """The runs' probabilities averaged (with `weights`, a trial ensemble's; equal for seeds), with thresholds chosen
    again on validation for `metric`, in the layout of a trial's predictions.npz (so every reader of those reads it
    too)."""
    first = runs[0].arrays
    arrays = {key: first[key] for key in ("val_labels", "test_labels", "label_names") if key in first}
    arrays["val_probs"] = average([run.arrays["val_probs"] for run in runs], weights)
    arrays["test_probs"] = average([run.arrays["test_probs"] for run in runs], weights)
    arrays.update(epoch=np.int64(0), metric=np.str_(metric))
    if "per_class_thresholds" in first:
        global_t, per_class_t = thresholds_for(metric, arrays["val_probs"], arrays["val_labels"], method)
        arrays.update(global_threshold=np.float32(global_t), per_class_thresholds=per_class_t)
    return arrays


def compare(name_a: str, a: dict, name_b: str, b: dict, metric: str, resamples: int = 1000, seed: int = 0) -> str:
    """One line: does A's test score beat B's beyond the test rows' noise (paired bootstrap, see above)?"""
    if "test_labels" not in a:
        return (f"{name_a} vs {name_b}: not tested (the test split has no labels; validation chose the "
                f"thresholds, so it cannot judge them)")
    labels, pred_a, pred_b = a["test_labels"], decisions(a, "test"), decisions(b, "test")

    def difference(rows: np.ndarray) -> float:
        return score(metric, labels[rows], pred_a[rows]) - score(metric, labels[rows], pred_b[rows])

    interval = bootstrap((np.arange(len(labels)),), difference, vectorized=False, n_resamples=resamples,
                         method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    observed = difference(np.arange(len(labels)))
    verdict = (f"{name_a} beats {name_b}" if interval.low > 0 else f"{name_b} beats {name_a}" if interval.high < 0
               else f"the difference does not hold: {name_a} and {name_b} are not separable on this test set")
    return (f"{name_a} vs {name_b}: test {metric} difference {observed:+.4f}, 95% interval "
            f"[{interval.low:+.4f}, {interval.high:+.4f}] (paired bootstrap over {len(labels):,} test rows, "
            f"{resamples:,} resamples): {verdict}")
