"""Best trial per model, chosen by validation macro-F1 only, with test metrics at validation-chosen thresholds.

    python -m analysis.best_trials results/<experiment>

Reads the finished experiment directory (never trains): each trial's params.json, result.json and the
predictions.npz its best checkpoint holds. Trials are grouped by their study (`study` in the config: the model,
or model-variant). Writes best_trials.md / .csv / .json into the experiment dir, with what each model cost
(CPU- and GPU-seconds: the trial's reserved share times its wall time, summed over the study's trials).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.metrics import f1_score, jaccard_score

from trainables import atomic
from trainables.data import DataError
from trainables.metrics import macro_f1, multilabel_report, singlelabel_report

INTERNAL_KEYS = {"model", "model_source", "model_revision", "study", "seed", "thresholds"}


class ExperimentError(ValueError):
    """The directory is not a finished experiment analysis can read."""


@dataclass
class Trial:
    model: str
    directory: Path
    config: dict
    results: list[dict]
    error: str | None
    damaged: bool = False  # a file of it is unreadable (`error` says which): left out of the analysis

    @property
    def last(self) -> dict:
        return self.results[-1] if self.results else {}


def read_json(path: Path):
    """A JSON file analysis needs; a damaged one (a crash mid-write, a truncated copy) is one line naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExperimentError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None


def read_trials(path: Path) -> list[Trial]:
    """Every trial dir of the experiment. One whose files a crash left damaged (params.json or result.json
    truncated, empty or not JSON) is kept with that as its error, so the analysis names it and reports the rest."""
    if not path.is_dir():
        raise ExperimentError(f"{path}: not a directory")
    trials = []
    for directory in sorted(d for d in path.iterdir() if (d / "params.json").is_file()):
        error_file = directory / "error.txt"
        error = error_file.read_text(errors="replace").strip().splitlines()[-1:] if error_file.is_file() else []
        try:
            config = read_json(directory / "params.json")
            result_file = directory / "result.json"
            lines = result_file.read_text(encoding="utf-8").splitlines() if result_file.is_file() else []
            results = [json.loads(line) for line in lines if line.strip()]
        except ExperimentError as damaged:
            trials.append(Trial(directory.name.rsplit("_", 1)[0], directory, {}, [], str(damaged), damaged=True))
            continue
        except (UnicodeDecodeError, json.JSONDecodeError) as damaged:
            trials.append(Trial(config.get("study", directory.name.rsplit("_", 1)[0]), directory, config, [],
                                f"{result_file}: unreadable ({str(damaged).splitlines()[0]})", damaged=True))
            continue
        trials.append(Trial(config["study"], directory, config, results, error[0] if error else None))
    if not trials:
        raise ExperimentError(f"{path}: no Tune trials found (expected <trial>/params.json)")
    return trials


def best_predictions(trial: Trial) -> tuple[Path, dict] | None:
    """The checkpoint with the highest validation macro-F1 that carries test predictions. A damaged
    predictions.npz (empty, truncated, missing arrays) leaves the trial out, named with its file."""
    best = None
    for npz_path in sorted(trial.directory.glob("checkpoint_*/predictions.npz")):
        try:
            with np.load(npz_path) as npz:
                arrays = dict(npz)
            float(arrays["val_macro_f1"]), int(arrays["epoch"]), arrays["val_probs"].shape[1]
        except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            trial.error, trial.damaged = f"{npz_path}: unreadable ({reason})", True
            return None
        if "test_probs" in arrays and (best is None or arrays["val_macro_f1"] >= best[1]["val_macro_f1"]):
            best = (npz_path.parent, arrays)
    return best


