"""Reading a finished experiment (never training): its trials, each trial's best checkpoint scored at the thresholds
it chose on validation, the best run per model (by the sweep's --metric) with the trials that confirmed it over seeds,
their seed ensembles, and the trial ensemble of every trial (analysis.trial_ensemble).

Each trial dir holds params.json, result.json and, in its checkpoints, predictions.npz (probabilities, labels and
the decision rule, analysis.decision). Trials are grouped by their study (`study` in the config: the model, or
model-variant). A file a crash left damaged leaves its trial out, named with the file. Every analysis step starts
here; ExperimentError is the one-line error of all of them (print_or_fail).

Everything is chosen on validation alone. Trials predict validation only; the test split is predicted afterwards for
the checkpoints the analysis reports (`reported_runs`: each model's best trial and its confirmation seeds, and the
trial ensemble's members), by the sweep when its search and confirmations end or by `python -m analysis.best_trials`
(trainables/checkpoint_predictions.py). Test metrics are computed where a checkpoint holds test predictions; a reported
checkpoint that has none yet is an ExperimentError naming the command that adds them (`require_test_predictions`).
"""
from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.metrics import jaccard_score

from analysis.decision import selected_metric
from analysis.seeds import SeedRun, confirmed_runs, ensemble, summary
from analysis.trial_ensemble import trial_ensemble
from trainables import atomic
from trainables.metrics import multilabel_report, singlelabel_report
from trainables.scores import macro_f1

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
    """The checkpoint with the highest validation score (the later of equals), with or without test predictions. A
    damaged predictions.npz (empty, truncated, missing arrays) leaves the trial out, named with its file."""
    best = None
    for npz_path in sorted(trial.directory.glob("checkpoint_*/predictions.npz")):
        try:
            with np.load(npz_path) as npz:
                arrays = dict(npz)
            arrays.setdefault("val_score", arrays["val_macro_f1"])  # written before --metric: macro-F1
            float(arrays["val_score"]), int(arrays["epoch"]), arrays["val_probs"].shape[1]
        except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            trial.error, trial.damaged = f"{npz_path}: unreadable ({reason})", True
            return None
        if best is None or arrays["val_score"] >= best[1]["val_score"]:
            best = (npz_path.parent, arrays)
    return best


def evaluate(arrays: dict) -> dict:
    """Validation metrics from saved probabilities, and test metrics where there are test probabilities and labels;
    thresholds are the ones the trial chose on validation (saved beside the probabilities), so test never influences
    them."""
    tested = "test_probs" in arrays and "test_labels" in arrays
    if "per_class_thresholds" in arrays:  # all three metrics, at the thresholds tuned for the selected one
        thresholds = (float(arrays["global_threshold"]), arrays["per_class_thresholds"])
        val = multilabel_report(arrays["val_probs"], arrays["val_labels"], *thresholds)
        row = {"val_macro_f1": val["macro_f1_per_class"], "val_macro_f1_global": val["macro_f1_global"],
               "val_macro_f1_at_0.5": val["macro_f1_at_0.5"], "val_micro_f1": val["micro_f1_per_class"],
               "val_jaccard": val["jaccard_per_class"]}
        if tested:
            test = multilabel_report(arrays["test_probs"], arrays["test_labels"], *thresholds)
            row.update({"test_macro_f1": test["macro_f1_per_class"], "test_micro_f1": test["micro_f1_per_class"],
                        "test_macro_f1_global": test["macro_f1_global"],
                        "test_micro_f1_global": test["micro_f1_global"],
                        "test_jaccard": test["jaccard_per_class"]})
        return row
    val = singlelabel_report(arrays["val_probs"], arrays["val_labels"])
    row = {"val_macro_f1": val["macro_f1"], "val_micro_f1": val["accuracy"], "val_accuracy": val["accuracy"],
           "val_weighted_f1": val["weighted_f1"]}
    if tested:
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
    if "test_labels" in arrays and "test_generated" in arrays:  # test_generated comes with labels only
        row.update(test_macro_f1_generation=macro_f1(arrays["test_labels"], arrays["test_generated"]),
                   test_jaccard_generation=float(jaccard_score(arrays["test_labels"], arrays["test_generated"],
                                                               average="samples", zero_division=1)))
    return row


