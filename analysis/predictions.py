"""SemEval-2018 E-c leaderboard files: one per model's best trial and one of the trial ensemble
(`trial_ensemble.txt`), in the layout of the task's test file.

    python -m analysis.predictions results/<experiment>

The task scored a file shaped like 2018-E-c-En-test.txt with the NONE cells filled: header
`ID  Tweet  anger … trust`, tab-separated, one row per test tweet in input order, 0/1 per emotion. The 0/1
come from the best trial's saved test probabilities at the per-class thresholds it chose on the dev split
(analysis.decision), or from its seed ensemble's when it has one; the trial ensemble's from its weighted average
at the thresholds it chose on the dev split. Which to submit is the one the table shows best on validation.
The tweets themselves are not in the experiment dir, so the test split is read again from the sweep's data
source and subsampled exactly as the sweep did (sweep.json holds the dataset, options, budget and seed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analysis.decision import Decision
from analysis.trials import (ExperimentError, best_per_model, best_runs, read_json, read_trials, seed_ensembles,
                             trial_ensemble_row, trial_runs)
from trainables import atomic
from trainables.data import SEMEVAL_EC_COLUMNS, DataError, Split, load_sweep_data

PREDICTION_DATASETS = ("semeval_ec",)


def write_ec_file(path: Path, test: Split, predictions: np.ndarray) -> Path:
    """The task's layout, with the release's CRLF line ends; tweets are written back verbatim."""
    if len(test.ids) != len(predictions):
        raise ValueError(f"{path}: {len(predictions)} predictions for {len(test.ids)} test tweets")
    lines = ["\t".join(SEMEVAL_EC_COLUMNS)]
    lines += ["\t".join([tweet_id, text, *(str(int(v)) for v in row)])
              for tweet_id, text, row in zip(test.ids, test.texts, predictions)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def prediction_rows(rows: list[dict], ensembles: list[dict], joint: dict | None = None) -> list[dict]:
    """Each model's best-trial row, or its seed ensemble's predictions when it has one, and the trial ensemble's
    (`joint`, as `trial_ensemble`) where the sweep has one (analysis.trials): the submission is whichever scores
    best on validation, which the table shows."""
    from_ensembles = {row["of_model"]: {"model": row["of_model"], "predictions": row["predictions"]}
                      for row in ensembles}
    trial_ensemble = [{"model": "trial_ensemble", "predictions": joint["predictions"]}] if joint else []
    return [from_ensembles.get(row["model"], row) for row in rows] + trial_ensemble


def write_prediction_files(sweep_dir: Path, rows: list[dict]) -> list[Path]:
    """`<sweep_dir>/predictions/<model>.txt` for each best-trial row, for datasets with a leaderboard format."""
    sweep_file = Path(sweep_dir) / "sweep.json"
    if not sweep_file.is_file():
        return []
    sweep = read_json(sweep_file)
    if sweep["dataset"] not in PREDICTION_DATASETS:
        return []
    test = load_sweep_data(sweep).test  # the rows the trials predicted, in their order
    written = []
    for row in rows:
        saved = Path(row["predictions"]) if "predictions" in row else (
            Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz")  # a seed ensemble's, or the trial's
        with np.load(saved) as npz:
            arrays = dict(npz)
        predictions = Decision.from_arrays(arrays).apply(arrays["test_probs"])  # as analysis.predict decides
        written.append(write_ec_file(Path(sweep_dir) / "predictions" / f"{row['model']}.txt", test, predictions))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        trials = read_trials(args.experiment_dir)
        runs = best_runs(trials)
        rows, _ = best_per_model(trials, runs)
        ensembles = seed_ensembles(args.experiment_dir, trials, runs)
        joint = trial_ensemble_row(args.experiment_dir, trial_runs(trials)[0])
        written = write_prediction_files(args.experiment_dir, prediction_rows(rows, ensembles, joint))
    except (ExperimentError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not written:
        print(f"error: {args.experiment_dir}: no sweep.json of a dataset with a prediction format "
              f"({', '.join(PREDICTION_DATASETS)})", file=sys.stderr)
        return 2
    print("\n".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
