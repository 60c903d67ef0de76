"""Encoder variants side by side, per model: the full fine-tune in FP32, the same served as post-training INT8
(PTQ), quantization-aware training converted to INT8 (QAT), and QLoRA (4-bit NF4 body + adapters).

    python -m analysis.variants results/<emotion6 experiment> [--threads 1] [--repeats 3]

Reads the best trial (by validation) of each `<model>-<variant>` study that sweeps/emotion6.py ran, loads each
deployable form on CPU, predicts the sweep's validation and test rows again (thresholds, for multi-label data,
re-chosen on validation for each form) and times inference over the whole test split: batches of 32 in file
order, texts tokenized beforehand, one warm-up pass, the median of `--repeats` passes, a fixed thread count.
Size is the form's state dict as written by torch.save. Writes variants.json and variants.md into the
experiment dir; analysis.report shows the same table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from analysis.inference import quantize_int8
from analysis.quantize import (BATCH_SIZE, best_trials_to_serve, check_same_rows, environment, load_trial, repredict,
                               size_mb, timing_flags_problem)
from analysis.trials import ExperimentError, evaluate, print_or_fail
from trainables import atomic
from trainables.splits import EmotionData
from trainables.encoder import collate

# The forms each trained variant is served as, in table order.
FORMS = {"baseline": ("FP32", "PTQ INT8"), "qat": ("QAT INT8",), "qlora": ("QLoRA NF4",)}
COLUMNS = ("test_accuracy", "test_macro_f1", "val_macro_f1", "test_jaccard", "total_inference_s",
           "per_sample_ms", "size_mb", "params_m")


def inference_seconds(model: torch.nn.Module, input_ids: list[list[int]], pad_id: int, repeats: int) -> float:
    """Median wall time of one pass over all rows in batches of 32 (file order, each padded to its longest)."""
    batches = [collate(input_ids, np.arange(start, min(start + BATCH_SIZE, len(input_ids))), pad_id,
                       torch.device("cpu")) for start in range(0, len(input_ids), BATCH_SIZE)]
    times = []
    with torch.inference_mode():
        for round_ in range(repeats + 1):  # round 0 warms up
            started = time.perf_counter()
            for batch in batches:
                model(**batch)
            if round_:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def variant_rows(row: dict, data: EmotionData, repeats: int) -> list[dict]:
    """One table row per form the trial's variant is served as."""
    checkpoint = Path(row["trial_dir"]) / row["checkpoint"]
    config, model, encode, pad_id = load_trial(row, data)
    with np.load(checkpoint / "predictions.npz") as npz:
        saved = dict(npz)
    check_same_rows(saved, data, checkpoint / "predictions.npz")
    val_ids, test_ids = encode(data.validation.texts), encode(data.test.texts)
    variant = config["variant"]
    rows = []
    for form in FORMS[variant]:
        served = quantize_int8(model) if "INT8" in form else model
        arrays, agreement = repredict(served, saved, val_ids, test_ids, pad_id, config)
        metrics = evaluate(arrays)
        seconds = inference_seconds(served, test_ids, pad_id, repeats)
        rows.append({"model": row["model"].removesuffix(f"-{variant}"), "variant": variant, "form": form,
                     **{key: metrics[key] for key in COLUMNS if key in metrics},
                     "total_inference_s": seconds, "per_sample_ms": 1000 * seconds / len(test_ids),
                     "test_rows": len(test_ids), "size_mb": size_mb(served), "params_m": row["params_m"],
                     "threads": torch.get_num_threads(),
                     "test_agreement_with_trial": agreement,
                     "test_max_prob_diff_from_trial": float(np.abs(arrays["test_probs"] - saved["test_probs"]).max()),
                     "trial_dir": row["trial_dir"],
                     "checkpoint": row["checkpoint"]})
    return rows


def markdown(rows: list[dict], skipped: list[str], env: dict) -> str:
    columns = [c for c in COLUMNS if any(c in row for row in rows)]
    lines = ["# Encoder variants, best trial per model and variant", "",
             f"CPU inference over the {rows[0]['test_rows'] if rows else 0} test rows in batches of {BATCH_SIZE} "
             f"(tokenized beforehand, median of repeated passes after a warm-up), {env['threads']} thread(s), "
             f"torch {env['torch']}, {env['cpu_count']} CPUs, {env['date']} UTC. Size: state dict on disk.", "",
             "| model | form | " + " | ".join(columns) + " | trial |", "|" + "---|" * (len(columns) + 3)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if c in row and c not in ("size_mb", "params_m", "per_sample_ms")
                 else f"{row[c]:.2f}" if c in row else "" for c in columns]
        lines.append(f"| {row['model']} | {row['form']} | " + " | ".join(cells)
                     + f" | [{Path(row['trial_dir']).name}]({row['trial_dir']}) |")
    if skipped:
        lines += ["", "Skipped:", *(f"- {line}" for line in skipped)]
    return "\n".join(lines) + "\n"


def write_variants(path: Path, threads: int = 1, repeats: int = 3) -> str:
    path = Path(path)
    rows, _, data, skipped = best_trials_to_serve(path)
    torch.set_num_threads(threads)
    results = []
    for row in rows:
        try:
            results += variant_rows(row, data, repeats)
        except ExperimentError as error:
            skipped.append(str(error))
    order = list(FORMS)
    results.sort(key=lambda r: (r["model"], order.index(r["variant"]), FORMS[r["variant"]].index(r["form"])))
    env = environment(threads, "torch.ao (INT8), bitsandbytes (NF4)")
    atomic.write_text(path / "variants.json", json.dumps({"environment": env, "rows": results, "skipped": skipped},
                                                   indent=2))
    text = markdown(results, skipped, env)
    atomic.write_text(path / "variants.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the test split (default 3)")
    args = parser.parse_args(argv)
    if problem := timing_flags_problem(args.threads, args.repeats):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return print_or_fail(lambda: write_variants(args.experiment_dir, args.threads, args.repeats))


if __name__ == "__main__":
    raise SystemExit(main())