def epochs_run(last: dict) -> int | float:
    """The epochs a trial trained: whole, or a fraction where ASHA stopped it at a rung inside an epoch."""
    epochs = float(last.get("epoch", last.get("training_iteration", 0)))
    return int(epochs) if epochs.is_integer() else epochs


def trial_run(trial: Trial) -> SeedRun | None:
    """The trial's best checkpoint as a table row, with its saved predictions."""
    if trial.damaged:
        return None
    found = best_predictions(trial)
    if found is None:
        return None
    checkpoint, arrays = found
    metric = selected_metric(arrays)
    scores = evaluate(arrays)
    searched = {k: v for k, v in trial.config.items() if k not in INTERNAL_KEYS}
    return SeedRun({
        "model": trial.model,
        "metric": metric,
        "params_m": round(float(trial.last.get("params_m", float("nan"))), 3),
        **scores,
        "val_score": scores[f"val_{metric}"],
        **generation_columns(arrays),
        "best_epoch": int(arrays["epoch"]),
        "epochs_run": epochs_run(trial.last),
        "wall_s": round(float(trial.last.get("time_total_s", 0.0)), 1),
        "config": searched,
        "config_seed": trial.config.get("seed"),
        "config_confirm_of": trial.config.get("confirm_of"),
        "trial_dir": str(trial.directory),
        "checkpoint": checkpoint.name,
    }, arrays)


def trial_row(trial: Trial) -> dict | None:
    run = trial_run(trial)
    return run.row if run else None


def trial_runs(trials: list[Trial]) -> tuple[list[SeedRun], list[Trial]]:
    """Every trial's best checkpoint as a run, in trial order, each trial's predictions read once; and the trials
    that errored or left nothing readable."""
    runs, skipped = [], []
    for trial in trials:
        run = trial_run(trial)
        if run is None:
            skipped.append(trial)
        else:
            runs.append(run)
    return runs, skipped


def best_runs(trials: list[Trial], finished: tuple | None = None) -> tuple[dict[str, list[SeedRun]], list[Trial]]:
    """Per model, its best search trial (by the selected metric on validation) followed by the trials that
    confirmed that configuration with other seeds; and the trials that errored or left nothing readable.
    `finished`: trial_runs(trials), when the caller has them already."""
    best: dict[str, SeedRun] = {}
    confirmations = []
    runs, skipped = finished or trial_runs(trials)
    for run in runs:
        model = run.row["model"]
        if run.row["config_confirm_of"]:
            confirmations.append(run)
        elif model not in best or run.row["val_score"] > best[model].row["val_score"]:
            best[model] = run
    return {model: confirmed_runs(run, confirmations) for model, run in best.items()}, skipped


def best_per_model(trials: list[Trial], runs: tuple | None = None) -> tuple[list[dict], list[Trial]]:
    """(best row per model by the selected validation metric, with the model's trial count and cost and, when
    it was confirmed with further seeds, their mean and standard deviation; trials that errored or left no
    predictions). `runs`: best_runs(trials), when the caller has them already. ExperimentError when a reported
    checkpoint holds no test predictions yet (require_test_predictions)."""
    runs, skipped = runs or best_runs(trials)
    require_test_predictions([run for seeds in runs.values() for run in seeds])
    rows = []
    for model, seeds in runs.items():
        row = seeds[0].row
        row.update(model_cost([trial for trial in trials if trial.model == model]))
        if len(seeds) > 1:
            row.update(summary(seeds, row["metric"]))
        rows.append(row)
    return sorted(rows, key=lambda r: -r.get(f"val_{r['metric']}_mean", r["val_score"])), skipped


def reported_runs(trials: list[Trial]) -> list[SeedRun]:
    """The runs whose test predictions the analysis reports, chosen on validation alone, each once: every model's
    best search trial and the trials that confirmed it over seeds (best_runs), and the trial ensemble's members."""
    finished = trial_runs(trials)
    runs, _ = best_runs(trials, finished)
    joint = trial_ensemble(finished[0])
    chosen = {}
    for run in [run for seeds in runs.values() for run in seeds] + (joint.members if joint else []):
        chosen.setdefault((run.row["trial_dir"], run.row["checkpoint"]), run)
    return list(chosen.values())


