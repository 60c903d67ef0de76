"""Post-training dynamic INT8 of every best trial's encoder, measured against its FP32 self.

    python -m analysis.quantize results/<experiment> [--threads 1] [--repeats 10]

For each model's best trial (chosen by validation, analysis.best_trials) the Linear layers of the saved
checkpoint are quantized to INT8 with dynamic activation scales, the validation and test rows the sweep used
are predicted again (they are re-read from the sweep's data source exactly as sweep.json subsampled them),
thresholds are chosen again on validation for the INT8 model (with the trial's own method), and both models
are timed on the same batches of 32 test texts. Writes quantization.json and quantization.md into the
experiment dir.

Why `torch.ao.quantization.quantize_dynamic` and not torchao: on this project's CPUs (AVX2, no VNNI/AMX)
torch.ao's dynamic INT8 Linear runs on fbgemm's int8 GEMM and is ~2x faster than FP32 for MiniLM, while
torchao 0.18's `Int8DynamicActivationInt8WeightConfig` falls back to a slow path on CPU (~25x *slower* than
FP32 in eager mode, ~18x with torch.compile) and `Int8WeightOnlyConfig` is no faster than FP32 (it dequantizes
the weights before a float matmul). Accuracy is equal within noise for all three. bench/int8.py measures
both libraries (docs/benchmarks.md, "INT8 and the report (issue 5)"); `--library torchao` is kept so the
choice can be re-checked on another CPU.

Latency is the model's forward pass only (texts are tokenized beforehand), after warm-up runs, the median
over repeats of several real test batches (random rows, padded to their own longest text), at a fixed
thread count that is reported with the numbers.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer

from analysis.decision import decide
from analysis.inference import LIBRARIES, predict_probs, quantize_int8
from analysis.trials import ExperimentError, best_per_model, evaluate, print_or_fail, read_json, read_trials
from trainables import atomic
from trainables.data import DataError, EmotionData, load_sweep_data
from trainables.tweets import preprocess
from trainables.encoder import DEFAULTS, collate
from trainables.encoder_model import load_encoder
from trainables.metrics import choose_thresholds

BATCH_SIZE = 32
# The metric each dataset's own papers / leaderboard rank by (macro-F1 is reported for all of them anyway).
DATASET_METRIC = {"goemotions": "macro_f1", "goemotions_single": "accuracy", "semeval_ec": "jaccard",
                  "emotion6": "accuracy"}


def latency_ms(model: torch.nn.Module, batches: list[dict], repeats: int, warmup: int = 2) -> float:
    """Median wall time of one forward pass over a batch, in ms (every batch timed `repeats` times)."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(**batches[0])
        for _ in range(repeats):
            for batch in batches:
                started = time.perf_counter()
                model(**batch)
                times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def size_mb(model: torch.nn.Module) -> float:
    """Bytes of the state dict written with torch.save (works for FP32 and INT8 modules alike), in MB."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size / 1e6


def sweep_eval_data(sweep_dir: Path) -> tuple[str, EmotionData]:
    """(dataset name, its validation and test rows exactly as the sweep subsampled them)."""
    sweep_file = sweep_dir / "sweep.json"
    if not sweep_file.is_file():
        raise ExperimentError(f"{sweep_file}: not found (the sweep's data source is needed to predict again)")
    sweep = read_json(sweep_file)
    return sweep["dataset"], load_sweep_data(sweep)


def check_same_rows(saved: dict, data: EmotionData, where: Path) -> None:
    for split, name in ((data.validation, "val"), (data.test, "test")):
        if f"{name}_labels" in saved and (split.labels is None
                                          or not np.array_equal(split.labels, saved[f"{name}_labels"])):
            raise ExperimentError(f"{where}: {name}_labels: the sweep's data source no longer gives the rows "
                                  f"this trial predicted")


def load_trial(row: dict, data: EmotionData
               ) -> tuple[dict, torch.nn.Module, Callable[[list[str]], list[list[int]]], int]:
    """(trial config, the model of its best checkpoint on CPU, text encoder as the trial tokenized, pad id).

    Fully fine-tuned checkpoints (baseline, and QAT, whose checkpoints hold plain float weights) load as FP32
    models; QLoRA ones as the 4-bit body with the saved adapters and head."""
    checkpoint = Path(row["trial_dir"]) / row["checkpoint"]
    config = {**DEFAULTS, **json.loads((Path(row["trial_dir"]) / "params.json").read_text())}
    variant = "qlora" if config["variant"] == "qlora" else "baseline"
    with warnings.catch_warnings():  # peft / bitsandbytes warn about CPU inference being slow: it is measured
        warnings.simplefilter("ignore")
        model = load_encoder({**config, "variant": variant}, data, torch.device("cpu"), checkpoint / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(config["model_source"], revision=config.get("model_revision"))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(texts: list[str]) -> list[list[int]]:
        return tokenizer(preprocess(texts, config["preprocess"]), truncation=True,
                         max_length=int(config["max_length"]), return_attention_mask=False,
                         return_token_type_ids=False)["input_ids"]

    return config, model, encode, pad_id


def timing_batches(input_ids: list[list[int]], pad_id: int, count: int = 3) -> list[dict]:
    """`count` batches of 32 random rows, each padded to its own longest text (as served, unsorted)."""
    order = np.random.default_rng(0).permutation(len(input_ids))
    return [collate(input_ids, order[start:start + BATCH_SIZE], pad_id, torch.device("cpu"))
            for start in range(0, min(len(order), count * BATCH_SIZE), BATCH_SIZE)]


def repredict(model: torch.nn.Module, saved: dict, val_ids: list[list[int]], test_ids: list[list[int]],
              pad_id: int, config: dict) -> tuple[dict, float]:
    """(`model`'s arrays in predictions.npz layout, thresholds re-chosen on validation; the share of test rows
    where it decides like the trial's saved predictions). Agreement uses the trial's decision rule for both
    sets of test probabilities, so for an INT8 copy it measures the quantization error alone."""
    multi_label = "per_class_thresholds" in saved
    arrays = {"epoch": saved["epoch"], "val_labels": saved["val_labels"],
              "val_probs": predict_probs(model, val_ids, pad_id, multi_label)}
    if multi_label:
        global_t, per_class_t = choose_thresholds(arrays["val_probs"], saved["val_labels"], config["thresholds"],
                                                  int(config["seed"]))
        arrays.update(global_threshold=np.float32(global_t), per_class_thresholds=per_class_t)
    arrays["test_probs"] = predict_probs(model, test_ids, pad_id, multi_label)
    if "test_labels" in saved:
        arrays["test_labels"] = saved["test_labels"]

    rule = saved.get("per_class_thresholds")  # the trial's, for both
    same = decide(saved["test_probs"], rule) == decide(arrays["test_probs"], rule)
    return arrays, float((same.all(axis=1) if multi_label else same).mean())


def quantize_trial(row: dict, dataset: str, data: EmotionData, library: str, threads: int, repeats: int) -> dict:
    """FP32 vs INT8 for one best trial: metrics at validation-chosen thresholds, latency, size, agreement."""
    checkpoint = Path(row["trial_dir"]) / row["checkpoint"]
    if (checkpoint / "model" / "adapter_config.json").is_file():
        raise ExperimentError(f"{checkpoint}/model: a QLoRA adapter checkpoint; post-training INT8 is for "
                              f"fully fine-tuned encoders")
    config, fp32, encode, pad_id = load_trial(row, data)
    with np.load(checkpoint / "predictions.npz") as npz:
        saved = dict(npz)
    check_same_rows(saved, data, checkpoint / "predictions.npz")
    torch.set_num_threads(threads)
    int8 = quantize_int8(fp32, library)

    val_ids, test_ids = encode(data.validation.texts), encode(data.test.texts)
    arrays, agreement = repredict(int8, saved, val_ids, test_ids, pad_id, config)
    fp32_metrics, int8_metrics = evaluate(saved), evaluate(arrays)

    batches = timing_batches(test_ids, pad_id)
    fp32_ms = latency_ms(fp32, batches, repeats)
    int8_ms = latency_ms(int8, batches, repeats)

    metric = DATASET_METRIC.get(dataset, "macro_f1")
    result = {"model": row["model"], "library": library, "threads": threads, "batch_size": BATCH_SIZE,
              "latency_batches": len(batches), "mean_batch_tokens": float(np.mean([b["input_ids"].shape[1]
                                                                                   for b in batches])),
              "params_m": round(sum(p.numel() for p in fp32.parameters()) / 1e6, 3),
              "fp32_size_mb": round(size_mb(fp32), 3), "int8_size_mb": round(size_mb(int8), 3),
              "fp32_latency_ms": round(fp32_ms, 3), "int8_latency_ms": round(int8_ms, 3),
              "speedup": round(fp32_ms / int8_ms, 3), "test_agreement": agreement,
              "test_max_prob_diff": float(np.abs(saved["test_probs"] - arrays["test_probs"]).max()),
              "dataset_metric": metric}
    for split in ("val", "test"):
        for name in dict.fromkeys(("macro_f1", metric)):
            key = f"{split}_{name}"
            if key in fp32_metrics:
                result[f"fp32_{key}"], result[f"int8_{key}"] = fp32_metrics[key], int8_metrics[key]
    if "fp32_test_macro_f1" in result:
        result["delta_test_macro_f1"] = result["int8_test_macro_f1"] - result["fp32_test_macro_f1"]
    return {**result, "trial_dir": row["trial_dir"], "checkpoint": row["checkpoint"]}


def environment(threads: int, library: str) -> dict:
    return {"threads": threads, "library": library, "torch": torch.__version__,
            "transformers": transformers.__version__, "quantized_engine": torch.backends.quantized.engine,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def markdown(rows: list[dict], skipped: list[str], env: dict) -> str:
    columns = [c for c in ("model", "params_m", "fp32_val_macro_f1", "int8_val_macro_f1", "fp32_test_macro_f1",
                           "int8_test_macro_f1", "delta_test_macro_f1", "fp32_test_accuracy", "int8_test_accuracy",
                           "fp32_test_jaccard", "int8_test_jaccard", "test_agreement", "fp32_latency_ms",
                           "int8_latency_ms", "speedup", "fp32_size_mb", "int8_size_mb")
               if any(c in row for row in rows)]
    lines = [f"# FP32 vs dynamic INT8 ({env['library']}), best trial per model", "",
             f"CPU latency per batch of {BATCH_SIZE} test texts (forward pass only, median after warm-up), "
             f"{env['threads']} thread(s), torch {env['torch']} ({env['quantized_engine']} engine), "
             f"{env['cpu_count']} CPUs, {env['date']} UTC. INT8 thresholds re-chosen on validation.", "",
             "| " + " | ".join(columns) + " | trial |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) and abs(row[c]) < 1 else
                 f"{row[c]:.2f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + f" | [{Path(row['trial_dir']).name}]({row['trial_dir']}) |")
    if skipped:
        lines += ["", "Skipped:", *(f"- {line}" for line in skipped)]
    return "\n".join(lines) + "\n"


def best_trials_to_serve(path: Path) -> tuple[list[dict], str, EmotionData, list[str]]:
    """(best row per model, dataset name, the sweep's validation and test rows, one line per skipped trial)."""
    rows, skipped_trials = best_per_model(read_trials(path))
    if not rows:
        raise ExperimentError(f"{path}: no trial finished an epoch with saved predictions")
    try:
        dataset, data = sweep_eval_data(path)
    except DataError as error:
        raise ExperimentError(str(error)) from None
    return rows, dataset, data, [f"{t.model} {t.directory}: {t.error or 'no checkpoint with saved predictions'}"
                                 for t in skipped_trials]


def write_quantization(path: Path, library: str = "torch.ao", threads: int = 1, repeats: int = 10) -> str:
    path = Path(path)
    rows, dataset, data, skipped = best_trials_to_serve(path)
    results = []
    for row in rows:
        try:
            results.append(quantize_trial(row, dataset, data, library, threads, repeats))
        except ExperimentError as error:
            skipped.append(str(error))
    env = environment(threads, library)
    atomic.write_text(path / "quantization.json", json.dumps({"environment": env, "rows": results, "skipped": skipped},
                                                       indent=2))
    text = markdown(results, skipped, env)
    atomic.write_text(path / "quantization.md", text)
    return text


def timing_flags_problem(threads: int, repeats: int) -> str | None:
    """One line naming the first of --threads / --repeats below 1, or None."""
    for flag, value in (("--threads", threads), ("--repeats", repeats)):
        if value < 1:
            return f"{flag} {value}: must be >= 1"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--library", choices=LIBRARIES, default="torch.ao",
                        help="dynamic INT8 implementation (default torch.ao: the faster one on CPU, see above)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing (default 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes over each latency batch")
    args = parser.parse_args(argv)
    if problem := timing_flags_problem(args.threads, args.repeats):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.library == "torchao" and importlib.util.find_spec("torchao") is None:
        print("error: --library torchao: not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    return print_or_fail(lambda: write_quantization(args.experiment_dir, args.library, args.threads, args.repeats))


if __name__ == "__main__":
    raise SystemExit(main())
