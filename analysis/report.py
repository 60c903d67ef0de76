"""The cross-experiment report: tables, figures, per-class errors and bootstrap intervals for every best trial.

    python -m analysis.report results/<experiment> [results/<experiment> ...] [--out results/report]

Reads finished experiment dirs only (best trial per model by validation, analysis.trials; FP32 vs INT8
from each dir's quantization.json when analysis.quantize has run). Writes report.md and PNG figures (analysis.figures):
Table 1 macro-F1 by model x label scheme, the ensembles (seed ensembles and the trial ensemble, analysis.trial_ensemble)
beside the best trial, Table 2 efficiency, Table 3 FP32 vs INT8, per-class error analysis,
bootstrap 95% intervals of test macro-F1 and which models' intervals overlap (close models swap rank between
splits, so an overlap means the ranking is not settled). Every number links to its trial directory.
Dirs that cannot be read are listed under "Skipped" with one line each; the rest is still reported. Sweeps
that ran with W&B also get the tables logged as a "report" run in their group.
Refused before anything is written, in one line with exit 2 (no report dir made): `--out` naming an existing file
or a dir under a file or an unwritable dir, a `--resamples` that is not a count (1 .. 2**31-1), and experiment dirs
none of which can be read.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import f1_score, precision_recall_fscore_support

from analysis.checks import CheckError, OneLineParser, count, new_dirs, output_dir
from analysis.decision import decisions
from analysis.figures import plot_confusion, plot_fp32_vs_int8, plot_latency_vs_f1, plot_macro_f1
from analysis.tables import cost_line, ensemble_table, fmt, seed_lines
from analysis.trials import (ExperimentError, best_per_model, best_runs, class_names, read_json, read_trials,
                             seed_ensembles, trial_ensemble_row, trial_runs)
from trainables import atomic
from trainables.data import DATASETS

WORST_CLASSES = 5


@dataclass
class Experiment:
    """One readable experiment dir: its label scheme, best rows per model and (maybe) INT8 rows."""
    path: Path
    scheme: str  # sweep name and label type, e.g. "goemotions_raw (multi-label)"
    sweep: dict
    rows: list[dict]
    cost: str  # the sweep's trials and CPU/GPU time, one line
    quantized: dict[str, dict] = field(default_factory=dict)  # model -> quantization.json row
    variants: list[dict] = field(default_factory=list)  # variants.json rows
    seeds: list[str] = field(default_factory=list)  # winners over seeds: mean ± sd, ensembles, top-two test
    ensembles: list[str] = field(default_factory=list)  # the best trial, seed ensembles and trial ensemble, a table
    allocation: list[str] = field(default_factory=list)  # --allocate adaptive: trials moved between models


def load_experiment(path: Path, skipped: list[str]) -> Experiment | None:
    """The experiment, or None with one line per problem appended to `skipped`."""
    sweep_file = path / "sweep.json"
    if not path.is_dir() or not sweep_file.is_file():
        skipped.append(f"{path}: not a finished sweep experiment (no sweep.json)")
        return None
    try:
        sweep = read_json(sweep_file)
        trials = read_trials(path)
        finished = trial_runs(trials)  # every trial's predictions read once
        runs = best_runs(trials, finished)
        rows, failed = best_per_model(trials, runs)
    except ExperimentError as error:
        skipped.append(str(error))
        return None
    skipped += [f"{t.directory}: {t.error or 'no predictions.npz in its checkpoints'}" for t in failed]
    if not rows:
        skipped.append(f"{path}: no successful trial (none finished an epoch with saved predictions)")
        return None
    if not isinstance(sweep, dict) or sweep.get("dataset") not in DATASETS or "experiment" not in sweep:
        skipped.append(f"{sweep_file}: names no known dataset and experiment (one of: {', '.join(DATASETS)})")
        return None
    kind = "multi-label" if DATASETS[sweep["dataset"]].multi_label else "single-label"
    try:  # a trial ensemble member a stopped sweep left without test predictions
        seed_rows, joint = seed_ensembles(path, trials, runs), trial_ensemble_row(path, finished[0])
    except ExperimentError as error:
        skipped.append(str(error))
        return None
    experiment = Experiment(path, f"{sweep['experiment']} ({kind})", sweep, rows, cost_line(trials),
                            seeds=seed_lines(rows, seed_rows),
                            ensembles=ensemble_table(rows, seed_rows, joint) if seed_rows or joint else [])
    experiment.allocation = allocation_lines(path, sweep)
    quantization = path / "quantization.json"
    if quantization.is_file():
        experiment.quantized = {row["model"]: row for row in json.loads(quantization.read_text())["rows"]}
    if (path / "variants.json").is_file():
        experiment.variants = json.loads((path / "variants.json").read_text())["rows"]
    return experiment


def allocation_lines(path: Path, sweep: dict) -> list[str]:
    """With --allocate adaptive, each model's trial budget as it ended and the decision that moved it, from the
    studies' user attributes in the experiment's Optuna journal (sweeps/searcher.py records them there)."""
    journal = path / "optuna.journal"
    if sweep.get("allocate") != "adaptive" or not journal.is_file():
        return []
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    lines = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        budget = summary.user_attrs.get("trial_budget")
        decision = summary.user_attrs.get("allocation")
        planned = next((m["num_samples"] for m in sweep.get("models", []) if m["name"] == summary.study_name), None)
        lines.append(f"- {summary.study_name}: {summary.n_trials} trials, budget {planned} planned"
                     + (f", {budget} after reallocation" if budget is not None else ", unchanged")
                     + (f"; {decision}" if decision else ""))
    return lines


def test_decisions(row: dict) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """(test labels, test predictions at the trial's validation-chosen thresholds, class names)."""
    checkpoint = Path(row["trial_dir"]) / row["checkpoint"]
    with np.load(checkpoint / "predictions.npz") as npz:
        arrays = dict(npz)
    if "test_labels" not in arrays:
        return None
    return arrays["test_labels"], decisions(arrays, "test"), class_names(checkpoint, arrays)


def bootstrap_ci(labels: np.ndarray, predictions: np.ndarray, resamples: int = 1000, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile 95% interval of test macro-F1 over test rows resampled with replacement."""
    # Single-label macro-F1 averages the classes seen in labels or predictions (as best_trials computes it);
    # that set is fixed from the full test split so every resample averages the same classes.
    classes = None if labels.ndim == 2 else np.union1d(labels, predictions)

    def statistic(rows: np.ndarray) -> float:
        return f1_score(labels[rows], predictions[rows], labels=classes, average="macro", zero_division=0)

    result = bootstrap((np.arange(len(labels)),), statistic, vectorized=False, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def error_analysis(labels: np.ndarray, predictions: np.ndarray, names: list[str], worst: int = WORST_CLASSES
                   ) -> list[dict]:
    """Per-class precision/recall/F1 with FN and FP counts; the `worst` lowest-F1 classes that have test
    examples are marked FN-heavy (misses dominate: low recall) or FP-heavy (false alarms dominate)."""
    classes = np.arange(len(names))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=None if labels.ndim == 2 else classes, zero_division=0)
    if labels.ndim == 2:
        fn = ((labels == 1) & (predictions == 0)).sum(axis=0)
        fp = ((labels == 0) & (predictions == 1)).sum(axis=0)
    else:
        fn = np.array([((labels == c) & (predictions != c)).sum() for c in classes])
        fp = np.array([((labels != c) & (predictions == c)).sum() for c in classes])
    table = [{"label": names[c], "precision": float(precision[c]), "recall": float(recall[c]),
              "f1": float(f1[c]), "support": int(support[c]), "fn": int(fn[c]), "fp": int(fp[c]), "mark": ""}
             for c in classes]
    candidates = sorted((c for c in classes if support[c] > 0 and fn[c] + fp[c] > 0), key=lambda c: f1[c])
    for c in candidates[:worst]:
        errors = fn[c] + fp[c]
        heavy, share = ("FN-heavy", fn[c] / errors) if fn[c] >= fp[c] else ("FP-heavy", fp[c] / errors)
        table[c]["mark"] = f"{heavy} ({share:.0%} of {errors} errors)"
    return table


def link(value, target: str, out: Path) -> str:
    return f"[{fmt(value)}]({os.path.relpath(target, out)})"


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def build_report(paths: list[Path], out: Path, resamples: int = 1000) -> tuple[str, list[str]]:
    """Write report.md and figures into `out`; return (markdown, skipped lines). The experiments are read before
    `out` is made, and a report that fails midway removes the dirs it made: a refusal leaves nothing behind."""
    skipped: list[str] = []
    experiments = [e for e in (load_experiment(Path(p), skipped) for p in paths) if e is not None]
    if not experiments:
        raise ExperimentError("no readable experiment: " + "; ".join(skipped))
    with new_dirs(out):
        return write_report(experiments, skipped, out, resamples)


def write_report(experiments: list[Experiment], skipped: list[str], out: Path, resamples: int
                 ) -> tuple[str, list[str]]:
    entries = []  # one per best trial with test labels
    for experiment in experiments:
        for row in experiment.rows:
            decided = test_decisions(row)
            entry = {"scheme": experiment.scheme, "experiment": experiment, "row": row, "model": row["model"]}
            if decided is None:
                skipped.append(f"{row['trial_dir']}: test labels withheld; val only in Table 1, no test analysis")
            else:
                labels, predictions, names = decided
                entry.update(labels=labels, predictions=predictions, names=names,
                             test_macro_f1=row["test_macro_f1"], ci=bootstrap_ci(labels, predictions, resamples))
            entries.append(entry)
    tested = [e for e in entries if "labels" in e]

    lines = ["# Emotion sweeps report", "", "Experiments: " + ", ".join(
        f"[{e.path.name}]({os.path.relpath(e.path, out)}) ({e.scheme})" for e in experiments),
        "", "Best trial per model and scheme chosen on validation only (by the sweep's --metric); test numbers at "
        "the validation-chosen thresholds. Every number links to its trial directory.", ""]

    lines += ["## Table 1: macro-F1 by model and label scheme", "",
              "All three metrics at the thresholds tuned for the one each sweep selects by (`selected by`); "
              "micro-F1 is accuracy for single-label data, where Jaccard does not apply.", "",
              "| model | scheme | selected by | val macro-F1 | test macro-F1 | test 95% CI | val micro-F1 "
              "| test micro-F1 | val Jaccard | test Jaccard |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in sorted(entries, key=lambda e: (e["model"], e["scheme"])):
        trial, row = e["row"]["trial_dir"], e["row"]
        ci = f"[{e['ci'][0]:.4f}, {e['ci'][1]:.4f}]" if "ci" in e else "n/a"
        cells = {key: link(row[key], trial, out) if key in row else "n/a" for key in (
            "val_macro_f1", "test_macro_f1", "val_micro_f1", "test_micro_f1", "val_jaccard", "test_jaccard")}
        lines.append(f"| {e['model']} | {e['scheme']} | {row['metric']} | {cells['val_macro_f1']} | "
                     f"{cells['test_macro_f1']} | {ci} | {cells['val_micro_f1']} | {cells['test_micro_f1']} | "
                     f"{cells['val_jaccard']} | {cells['test_jaccard']} |")

    if any(x.seeds for x in experiments):
        lines += ["", "## Winners over seeds", "",
                  "Each model's best configuration trained again with further seeds (--confirm-seeds): mean ± "
                  "standard deviation over the seeds, the seed ensemble (probabilities averaged, thresholds chosen "
                  "again on validation) and whether the top two differ on test (paired bootstrap over test rows "
                  "of the seed-averaged predictions).", ""]
        for x in experiments:
            lines += [f"{x.path.name} ({x.scheme}):", "", *x.seeds, ""] if x.seeds else []
    if any(x.ensembles for x in experiments):
        lines += ["", "## Ensembles", "",
                  "The best single trial beside each seed ensemble and the trial ensemble (greedy selection with "
                  "replacement over every trial's validation probabilities, weights the times each trial was picked, "
                  "thresholds chosen again on validation): validation picked them all, test reports them.", ""]
        for x in experiments:
            lines += [f"{x.path.name} ({x.scheme}):", "", *x.ensembles, ""] if x.ensembles else []
    if any(x.allocation for x in experiments):
        lines += ["", "## Trials moved between models (--allocate adaptive)", "",
                  "Once every model had finished its random startup trials, a model whose best validation score was "
                  "reliably behind the leader's gave its remaining trials to the models that were not.", ""]
        for x in experiments:
            lines += [f"{x.path.name} ({x.scheme}):", "", *x.allocation, ""] if x.allocation else []
    lines += ["", "## Table 2: efficiency", "",
              "Sweep cost: every trial of the model's study, CPU- and GPU-seconds reserved (share x wall time). "
              "Latency: FP32 forward pass per batch of 32 test texts on CPU, from the dir's quantization.json "
              "(run `python -m analysis.quantize <dir>` to measure it).", "",
              "| model | scheme | params (M) | trials | CPU-s | GPU-s | CPU ms / batch of 32 | threads |",
              "|---|---|---|---|---|---|---|---|"]
    for e in sorted(entries, key=lambda e: (e["scheme"], e["model"])):
        quantized, trial = e["experiment"].quantized.get(e["model"]), e["row"]["trial_dir"]
        latency = (link(quantized["fp32_latency_ms"], trial, out) if quantized else
                   "see Table 4" if any(v["trial_dir"] == trial for v in e["experiment"].variants) else "not measured")
        threads = quantized["threads"] if quantized else ""
        cost = " | ".join(fmt(e["row"][key]) for key in ("trials", "cpu_s", "gpu_s"))
        lines.append(f"| {e['model']} | {e['scheme']} | {link(e['row']['params_m'], trial, out)} | {cost} "
                     f"| {latency} | {threads} |")
    lines += [""] + [f"- {x.path.name}: {x.cost}" for x in experiments]

    int8_rows = [{**q, "scheme": x.scheme} for x in experiments for q in x.quantized.values()]
    lines += ["", "## Table 3: FP32 vs dynamic INT8", ""]
    if int8_rows:
        lines += ["| model | scheme | FP32 test macro-F1 | INT8 test macro-F1 | Δ macro-F1 | FP32 ms | INT8 ms "
                  "| speedup | FP32 MB | INT8 MB | threads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for q in int8_rows:
            cells = [link(q[k], q["trial_dir"], out) if k in q else "n/a" for k in (
                "fp32_test_macro_f1", "int8_test_macro_f1", "delta_test_macro_f1", "fp32_latency_ms",
                "int8_latency_ms", "speedup", "fp32_size_mb", "int8_size_mb")]
            lines.append(f"| {q['model']} | {q['scheme']} | " + " | ".join(cells) + f" | {q['threads']} |")
    else:
        lines.append("No quantization.json in these experiments (run `python -m analysis.quantize <dir>`).")

    variant_rows = [{**v, "scheme": x.scheme} for x in experiments for v in x.variants]
    if variant_rows:
        lines += ["", "## Table 4: encoder variants", "",
                  "Each model fine-tuned in full (served as FP32 and as post-training INT8), with quantization-aware "
                  "training (served as INT8) and as QLoRA (4-bit NF4 body + adapters); CPU inference over the "
                  "whole test split in batches of 32, from the dir's variants.json (`python -m analysis.variants "
                  "<dir>`).", "",
                  "| model | scheme | form | test accuracy | test macro-F1 | total s | ms / sample | MB | threads |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for v in variant_rows:
            cells = [link(v[k], v["trial_dir"], out) if k in v else "n/a" for k in (
                "test_accuracy", "test_macro_f1", "total_inference_s", "per_sample_ms", "size_mb")]
            lines.append(f"| {v['model']} | {v['scheme']} | {v['form']} | " + " | ".join(cells)
                         + f" | {v['threads']} |")

    figures = []
    if tested:
        figures.append(plot_macro_f1(tested, out / "macro_f1_by_model.png"))
    points = [{"scheme": e["scheme"], "model": e["model"], "precision": "FP32", "f1": e["test_macro_f1"],
               "latency_ms": e["experiment"].quantized[e["model"]]["fp32_latency_ms"],
               "threads": e["experiment"].quantized[e["model"]]["threads"]}
              for e in tested if e["model"] in e["experiment"].quantized]
    points += [{"scheme": q["scheme"], "model": q["model"], "precision": "INT8", "f1": q["int8_test_macro_f1"],
                "latency_ms": q["int8_latency_ms"], "threads": q["threads"]}
               for q in int8_rows if "int8_test_macro_f1" in q]
    if points:
        figures.append(plot_latency_vs_f1(points, out / "latency_vs_macro_f1.png"))
    if variant_rows:
        figures.append(plot_latency_vs_f1(
            [{"scheme": v["scheme"], "model": v["model"], "precision": v["form"], "f1": v["test_macro_f1"],
              "latency_ms": v["per_sample_ms"], "threads": v["threads"]} for v in variant_rows if "test_macro_f1" in v],
            out / "variants_latency_vs_macro_f1.png", unit="ms per test sample (whole split, batches of 32)"))
    if any("fp32_test_macro_f1" in q for q in int8_rows):
        figures.append(plot_fp32_vs_int8([q for q in int8_rows if "fp32_test_macro_f1" in q],
                                         out / "fp32_vs_int8.png"))
    for e in tested:
        if e["labels"].ndim == 1:
            figures.append(plot_confusion(e["labels"], e["predictions"], e["names"],
                                          f"{e['model']}\n{e['scheme']}: test, row-normalised",
                                          out / f"confusion_{slug(e['scheme'])}_{slug(e['model'])}.png"))
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]

    lines += ["", "## Bootstrap 95% intervals of test macro-F1", "",
              f"{resamples} resamples of the test rows (percentile intervals). Overlapping intervals: the "
              "ranking of the two models may swap on another sample.", ""]
    for scheme in sorted({e["scheme"] for e in tested}):
        mine = sorted((e for e in tested if e["scheme"] == scheme), key=lambda e: -e["test_macro_f1"])
        for a, b in combinations(mine, 2):
            overlap = a["ci"][0] <= b["ci"][1] and b["ci"][0] <= a["ci"][1]
            lines.append(f"- {scheme}: {a['model']} {a['test_macro_f1']:.4f} [{a['ci'][0]:.4f}, {a['ci'][1]:.4f}] "
                         f"vs {b['model']} {b['test_macro_f1']:.4f} [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}]: "
                         + ("intervals overlap (rank not settled)" if overlap else "intervals separate"))
        if len(mine) == 1:
            lines.append(f"- {scheme}: one model only ({mine[0]['model']}), nothing to compare")

    lines += ["", "## Per-class error analysis (test)", "",
              f"The {WORST_CLASSES} lowest-F1 classes with test examples are marked FN-heavy (mostly missed: low "
              "recall) or FP-heavy (mostly false alarms: low precision), with that kind's share of the class's "
              "errors."]
    for e in tested:
        lines += ["", f"### {e['model']}, {e['scheme']} ([trial]({os.path.relpath(e['row']['trial_dir'], out)}))",
                  "", "| class | precision | recall | F1 | support | FN | FP | worst |", "|" + "---|" * 8]
        for c in error_analysis(e["labels"], e["predictions"], e["names"]):
            lines.append(f"| {c['label']} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | "
                         f"{c['support']} | {c['fn']} | {c['fp']} | {c['mark']} |")

    if skipped:
        lines += ["", "## Skipped", "", *(f"- {line}" for line in skipped)]
    text = "\n".join(lines) + "\n"
    atomic.write_text(out / "report.md", text)
    for experiment in experiments:
        if experiment.sweep.get("wandb", "off") != "off":
            log_to_wandb(experiment, [e for e in entries if e["experiment"] is experiment],
                         [q for q in int8_rows if q["trial_dir"].startswith(str(experiment.path))], figures)
    return text, skipped


def log_to_wandb(experiment: Experiment, entries: list[dict], int8_rows: list[dict], figures: list[Path]) -> None:
    """The experiment's rows of the report tables, as one "report" run in the sweep's W&B group."""
    import wandb  # heavy, and only for sweeps that ran with W&B: imported where used

    run = wandb.init(project=experiment.sweep["experiment"], group=experiment.path.name, name="report",
                     job_type="report", mode=experiment.sweep["wandb"], dir=str(experiment.path), reinit=True)
    columns = ["model", "scheme", "val_macro_f1", "test_macro_f1", "ci_low", "ci_high", "params_m", "trial_dir"]
    table = wandb.Table(columns=columns, data=[
        [e["model"], e["scheme"], e["row"]["val_macro_f1"], e["row"].get("test_macro_f1"),
         e.get("ci", (None, None))[0], e.get("ci", (None, None))[1], e["row"]["params_m"], e["row"]["trial_dir"]]
        for e in entries])
    logged = {"table1_macro_f1": table}
    if int8_rows:
        keys = ["model", "fp32_test_macro_f1", "int8_test_macro_f1", "delta_test_macro_f1", "fp32_latency_ms",
                "int8_latency_ms", "speedup", "fp32_size_mb", "int8_size_mb", "threads", "trial_dir"]
        logged["table3_int8"] = wandb.Table(columns=keys, data=[[q.get(k) for k in keys] for q in int8_rows])
    if experiment.variants:
        keys = ["model", "form", "test_accuracy", "test_macro_f1", "total_inference_s", "per_sample_ms", "size_mb",
                "threads", "trial_dir"]
        logged["table4_variants"] = wandb.Table(columns=keys, data=[[v.get(k) for k in keys]
                                                                    for v in experiment.variants])
    logged.update({f"figure/{p.stem}": wandb.Image(str(p)) for p in figures})
    run.log(logged)
    run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="where report.md and the PNGs go (default: <common parent of "
                                                 "the experiment dirs>/report)")
    parser.add_argument("--resamples", type=count, default=1000, help="bootstrap resamples (default 1000)")
    args = parser.parse_args(argv)
    out = args.out or Path(os.path.commonpath([p.resolve().parent for p in args.experiment_dirs])) / "report"
    try:
        output_dir("--out", out)
        _, skipped = build_report(args.experiment_dirs, out, args.resamples)
    except (CheckError, ExperimentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
