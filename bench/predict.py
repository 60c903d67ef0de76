"""analysis.predict (FP32 and INT8) against transformers.pipeline on the same exported model and texts, in one run.

    python -m bench.predict EXPORT_DIR [--ensemble DIR] --data-dir ../shared/data/goemotions [--rows 5000]

EXPORT_DIR is an `analysis.export --single` dir of a GoEmotions sweep (README: the MiniLM winner), the model the
pipeline loads too; `--ensemble` adds rows for the same sweep's seed-ensemble export. The texts are the first
`--rows` rows of the release's test.tsv. Each way of predicting runs `--rounds` times, alternating, and the best
round counts (this machine is shared; the best round is the least disturbed one). Times are wall seconds for the
whole job after the model is in memory: tokenizing, batching, the forward passes, turning scores into labels.

- pipeline, batch 1: `pipeline("text-classification", model=DIR, top_k=None)` called on the list, as its docs show.
- pipeline, batch 64: the same with `batch_size=64` (the pipeline's fastest setting; it pads each batch to its
  longest text but does not sort by length).
- analysis.predict FP32 / INT8: length-sorted batches of 64, the export's max_length, dynamic INT8 for --int8.

Macro-F1 on the test labels: the pipeline's scores at 0.5 (what a pipeline user applies without thresholds) and
analysis.predict with the export's thresholds (chosen on validation by the sweep). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="a single-model export (analysis.export --single)")
    parser.add_argument("--ensemble", type=Path, help="the same sweep's seed-ensemble export, for its rows too")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from transformers import pipeline

    from analysis.decision import read_decision
    from analysis.predict import load_members, predict
    from trainables.data import load_dataset

    test = load_dataset("goemotions", args.data_dir).test
    texts, labels = test.texts[:args.rows], test.labels[:args.rows].astype(int)
    _, decision = read_decision(args.export_dir)
    classify = {batch: pipeline("text-classification", model=str(args.export_dir), top_k=None, batch_size=batch,
                                truncation=True, device="cpu") for batch in (1, 64)}

    def run_pipeline(batch: int) -> np.ndarray:
        outputs = classify[batch](texts)
        index = {name: i for i, name in enumerate(decision.labels)}
        probs = np.zeros((len(texts), len(decision.labels)), dtype=np.float32)
        for row, output in zip(probs, outputs):
            for item in output:
                row[index[item["label"]]] = item["score"]
        return (probs >= 0.5).astype(np.int64)

    def ours(export_dir: Path, int8: bool):
        rule, rule_decision = read_decision(export_dir)
        members = load_members(export_dir, rule, int8)  # loaded (and quantized) once, as the pipeline is built once

        def run() -> np.ndarray:
            _, _, probs = predict(export_dir, texts, int8=int8, progress=False, models=members)
            return rule_decision.apply(probs)
        return run

    ways = {"transformers.pipeline, batch 1 (its default), scores at 0.5": lambda: run_pipeline(1),
            "transformers.pipeline, batch 64, scores at 0.5": lambda: run_pipeline(64),
            "analysis.predict FP32, exported thresholds": ours(args.export_dir, False),
            "analysis.predict --int8, exported thresholds": ours(args.export_dir, True)}
    if args.ensemble:
        size = len(read_decision(args.ensemble)[0]["members"])
        ways[f"analysis.predict FP32, {size}-seed ensemble"] = ours(args.ensemble, False)
        ways[f"analysis.predict --int8, {size}-seed ensemble"] = ours(args.ensemble, True)
    seconds = {name: [] for name in ways}
    predictions = {}
    for _ in range(args.rounds):
        for name, run in ways.items():
            started = time.perf_counter()
            predictions[name] = run()
            seconds[name].append(time.perf_counter() - started)

    peers = {batch: len(texts) / min(seconds[name]) for batch, name in zip((1, 64), ways)}
    print(f"{len(texts):,} GoEmotions test texts, {args.export_dir}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; best of {args.rounds} rounds\n")
    print("| predictor | examples/s | vs pipeline batch 1 | vs pipeline batch 64 | test macro-F1 | rounds (s) |")
    print("|---|---|---|---|---|---|")
    for name in ways:
        rate = len(texts) / min(seconds[name])
        macro = f1_score(labels, predictions[name], average="macro", zero_division=0)
        rounds = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"| {name} | {rate:,.1f} | {rate / peers[1]:.2f}x | {rate / peers[64]:.2f}x | {macro:.4f} | {rounds} |")
    fp32, int8 = (predictions[f"analysis.predict {k}, exported thresholds"] for k in ("FP32", "--int8"))
    print(f"\nINT8 gives the same label set as FP32 on {np.mean(np.all(fp32 == int8, axis=1)):.1%} of the texts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
