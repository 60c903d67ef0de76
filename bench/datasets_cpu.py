"""A reduced CPU sweep per dataset on the real release files with the offline all-MiniLM-L6-v2: SemEval-2018
E-c (dev Jaccard, macro-F1) and dair-ai emotion (test accuracy, macro-F1), with wall time. Prints a table.

    python bench/datasets_cpu.py --data-root ../shared/data [--only semeval_ec] [--storage /tmp/bench-datasets]

Each sweep file runs as a user runs it (fresh local Ray, Optuna, the analysis at the end), cut to one trial
of one epoch on a train subset so each run stays under ~10 minutes on a 2-core machine. E-c's score is on
the official dev split (the test file's labels are withheld; its prediction file is written too).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMON = ["--models", "minilm", "--budget", "cpu", "--num-samples", "1", "--scheduler", "none", "--epochs", "1",
          "--lr", "1e-4", "--batch-size", "32", "--max-length", "64", "--no-dashboard"]
RUNS = {
    "semeval_ec": ("semeval_ec.py", "semeval2018_ec", ["--train-rows", "4000", "--preprocess", "tweet"],
                   ("val_jaccard", "val_macro_f1", "val_micro_f1")),
    "emotion6": ("emotion6.py", "emotion6", ["--train-rows", "3000", "--val-rows", "1000", "--variant", "baseline"],
                 ("test_accuracy", "test_macro_f1", "val_macro_f1")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding semeval2018_ec/ and emotion6/")
    parser.add_argument("--only", choices=tuple(RUNS), nargs="+", default=list(RUNS))
    parser.add_argument("--storage", default="/tmp/bench-datasets")
    args = parser.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = [f"{platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M')}", "",
             "| dataset | metrics | train rows/s | wall s | command |", "|---|---|---|---|---|"]
    for dataset in args.only:
        script, folder, extra, metrics = RUNS[dataset]
        command = [sys.executable, f"sweeps/{script}", "--data-dir", str(Path(args.data_root) / folder), *COMMON,
                   *extra, "--storage", args.storage, "--name", f"{dataset}-{stamp}"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{dataset}: exit {result.returncode}\n{result.stderr[-3000:]}")
        row = json.loads((Path(args.storage) / f"{dataset}-{stamp}" / "best_trials.json").read_text())[0]
        trial = [json.loads(line) for line in (Path(row["trial_dir"]) / "result.json").read_text().splitlines()]
        scores = ", ".join(f"{m} {row[m]:.4f}" for m in metrics)
        shown = " ".join(["python", *command[1:]])
        lines.append(f"| {dataset} | {scores} | {trial[-1]['train_examples_per_s']:.1f} | {wall:.0f} | `{shown}` |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
