"""The tables of the best trials: one markdown row per model (or seed ensemble, or the trial ensemble), the sweep's
cost, the seed lines (mean ± sd, ensembles, the top two compared on test), the trial ensemble's line, the ensembles
beside the best trial, and per-class F1 at each trial's own decision rule. Written into best_trials.md by
analysis.best_trials; analysis.report shows the same numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from analysis.decision import decisions
from analysis.seeds import compare
from analysis.trials import Trial, class_names, model_cost
from trainables.scores import METRICS


def fmt(value) -> str:
    if isinstance(value, float):
        if 0 < abs(value) < 1e-3:  # learning rates
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict], skipped: list[Trial]) -> str:
    columns = [c for c in ("model", "params_m", "val_macro_f1", "val_micro_f1", "val_jaccard", "val_accuracy",
                           "test_macro_f1", "test_micro_f1", "test_macro_f1_global", "test_micro_f1_global",
                           "test_jaccard", "test_accuracy", "test_weighted_f1",
                           "val_macro_f1_generation", "val_jaccard_generation", "test_macro_f1_generation",
                           "test_jaccard_generation", "parse_failure_rate",
                           "seeds", *(f"{split}_{metric}_{stat}" for metric in METRICS for split in ("val", "test")
                                      for stat in ("mean", "sd")),
                           "best_epoch", "epochs_run", "wall_s", "trials", "cpu_s", "gpu_s")
               if any(c in row for row in rows)]
    lines = ["| " + " | ".join(columns) + " | config | trial |", "|" + "---|" * (len(columns) + 2)]
    for row in rows:
        config = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(row.get("config", {}).items()))
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + f" | {config} | {source(row)} |")
    if skipped:
        lines += ["", "Skipped (errored or no saved predictions):"]
        lines += [f"- {t.model} {t.directory.name}: {t.error or 'no checkpoint with saved predictions'}"
                  for t in skipped]
    return "\n".join(lines) + "\n"


def source(row: dict) -> str:
    """Where a row's numbers come from: its trial, or the trials an ensemble averages."""
    if "trial_dir" in row:
        return Path(row["trial_dir"]).name
    if row.get("kind") == "trials":
        return "weighted average of " + members_text(row)
    return "averaged probabilities of its seeds"


def members_text(row: dict) -> str:
    """A trial ensemble's members with their weights: `minilm_ab12 ×3, albert_cd34 ×1`."""
    return ", ".join(f"{Path(member).name} ×{weight}" for member, weight in zip(row["members"], row["weights"]))


def cost_line(trials: list[Trial]) -> str:
    cost = model_cost(trials)
    return (f"Sweep cost: {cost['trials']} trials, {cost['cpu_s']:,.0f} CPU-s ({cost['cpu_s'] / 3600:.2f} CPU-h), "
            f"{cost['gpu_s']:,.0f} GPU-s ({cost['gpu_s'] / 3600:.2f} GPU-h)")


def seed_lines(rows: list[dict], ensembles: list[dict]) -> list[str]:
    """Markdown lines: each confirmed model's mean ± sd over seeds and its seed ensemble, then whether the top two
    models differ on test beyond the rows' noise."""
    by_model = {row["of_model"]: row for row in ensembles}
    lines = []
    for row in rows:
        if "seeds" not in row:
            continue
        metric, line = row["metric"], f"- {row['model']}: over {row['seeds']} seeds, validation {row['metric']} "
        line += f"{row[f'val_{metric}_mean']:.4f} ± {row[f'val_{metric}_sd']:.4f}"
        if f"test_{metric}_mean" in row:
            line += f", test {row[f'test_{metric}_mean']:.4f} ± {row[f'test_{metric}_sd']:.4f}"
        if (joint := by_model.get(row["model"])) is not None:
            line += f"; seed ensemble: validation {joint[f'val_{metric}']:.4f}"
            line += f", test {joint[f'test_{metric}']:.4f}" if f"test_{metric}" in joint else ""
        lines.append(line)
    if comparison := top_two_comparison(rows, ensembles):
        lines.append(f"- {comparison}")
    return lines


