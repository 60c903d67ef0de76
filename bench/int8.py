"""FP32 vs dynamic INT8 (torch.ao and torchao) of a sweep's best trial on CPU: latency per batch of 32 at 1
and 2 threads, macro-F1 on the sweep's own val/test rows (INT8 thresholds re-chosen on validation), size.
Prints a markdown table; this is how analysis/quantize.py's choice of library was made.

    python bench/int8.py results/<experiment> [--threads 1 2] [--repeats 5] [--slow-rows 64]

torchao's INT8 dynamic-activation config is far slower than FP32 on a CPU without VNNI/AMX, so its accuracy
is measured as agreement with FP32 on the first --slow-rows test rows only (predicting the whole split
would take many minutes); the others predict every val/test row.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import numpy as np
import torch

from analysis.inference import predict_probs, quantize_int8
from analysis.quantize import latency_ms, load_trial, repredict, size_mb, sweep_eval_data, timing_batches
from analysis.trials import best_per_model, evaluate, read_trials


def torchao_weight_only(model: torch.nn.Module) -> torch.nn.Module:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = copy.deepcopy(model)
    quantize_(model, Int8WeightOnlyConfig())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7, help="timing rounds (each times every batch once)")
    parser.add_argument("--slow-rows", type=int, default=64)
    args = parser.parse_args()

    _, data = sweep_eval_data(args.experiment_dir)
    rows, _ = best_per_model(read_trials(args.experiment_dir))
    row = rows[0]
    config, fp32, encode, pad_id = load_trial(row, data)
    with np.load(Path(row["trial_dir"]) / row["checkpoint"] / "predictions.npz") as npz:
        saved = dict(npz)
    val_ids, test_ids = encode(data.validation.texts), encode(data.test.texts)
    batches = timing_batches(test_ids, pad_id)
    fp32_f1 = evaluate(saved)["test_macro_f1"]
    print(f"{row['model']} ({row['trial_dir']}): val {len(val_ids)} / test {len(test_ids)} rows, "
          f"{len(batches)} timing batches of 32 (mean {np.mean([b['input_ids'].shape[1] for b in batches]):.1f} "
          f"tokens), {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"engine {torch.backends.quantized.engine}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")

    variants = {"FP32": lambda m: m, "torch.ao quantize_dynamic INT8": lambda m: quantize_int8(m, "torch.ao"),
                "torchao Int8WeightOnly": torchao_weight_only,
                "torchao Int8DynamicActivationInt8Weight": lambda m: quantize_int8(m, "torchao")}
    slow = {"torchao Int8DynamicActivationInt8Weight"}
    header = ["variant", *(f"ms/batch ({t} thr)" for t in args.threads), *(f"speedup ({t} thr)"
                                                                            for t in args.threads),
              "test macro-F1", "Δ macro-F1", "test agreement", "size MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    torch.set_num_threads(max(args.threads))
    models, quality = {}, {}
    for name, build in variants.items():
        model = models[name] = build(fp32)
        if name == "FP32":
            quality[name] = (fp32_f1, 0.0, 1.0)
        elif name in slow:
            multi_label = "per_class_thresholds" in saved
            probs = [predict_probs(model, test_ids[:args.slow_rows], pad_id, multi_label),
                     saved["test_probs"][:args.slow_rows]]
            decided = [p >= saved["per_class_thresholds"] if multi_label else p.argmax(1) for p in probs]
            same = decided[0] == decided[1]
            quality[name] = (float("nan"), float("nan"), float((same.all(axis=1) if multi_label else same).mean()))
        else:
            arrays, agreement = repredict(model, saved, val_ids, test_ids, pad_id, config)
            f1 = evaluate(arrays)["test_macro_f1"]
            quality[name] = (f1, f1 - fp32_f1, agreement)

    # Timing rounds interleave the variants, so load from other jobs on a shared machine hits them alike.
    times = {name: {} for name in models}
    for threads in args.threads:
        torch.set_num_threads(threads)
        samples = {name: [] for name in models}
        for round_ in range(args.repeats):
            for name, model in models.items():
                if name in slow and round_ >= 2:
                    continue
                samples[name].append(latency_ms(model, batches[:1] if name in slow else batches, repeats=1,
                                                warmup=1 if round_ == 0 else 0))
        times = {name: {**times[name], threads: float(np.median(samples[name]))} for name in models}

    for name, model in models.items():
        f1, delta, agreement = quality[name]
        cells = [name, *(f"{times[name][t]:.1f}" for t in args.threads),
                 *(f"{times['FP32'][t] / times[name][t]:.2f}x" for t in args.threads), f"{f1:.4f}", f"{delta:+.4f}",
                 f"{agreement:.3f}" + (f" ({args.slow_rows} rows)" if name in slow else ""), f"{size_mb(model):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