def require_test_predictions(runs: list[SeedRun]) -> None:
    """Raise ExperimentError naming the first run whose checkpoint holds no test predictions yet: a sweep predicts them
    for what it reports once its search and confirmations end, so one interrupted or killed before then has none."""
    for run in runs:
        if "test_probs" not in run.arrays:
            trial_dir = Path(run.row["trial_dir"])
            raise ExperimentError(f"{trial_dir / run.row['checkpoint']}: no test predictions yet (the sweep ended "
                                  f"before predicting the test split of the checkpoints it reports); "
                                  f"`python -m analysis.best_trials {trial_dir.parent}` adds them")


def model_cost(trials: list[Trial]) -> dict:
    """Trials run and what they cost: each trial's last reported CPU- and GPU-seconds (share x wall)."""
    return {"trials": len(trials),
            "cpu_s": round(sum(trial.last.get("cpu_seconds", 0.0) for trial in trials), 1),
            "gpu_s": round(sum(trial.last.get("gpu_seconds", 0.0) for trial in trials), 1)}


def seed_ensembles(path: Path, trials: list[Trial], runs: tuple | None = None) -> list[dict]:
    """For each model confirmed with further seeds: its seed ensemble as a row (model `<model> (N-seed
    ensemble)`), its averaged predictions saved as ensembles/<model>.npz in the trial layout."""
    runs, _ = runs or best_runs(trials)
    require_test_predictions([run for seeds in runs.values() for run in seeds])
    rows = []
    for model, seeds in runs.items():
        if len(seeds) < 2:
            continue
        metric = seeds[0].row["metric"]
        arrays = ensemble(seeds, metric, seeds[0].row["config"].get("thresholds", "exact"))
        saved = path / "ensembles" / f"{model}.npz"
        saved.parent.mkdir(exist_ok=True)
        with atomic.replacing(saved, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        scores = evaluate(arrays)
        rows.append({"model": f"{model} ({len(seeds)}-seed ensemble)", "kind": "seeds", "metric": metric, **scores,
                     "val_score": scores[f"val_{metric}"], "seeds": len(seeds), "of_model": model,
                     "members": [run.row["trial_dir"] for run in seeds], "predictions": str(saved)})
    return rows


def trial_ensemble_row(path: Path, runs: list[SeedRun]) -> dict | None:
    """The trial ensemble (analysis.trial_ensemble) of every trial's best checkpoint (`runs`: trial_runs) as a row
    (model "trial ensemble", kind "trials") with its members, checkpoints, weights and thresholds, its predictions
    saved as ensembles/trial_ensemble.npz in the trial layout; None when fewer than two trials can be averaged."""
    joint = trial_ensemble(runs)
    if joint is None:
        return None
    require_test_predictions(joint.members)
    saved = path / "ensembles" / "trial_ensemble.npz"
    saved.parent.mkdir(exist_ok=True)
    with atomic.replacing(saved, "wb") as handle:
        np.savez_compressed(handle, **joint.arrays)
    metric, scores = selected_metric(joint.arrays), evaluate(joint.arrays)
    thresholds = joint.arrays.get("per_class_thresholds")
    return {"model": "trial ensemble", "kind": "trials", "metric": metric, **scores,
            "val_score": scores[f"val_{metric}"], "library": joint.library, "rounds": sum(joint.weights),
            "members": [run.row["trial_dir"] for run in joint.members],
            "checkpoints": [run.row["checkpoint"] for run in joint.members], "weights": joint.weights,
            **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None else {}),
            "predictions": str(saved)}


def class_names(checkpoint: Path, arrays: dict) -> list[str]:
    """Label names in class order: saved with the predictions, else the model config's id2label (checkpoints
    written before the names were saved), else the class indices."""
    num_labels = arrays["val_probs"].shape[1]
    if "label_names" in arrays:
        return [str(name) for name in arrays["label_names"]]
    config = checkpoint / "model" / "config.json"
    id2label = json.loads(config.read_text()).get("id2label", {}) if config.is_file() else {}
    return [id2label.get(str(c), str(c)) for c in range(num_labels)]


def print_or_fail(write: Callable[[], str]) -> int:
    """Run an analysis step and print what it wrote (exit 0), or its one-line error (exit 2)."""
    try:
        print(write())
    except ExperimentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
