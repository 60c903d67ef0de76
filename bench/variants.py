"""The emotion6 encoder variants on this CPU: all-MiniLM-L6-v2 (offline) fine-tuned on a train subset of the real
dair-ai emotion files as a full fine-tune, with QAT and as QLoRA, then served as FP32, PTQ INT8, QAT INT8 and
QLoRA NF4 and measured by analysis.variants at 1 and 2 threads. Prints the training wall time per study and
the variants tables.

    python bench/variants.py --data-dir ../shared/data/emotion6 [--storage /tmp/bench-variants]
    python bench/variants.py --experiment results/<emotion6 experiment>      # measure a finished sweep only

Two trials per variant (the QLoRA study's first is its default point), two epochs on 4,000 train rows, all
2,000 validation and test rows: about 45 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analysis.variants import write_variants  # noqa: E402

SWEEP = ["--models", "minilm", "--budget", "cpu", "--train-rows", "4000", "--num-samples", "2", "--epochs", "2",
         "--no-dashboard"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="dair-ai emotion release files (train.txt val.txt test.txt)")
    parser.add_argument("--storage", default="/tmp/bench-variants")
    parser.add_argument("--experiment", type=Path, help="a finished emotion6 experiment: measure it, train nothing")
    args = parser.parse_args()
    if not (args.data_dir or args.experiment):
        parser.error("give --data-dir (train and measure) or --experiment (measure only)")

    experiment = args.experiment
    if experiment is None:
        name = f"emotion6-variants-{time.strftime('%Y%m%d-%H%M%S')}"
        command = [sys.executable, "sweeps/emotion6.py", "--data-dir", args.data_dir, *SWEEP,
                   "--storage", args.storage, "--name", name]
        print("$ python " + " ".join(command[1:]), flush=True)
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if result.returncode != 0:
            sys.exit(f"sweep failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        experiment = Path(args.storage) / name

    print("| study | trials | training wall s (sum of trials) | best val macro-F1 |\n|---|---|---|---|")
    studies: dict[str, list[Path]] = {}
    for params in sorted(experiment.glob("*/params.json")):
        studies.setdefault(json.loads(params.read_text())["study"], []).append(params.parent)
    for study, trials in sorted(studies.items()):
        results = [[json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
                   for trial in trials if (trial / "result.json").is_file()]
        wall = sum(r[-1]["time_total_s"] for r in results if r)
        best = max(max(e["val_macro_f1"] for e in r) for r in results if r)
        print(f"| {study} | {len(results)} | {wall:.0f} | {best:.4f} |")
    for threads in (2, 1):  # 1 thread last: variants.json (which the report reads) keeps the default
        print()
        print(write_variants(experiment, threads=threads, repeats=3), flush=True)


if __name__ == "__main__":
    main()