def evaluate(arrays: dict) -> dict:
    """Validation and test metrics from saved probabilities; thresholds are the ones the trial chose on
    validation (saved beside the probabilities), so test never influences them."""
    if "per_class_thresholds" in arrays:
        thresholds = (float(arrays["global_threshold"]), arrays["per_class_thresholds"])
        val = multilabel_report(arrays["val_probs"], arrays["val_labels"], *thresholds)
        row = {"val_macro_f1": val["macro_f1_per_class"], "val_macro_f1_global": val["macro_f1_global"],
               "val_macro_f1_at_0.5": val["macro_f1_at_0.5"], "val_micro_f1": val["micro_f1_per_class"],
               "val_jaccard": val["jaccard_per_class"]}
        if "test_labels" in arrays:
            test = multilabel_report(arrays["test_probs"], arrays["test_labels"], *thresholds)
            row.update({"test_macro_f1": test["macro_f1_per_class"], "test_micro_f1": test["micro_f1_per_class"],
                        "test_macro_f1_global": test["macro_f1_global"],
                        "test_micro_f1_global": test["micro_f1_global"],
                        "test_jaccard": test["jaccard_per_class"]})
        return row
    val = singlelabel_report(arrays["val_probs"], arrays["val_labels"])
    row = {"val_macro_f1": val["macro_f1"], "val_accuracy": val["accuracy"], "val_weighted_f1": val["weighted_f1"]}
    if "test_labels" in arrays:
        test = singlelabel_report(arrays["test_probs"], arrays["test_labels"])
        row.update({"test_macro_f1": test["macro_f1"], "test_micro_f1": test["accuracy"],
                    "test_accuracy": test["accuracy"], "test_weighted_f1": test["weighted_f1"]})
    return row


def generation_columns(arrays: dict) -> dict:
    """Decoders that generate label names: their parsed answers scored beside the likelihood thresholds."""
    if "val_generated" not in arrays:
        return {}
    row = {"val_macro_f1_generation": macro_f1(arrays["val_labels"], arrays["val_generated"]),
           "val_jaccard_generation": float(jaccard_score(arrays["val_labels"], arrays["val_generated"],
                                                         average="samples", zero_division=1)),
           "parse_failure_rate": float(arrays["parse_failure_rate"])}
    if "test_labels" in arrays and "test_generated" in arrays:
        row.update(test_macro_f1_generation=macro_f1(arrays["test_labels"], arrays["test_generated"]),
                   test_jaccard_generation=float(jaccard_score(arrays["test_labels"], arrays["test_generated"],
                                                               average="samples", zero_division=1)))
    return row


def trial_row(trial: Trial) -> dict | None:
    if trial.damaged:
        return None
    found = best_predictions(trial)
    if found is None:
        return None
    checkpoint, arrays = found
    searched = {k: v for k, v in trial.config.items() if k not in INTERNAL_KEYS}
    return {
        "model": trial.model,
        "params_m": round(float(trial.last.get("params_m", float("nan"))), 3),
        **evaluate(arrays),
        **generation_columns(arrays),
        "best_epoch": int(arrays["epoch"]),
        "epochs_run": int(trial.last.get("training_iteration", 0)),
        "wall_s": round(float(trial.last.get("time_total_s", 0.0)), 1),
        "config": searched,
        "trial_dir": str(trial.directory),
        "checkpoint": checkpoint.name,
    }


def best_per_model(trials: list[Trial]) -> tuple[list[dict], list[Trial]]:
    """(best row per model by validation macro-F1, with the model's trial count and cost; trials that errored
    or left no predictions)."""
    best: dict[str, dict] = {}
    skipped = []
    for trial in trials:
        row = trial_row(trial)
        if row is None:
            skipped.append(trial)
            continue
        if trial.model not in best or row["val_macro_f1"] > best[trial.model]["val_macro_f1"]:
            best[trial.model] = row
    for model, row in best.items():
        row.update(model_cost([trial for trial in trials if trial.model == model]))
    return sorted(best.values(), key=lambda r: -r["val_macro_f1"]), skipped


def model_cost(trials: list[Trial]) -> dict:
    """Trials run and what they cost: each trial's last reported CPU- and GPU-seconds (share x wall)."""
    return {"trials": len(trials),
            "cpu_s": round(sum(trial.last.get("cpu_seconds", 0.0) for trial in trials), 1),
            "gpu_s": round(sum(trial.last.get("gpu_seconds", 0.0) for trial in trials), 1)}


