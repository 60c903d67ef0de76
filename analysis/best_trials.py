"""Best trial per model, chosen on validation only (by the sweep's --metric: macro-F1, micro-F1 or Jaccard), with
test metrics at validation-chosen thresholds, and winners confirmed over seeds (analysis/seeds.py).

    python -m analysis.best_trials results/<experiment>

Reads the finished experiment directory (never trains; analysis.trials): each trial's params.json, result.json and
the predictions.npz its best checkpoint holds. Trials are grouped by their study (`study` in the config: the model,
or model-variant). Writes best_trials.md / .csv / .json into the experiment dir, with what each model cost
(CPU- and GPU-seconds: the trial's reserved share times its wall time, summed over the study's trials), and for
datasets with a leaderboard format the prediction files (analysis.predictions). ensembles.json holds the seed
ensembles (kind "seeds") and the trial ensemble of all the sweep's trials (kind "trials", analysis.trial_ensemble),
each with its predictions in ensembles/; the table shows them beside the best trials.

This is the step a sweep runs when it ends (sweeps also take read_trials, best_runs, reported_runs, ExperimentError
and print_or_fail from here, which it uses itself): it puts together reading the trials (analysis.trials), their tables
(analysis.tables) and the prediction files; those modules never import it, nor analysis.export or analysis.predict.

Run on its own, it first predicts the test split for the reported checkpoints that have no test predictions yet (a
sweep interrupted or killed after its trials, before it predicted them): `predict_reported_tests_here`.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from analysis.predictions import prediction_rows, write_prediction_files
from analysis.tables import (cost_line, markdown_table, per_class_f1, per_class_markdown, seed_lines,
                             trial_ensemble_lines)
from analysis.trials import (ExperimentError, best_per_model, best_runs, print_or_fail, read_json, read_trials,
                             reported_runs, seed_ensembles, trial_ensemble_row, trial_runs)
from trainables import atomic
from trainables.data import DataError, load_sweep_data


def write_best_trials(path: Path) -> str:
    """Write best_trials.{md,csv,json}, per_class_f1.csv and (for E-c) the leaderboard prediction files into
    the experiment dir; return the markdown."""
    path = Path(path)
    trials = read_trials(path)
    finished = trial_runs(trials)  # every trial's predictions read once, for the table and the ensembles
    runs = best_runs(trials, finished)
    rows, skipped = best_per_model(trials, runs)
    if not rows:
        raise ExperimentError(f"{path}: no trial finished an epoch with saved predictions")
    per_class = {row["model"]: per_class_f1(row) for row in rows}
    with atomic.replacing(path / "per_class_f1.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(next(iter(per_class.values()))[0]))
        writer.writeheader()
        writer.writerows(entry for table in per_class.values() for entry in table)
    ensembles = seed_ensembles(path, trials, runs)
    joint = trial_ensemble_row(path, finished[0])
    table = markdown_table(rows + ensembles + ([joint] if joint else []), skipped) + "\n" + cost_line(trials) + "\n"
    if lines := seed_lines(rows, ensembles) + trial_ensemble_lines(rows, joint):
        table += "\n" + "\n".join(lines) + "\n"
    table += "".join("\n" + per_class_markdown(model, entries) for model, entries in per_class.items())
    try:
        written = write_prediction_files(path, prediction_rows(rows, ensembles, joint))
    except DataError as error:
        table += f"\nPrediction files not written: {error}\n"
    else:
        table += "".join(f"\nPrediction file ({p.stem}, {len(p.read_text().splitlines()) - 1} test rows): {p}"
                         for p in written) + ("\n" if written else "")
    metrics = " / ".join(sorted({row["metric"] for row in rows}))
    atomic.write_text(path / "best_trials.md", f"# Best trial per model (chosen by validation {metrics})\n\n{table}")
    atomic.write_text(path / "ensembles.json", json.dumps(ensembles + ([joint] if joint else []), indent=2))
    atomic.write_text(path / "best_trials.json", json.dumps(rows, indent=2))
    fields = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k)
                    if k in rows[0] else len(rows[0]))
    with atomic.replacing(path / "best_trials.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**row, "config": json.dumps(row["config"], sort_keys=True)} for row in rows)
    return table


def predict_reported_tests_here(path: Path) -> None:
    """The test split predicted, in this process, for each reported checkpoint (analysis.trials.reported_runs) that
    has no test predictions yet, on the sweep's rows (re-read from its data source as sweep.json subsampled them) and
    on the device its trial's planned resources give (trainables/checkpoint_predictions.py): a CPU trial's on this
    machine's CPUs with the trial's thread count, a GPU trial's on a GPU, which this machine then needs. A sweep's own
    driver does this through Ray instead (sweeps/run.py), where GPU trials' predictions go to the cluster's GPUs."""
    pending = [run for run in reported_runs(read_trials(path)) if "test_probs" not in run.arrays]
    if not pending:
        return
    from trainables.checkpoint_predictions import add_test_predictions
    from trainables.device import NoCudaError  # heavy imports (torch) only when there is something to predict

    sweep_file = path / "sweep.json"
    if not sweep_file.is_file():
        raise ExperimentError(f"{sweep_file}: not found (the sweep's data source is needed to predict the test split)")
    sweep = read_json(sweep_file)
    try:
        data = load_sweep_data(sweep)
    except DataError as error:
        raise ExperimentError(str(error)) from None
    planned = {model["name"]: model for model in sweep["models"]}
    for run in pending:
        trial_dir = Path(run.row["trial_dir"])
        config = read_json(trial_dir / "params.json")
        gpus, cpus = (float(planned[config["study"]][key]) for key in ("gpus_per_trial", "cpus_per_trial"))
        print(f"predicting the test split for {trial_dir.name}/{run.row['checkpoint']}", flush=True)
        try:
            add_test_predictions(trial_dir / run.row["checkpoint"], config, data, gpus, cpus)
        except NoCudaError:
            raise ExperimentError(f"{trial_dir}: its trial trained on {gpus:g} GPU, and its test split is predicted "
                                  f"on one as well; run this on a machine with CUDA, or resume the sweep (--resume), "
                                  f"which predicts it on the cluster's GPUs") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    args = parser.parse_args(argv)

    def predict_and_write() -> str:
        predict_reported_tests_here(args.experiment_dir)
        return write_best_trials(args.experiment_dir)

    return print_or_fail(predict_and_write)


if __name__ == "__main__":
    raise SystemExit(main())