def trial_ensemble_lines(rows: list[dict], joint: dict | None) -> list[str]:
    """One markdown line: the trial ensemble's members and weights, and its scores beside the best trial's."""
    if joint is None:
        return []
    metric, best = joint["metric"], max(rows, key=lambda row: row["val_score"])
    line = (f"- trial ensemble: greedy selection with replacement over {joint['library']} trials ({joint['rounds']} "
            f"picks): {members_text(joint)}; validation {metric} {joint[f'val_{metric}']:.4f} (best trial "
            f"{best[f'val_{metric}']:.4f})")
    if f"test_{metric}" in joint:
        line += f", test {joint[f'test_{metric}']:.4f} (best trial {best[f'test_{metric}']:.4f})"
    return [line]


def ensemble_table(rows: list[dict], seed_rows: list[dict], joint: dict | None) -> list[str]:
    """Markdown lines: the best trial, each seed ensemble and the trial ensemble side by side on the selected
    metric (validation picked them all; test reports them)."""
    metric, best = rows[0]["metric"], max(rows, key=lambda row: row["val_score"])
    lines = [f"| row | members | val {metric} | test {metric} |", "|---|---|---|---|"]
    entries = [(f"best trial ({best['model']})", best, Path(best["trial_dir"]).name)]
    entries += [(row["model"], row, f"{row['seeds']} seeds") for row in seed_rows]
    entries += [("trial ensemble", joint, members_text(joint))] if joint else []
    for name, row, members in entries:
        lines.append(f"| {name} | {members} | {fmt(row[f'val_{metric}'])} | {fmt(row.get(f'test_{metric}', 'n/a'))} |")
    return lines


def top_two_comparison(rows: list[dict], ensembles: list[dict]) -> str | None:
    """Whether the best model beats the runner-up on test (seed ensembles where there are, else best trials)."""
    if len(rows) < 2:
        return None
    by_model = {row["of_model"]: row for row in ensembles}

    def predictions(row: dict) -> tuple[str, dict]:
        chosen = by_model.get(row["model"])
        path = Path(chosen["predictions"]) if chosen else Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz"
        with np.load(path) as npz:
            return (chosen or row)["model"], dict(npz)

    (name_a, a), (name_b, b) = predictions(rows[0]), predictions(rows[1])
    return compare(name_a, a, name_b, b, rows[0]["metric"])


def per_class_f1(row: dict) -> list[dict]:
    """F1 and support of every class for one best trial: per-class thresholds (multi-label) or argmax."""
    checkpoint = Path(row["trial_dir"]) / row["checkpoint"]
    with np.load(checkpoint / "predictions.npz") as npz:
        arrays = dict(npz)
    num_labels = arrays["val_probs"].shape[1]
    classes = list(range(num_labels))
    table = [{"model": row["model"], "label": name} for name in class_names(checkpoint, arrays)]
    for split in ("val", "test"):
        if f"{split}_labels" not in arrays:
            continue
        labels, predictions = arrays[f"{split}_labels"], decisions(arrays, split)
        support = labels.sum(axis=0) if "per_class_thresholds" in arrays else np.bincount(labels, minlength=num_labels)
        scores = f1_score(labels, predictions, labels=None if labels.ndim == 2 else classes, average=None,
                          zero_division=0)
        for entry, score, count in zip(table, scores, support):
            entry.update({f"{split}_f1": float(score), f"{split}_support": int(count)})
    return table


def per_class_markdown(model: str, table: list[dict]) -> str:
    columns = [c for c in ("label", "val_f1", "val_support", "test_f1", "test_support") if c in table[0]]
    lines = [f"### Per-class F1: {model}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(entry[c]) for c in columns) + " |" for entry in table]
    return "\n".join(lines) + "\n"