def cost_line(trials: list[Trial]) -> str:
    cost = model_cost(trials)
    return (f"Sweep cost: {cost['trials']} trials, {cost['cpu_s']:,.0f} CPU-s ({cost['cpu_s'] / 3600:.2f} CPU-h), "
            f"{cost['gpu_s']:,.0f} GPU-s ({cost['gpu_s'] / 3600:.2f} GPU-h)")


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
                           "best_epoch", "epochs_run", "wall_s", "trials", "cpu_s", "gpu_s")
               if any(c in row for row in rows)]
    lines = ["| " + " | ".join(columns) + " | config | trial |", "|" + "---|" * (len(columns) + 2)]
    for row in rows:
        config = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(row["config"].items()))
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns)
                     + f" | {config} | {Path(row['trial_dir']).name} |")
    if skipped:
        lines += ["", "Skipped (errored or no saved predictions):"]
        lines += [f"- {t.model} {t.directory.name}: {t.error or 'no checkpoint with test predictions'}"
                  for t in skipped]
    return "\n".join(lines) + "\n"


def class_names(checkpoint: Path, arrays: dict) -> list[str]:
    """Label names in class order: saved with the predictions, else the model config's id2label (checkpoints
    written before the names were saved), else the class indices."""
    num_labels = arrays["val_probs"].shape[1]
    if "label_names" in arrays:
        return [str(name) for name in arrays["label_names"]]
    config = checkpoint / "model" / "config.json"
    id2label = json.loads(config.read_text()).get("id2label", {}) if config.is_file() else {}
    return [id2label.get(str(c), str(c)) for c in range(num_labels)]


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
        probs, labels = arrays[f"{split}_probs"], arrays[f"{split}_labels"]
        if "per_class_thresholds" in arrays:
            predictions, support = probs >= arrays["per_class_thresholds"], labels.sum(axis=0)
        else:
            predictions, support = probs.argmax(axis=1), np.bincount(labels, minlength=num_labels)
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


def write_best_trials(path: Path) -> str:
    """Write best_trials.{md,csv,json}, per_class_f1.csv and (for E-c) the leaderboard prediction files into
    the experiment dir; return the markdown."""
    from analysis.predictions import write_prediction_files

    path = Path(path)
    trials = read_trials(path)
    rows, skipped = best_per_model(trials)
    if not rows:
        raise ExperimentError(f"{path}: no trial finished an epoch with saved predictions")
    per_class = {row["model"]: per_class_f1(row) for row in rows}
    with atomic.replacing(path / "per_class_f1.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(next(iter(per_class.values()))[0]))
        writer.writeheader()
        writer.writerows(entry for table in per_class.values() for entry in table)
    table = markdown_table(rows, skipped) + "\n" + cost_line(trials) + "\n"
    table += "".join("\n" + per_class_markdown(model, entries) for model, entries in per_class.items())
    try:
        written = write_prediction_files(path, rows)
    except DataError as error:
        table += f"\nPrediction files not written: {error}\n"
    else:
        table += "".join(f"\nPrediction file ({p.stem}, {len(p.read_text().splitlines()) - 1} test rows): {p}"
                         for p in written) + ("\n" if written else "")
    atomic.write_text(path / "best_trials.md", f"# Best trial per model (chosen by validation macro-F1)\n\n{table}")
    atomic.write_text(path / "best_trials.json", json.dumps(rows, indent=2))
    fields = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k)
                    if k in rows[0] else len(rows[0]))
    with atomic.replacing(path / "best_trials.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**row, "config": json.dumps(row["config"], sort_keys=True)} for row in rows)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    args = parser.parse_args(argv)
    return print_or_fail(lambda: write_best_trials(args.experiment_dir))


def print_or_fail(write: Callable[[], str]) -> int:
    """Run an analysis step and print what it wrote (exit 0), or its one-line error (exit 2)."""
    try:
        print(write())
    except ExperimentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
