"""Results a leaderboard would accept, side by side: finished sweeps of one dataset under different --metric
values (at equal trials: same search seed and sampler), their validation scores at the thresholds each chose,
the confirmed winner's mean ± sd over seeds with its seed-ensemble row, and a check that each E-c prediction file
parses with the E-c reader and holds every test tweet in the test file's order. Prints tables.

    python -m bench.submission results/<macro run> results/<jaccard run> [--test-file 2018-E-c-En-test.txt]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.trials import best_per_model, read_json, read_trials, seed_ensembles
from trainables.data import read_semeval_ec
from trainables.scores import METRICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", type=Path)
    parser.add_argument("--test-file", type=Path, help="the E-c test file the prediction files must cover")
    args = parser.parse_args()

    print("| run | --metric | trials | row | " + " | ".join(f"val {m}" for m in METRICS)
          + " | test (selected metric) | wall |")
    print("|---|---|---|---|" + "---|" * len(METRICS) + "---|---|")
    for path in args.experiments:
        trials = read_trials(path)
        rows, _ = best_per_model(trials)
        sweep = read_json(path / "sweep.json")
        metric = sweep["fixed"]["metric"]
        searched = sum(1 for trial in trials if "confirm_of" not in trial.config)
        wall = max(float(trial.last.get("timestamp", 0)) for trial in trials) - min(
            float(trial.results[0].get("timestamp", 0)) - float(trial.results[0].get("time_total_s", 0))
            for trial in trials if trial.results)
        for row in rows + seed_ensembles(path, trials):
            kind = (row["model"] if "of_model" in row else f"{row['model']}, best trial")
            cells = []
            for m in METRICS:
                cell = f"{row[f'val_{m}']:.4f}"
                if f"val_{m}_mean" in row:
                    cell += f" (seeds {row[f'val_{m}_mean']:.4f} ± {row[f'val_{m}_sd']:.4f})"
                cells.append(cell)
            test = row.get(f"test_{metric}")
            print(f"| {path.name} | {metric} | {searched} + {len(trials) - searched} seeds | {kind} | "
                  + " | ".join(cells) + f" | {'unlabelled' if test is None else f'{test:.4f}'} | {wall / 60:.1f} min |")
    if args.test_file:
        expected = read_semeval_ec(args.test_file, labelled=False)
        print(f"\n# prediction files against {args.test_file} ({len(expected.ids):,} tweets)")
        for path in args.experiments:
            for file in sorted((path / "predictions").glob("*.txt")):
                back = read_semeval_ec(file, labelled=True)
                same = back.ids == expected.ids and back.texts == expected.texts
                source = json.loads((path / "ensembles.json").read_text()) if (path / "ensembles.json").is_file() \
                    else []
                origin = "seed ensemble" if any(e["of_model"] == file.stem for e in source) else "best trial"
                print(f"- {file}: {len(back.ids):,} rows, parses with the E-c reader, IDs and tweets "
                      f"{'identical to' if same else 'DIFFERENT from'} the test file's, in order ({origin})")


if __name__ == "__main__":
    main()
