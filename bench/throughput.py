"""Training throughput side by side, in one run: the HF Trainer at its best settings (length-grouped batches, in
fp32 and with its own bf16 mixed precision) and this project's encoder trial, on the same GoEmotions rows, batch
size and threads, over whole epochs, interleaved (`--pairs` rounds of every trainer, medians reported: the machine
is shared and its speed drifts), against the machine's fp32 and bf16 GEMM limits for the model's shapes (measured
in the same run). Prints a table.

    python -m bench.throughput --data-dir ../shared/data/goemotions [--rows 8000] [--batch-size 32] [--threads 2]
        [--pairs 2] [--device auto|cpu|cuda]

On a GPU (`--device cuda`, the default where CUDA is found) the same comparison runs there: the peer's mixed
precision is bf16 where the GPU has it, else fp16 (`TrainingArguments(fp16=True)`), the trial's autocast dtype is
chosen the same way (trainables/device.py), the trial gets the whole GPU, and the fp32 trial row is left out (a GPU
trial's precision is not a switch).

The trial is the real one: trainables.encoder.train_encoder through Ray Tune with --threads CPUs, its
`train_examples_per_s` (the epoch's training loop, from its first batch to its last optimizer step). The peer is
`transformers.Trainer` with `train_sampling_strategy="group_by_length"`, its `train_samples_per_second`. The limit:
training costs 6 FLOP per matmul weight per token (forward 2, backward 4); the GEMM rate is measured on the
model's own linear-layer shapes (forward, input-gradient and weight-gradient products) at the epoch's mean padded
batch, so limit examples/s = rate / (6 x matmul weights x mean padded length); on a CPU with native bf16
(AVX512-BF16, AMX) bf16 products are faster, so a bf16 trial is held to the bf16 limit.

The project's trial runs in several configurations: the cpu budget's default (bf16, sparse word-embedding updates,
no dropout: sweeps/experiment.py), each of those options alone on the trainable's defaults, and fp32.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from sweeps.experiment import BUDGETS
from trainables.data import load_dataset
from trainables.encoder import length_grouped_batches
from trainables.models import offline_minilm_path

LR, MAX_LENGTH = 5e-5, 64
MIXED_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def matmul_weights(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear the training step multiplies by (the word embeddings are a lookup, not a GEMM)."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def gemm_rate(shapes: list[tuple[int, int]], tokens: int, dtype: torch.dtype = torch.float32, repeats: int = 5,
              device: str = "cpu") -> float:
    """FLOP/s of one training step's matrix products for `tokens` rows in `dtype`: for each Linear, X@W, dY@W^T,
    X^T@dY."""
    pairs = []
    for fan_in, fan_out in shapes:
        x, w, dy = (torch.randn(tokens, fan_in, dtype=dtype, device=device),
                    torch.randn(fan_in, fan_out, dtype=dtype, device=device),
                    torch.randn(tokens, fan_out, dtype=dtype, device=device))
        pairs += [(x, w), (dy, w.T.contiguous()), (x.T.contiguous(), dy)]
    flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)
    repeats = repeats if device == "cpu" else 20 * repeats  # GPU products take microseconds
    for a, b in pairs:  # warm-up
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        for a, b in pairs:
            a @ b
    synchronize(device)
    return flop * repeats / (time.perf_counter() - started)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def mixed_precision(device: str) -> str:
    """The peer's and the limit's mixed precision: bf16 on CPUs (autocast) and on GPUs that have it, else fp16."""
    return "bf16" if device == "cpu" or torch.cuda.is_bf16_supported() else "fp16"


def trainer_peer(texts: list[str], labels: np.ndarray, batch_size: int, threads: int, precision: str = "fp32",
                 device: str = "cpu") -> float:
    """HF Trainer, length-grouped batches, one epoch, in fp32 or with its own mixed precision
    (`TrainingArguments(bf16=True)`, or fp16=True on a GPU without bf16: autocast, as a skilled user sets it): its
    train_samples_per_second."""
    import datasets
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    torch.set_num_threads(threads)
    path = offline_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, return_token_type_ids=False)
    rows = datasets.Dataset.from_dict({**encoded, "labels": labels.astype(np.float32).tolist()})
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=labels.shape[1], problem_type="multi_label_classification")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, per_device_train_batch_size=batch_size, num_train_epochs=1, learning_rate=LR,
                                 train_sampling_strategy="group_by_length", use_cpu=device == "cpu", report_to=[],
                                 save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0,
                                 bf16=precision == "bf16", fp16=precision == "fp16")
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        return trainer.train().metrics["train_samples_per_second"]


def peer_in_tune(texts: list[str], labels: np.ndarray, batch_size: int, threads: int, device: str) -> float:
    """The same peer run as a Ray Tune trial with `threads` CPUs: what Ray itself costs a training loop (a Tune
    worker runs at Ray's worker niceness, in its own process, beside Ray's daemons)."""
    import ray
    from ray import tune

    def trial(config: dict) -> None:
        tune.report({"examples_per_s": trainer_peer(texts, labels, batch_size, threads, device=device)})

    ray.init(num_cpus=threads, num_gpus=int(device == "cuda"), include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(tune.with_resources(trial, trial_resources(threads, device)),
                               run_config=tune.RunConfig(storage_path=storage, verbose=0))
            [result] = tuner.fit()
            if result.error:
                raise result.error
            return result.metrics["examples_per_s"]
    finally:
        ray.shutdown()


def trial_resources(threads: int, device: str) -> dict:
    return {"CPU": threads, **({"GPU": 1} if device == "cuda" else {})}


def project_trial(data, batch_size: int, threads: int, device: str, **config_overrides) -> tuple[float, float]:
    """The encoder trainable as a sweep runs it (Ray Tune, one trial, `threads` CPUs): train_examples_per_s, and
    validation macro-F1 after the epoch (the sweep recipe's learning rates, so a training option that costs
    quality shows)."""
    import ray
    from ray import tune

    from trainables.encoder import train_encoder

    ray.init(num_cpus=threads, num_gpus=int(device == "cuda"), include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            config = {"model": "minilm", "model_source": offline_minilm_path(), "lr": 1e-4, "head_lr": 3e-3,
                      "pos_weight": "inverse_frequency", "batch_size": batch_size, "epochs": 1,
                      "max_length": MAX_LENGTH, "seed": 0, "thresholds": "exact", **config_overrides}
            tuner = tune.Tuner(tune.with_resources(tune.with_parameters(train_encoder, data=data),
                                                   trial_resources(threads, device)),
                               param_space=config, run_config=tune.RunConfig(storage_path=storage, verbose=0))
            [result] = tuner.fit()
            if result.error:
                raise result.error
            return result.metrics["train_examples_per_s"], result.metrics["val_macro_f1"]
    finally:
        ray.shutdown()


# Not an option here: torch.compile of the model. Measured with the trial's bf16 training step (MiniLM, batch 32, 2
# threads, 63 steps of real length-grouped batches interleaved with eager ones, 6 Dec 2026): no faster than eager in
# steady state (0.96x with static shapes, 1.00x with dynamic=True) after 45 s (static) to 2 min (dynamic) of
# compilation in a fresh process and 4-6 s more for each new trial in the same process (a reused Tune worker).
CPU_DEFAULT = BUDGETS["cpu"].encoder_training
TRIAL_OPTIONS = {
    "this project's trial, cpu budget default in fp32 (cpu_bf16 off)": {**CPU_DEFAULT, "cpu_bf16": False},
    "this project's trial, bf16, dense, dropout 0.1 (the trainable's defaults)": {},
    "this project's trial, bf16, sparse word-embedding updates": {"word_embedding_updates": "sparse"},
    "this project's trial, bf16, dropout 0": {"dropout": 0.0},
    "this project's trial, cpu budget default (bf16, sparse, dropout 0)": CPU_DEFAULT,
}
EVAL_BATCHES = (64, 128, 256)


def inference_rates(texts: list[str], threads: int, device: str) -> list[tuple[int, str, float]]:
    """(eval batch, dtype, examples/s) of the trial's prediction loop over `texts`, fp32 and mixed-precision
    autocast interleaved per batch size so that drift in the machine's speed hits both alike."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.encoder import collate

    torch.set_num_threads(threads)
    ids = AutoTokenizer.from_pretrained(offline_minilm_path())(texts, truncation=True, max_length=MAX_LENGTH)[
        "input_ids"]
    order = np.argsort(-np.array([len(row) for row in ids]), kind="stable")
    model = AutoModelForSequenceClassification.from_pretrained(offline_minilm_path(), num_labels=28).eval()
    model.to(device)
    mixed = mixed_precision(device)
    rates = []
    for batch in EVAL_BATCHES:
        for dtype in ("fp32", mixed):
            started = time.perf_counter()
            with torch.no_grad(), torch.autocast(device, dtype=getattr(torch, MIXED_DTYPES[mixed]),
                                                 enabled=dtype != "fp32"):
                for start in range(0, len(order), batch):
                    model(**collate(ids, order[start:start + batch], 0, torch.device(device))).logits.float()
            synchronize(device)
            rates.append((batch, dtype, len(order) / (time.perf_counter() - started)))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=2, help="interleaved rounds of every trainer (medians)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where everything trains (default auto: cuda where torch finds it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    mixed = mixed_precision(device)
    options = {name: config for name, config in TRIAL_OPTIONS.items() if device == "cpu" or "cpu_bf16" not in config}

    data = load_dataset("goemotions", args.data_dir).subsample(args.rows, 1000, 200, seed=0)
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(offline_minilm_path())
    lengths = np.array([len(ids) for ids in tokenizer(data.train.texts, truncation=True, max_length=MAX_LENGTH)[
        "input_ids"]])
    # the trial's first epoch's batches (seed 0, epoch 0) and so its mean padded length
    padded = float(np.mean([lengths[batch].max() for batch in length_grouped_batches(
        lengths, args.batch_size, seed=0)]))
    config = AutoConfig.from_pretrained(offline_minilm_path(), num_labels=data.num_labels)
    shapes = matmul_weights(AutoModelForSequenceClassification.from_config(config))
    weights = sum(fan_in * fan_out for fan_in, fan_out in shapes)
    tokens = round(args.batch_size * padded)
    rate, rate_mixed = (gemm_rate(shapes, tokens, getattr(torch, MIXED_DTYPES[precision]), device=device)
                       for precision in ("fp32", mixed))
    limit, limit_mixed = (r / (6 * weights * padded) for r in (rate, rate_mixed))

    texts, labels = data.train.texts, data.train.labels
    runs = {"fp32 peer": [], "mixed peer": [], **{name: [] for name in options}}
    f1s = {name: [] for name in options}
    for _ in range(args.pairs):  # interleaved: each round runs every trainer once
        runs["fp32 peer"].append(trainer_peer(texts, labels, args.batch_size, args.threads, device=device))
        runs["mixed peer"].append(trainer_peer(texts, labels, args.batch_size, args.threads, mixed, device))
        for name, config in options.items():
            speed, f1 = project_trial(data, args.batch_size, args.threads, device, **config)
            runs[name].append(speed)
            f1s[name].append(f1)
    speeds = {name: statistics.median(values) for name, values in runs.items()}
    peer, peer_mixed = speeds["fp32 peer"], speeds["mixed peer"]
    peer_tune = peer_in_tune(texts, labels, args.batch_size, args.threads, device)
    validation_texts = load_dataset("goemotions", args.data_dir).validation.texts
    inference = inference_rates(validation_texts, args.threads, device)

    where = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(f"# training throughput: all-MiniLM-L6-v2 on {args.rows:,} GoEmotions rows, batch {args.batch_size}, "
          f"1 epoch, {args.threads} threads, {where}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# GEMM limits: fp32 {rate / 1e9:.0f} GFLOP/s, {mixed} {rate_mixed / 1e9:.0f} GFLOP/s on the model's shapes "
          f"x {tokens} tokens; {6 * weights / 1e6:.0f} MFLOP per token; mean padded length {padded:.1f} -> fp32 "
          f"{limit:.0f}, {mixed} {limit_mixed:.0f} examples/s")
    print(f"# medians of {args.pairs} interleaved rounds (each run: " + "; ".join(
        f"{name} {', '.join(f'{v:.1f}' for v in values)}" for name, values in runs.items()) + ")")
    print(f"| trainer | train examples/s | vs HF Trainer fp32 | vs HF Trainer {mixed} | % of fp32 / {mixed} GEMM "
          f"limit | val macro-F1 (1,000 rows) |")
    print("|---|---|---|---|---|---|")

    def row(name: str, speed: float, f1: str = "") -> None:
        print(f"| {name} | {speed:.1f} | {speed / peer:.2f}x | {speed / peer_mixed:.2f}x | "
              f"{100 * speed / limit:.0f}% / {100 * speed / limit_mixed:.0f}% | {f1} |")

    row("HF Trainer, group_by_length, fp32 (peer)", peer)
    row(f"HF Trainer, group_by_length, {mixed}=True (peer)", peer_mixed)
    row("the fp32 peer inside a Ray Tune trial (one run)", peer_tune)
    for name in options:
        row(name, speeds[name], " / ".join(f"{f1:.4f}" for f1 in f1s[name]))
    default = speeds[next(name for name, config in options.items() if config is CPU_DEFAULT)]
    print(f"targets: default trial >= 1.3x the {mixed} peer (ratio of medians): {default / peer_mixed:.2f}x, "
          f"{100 * default / limit_mixed:.0f}% of the {mixed} limit; Ray's cost (peer / peer in Tune): "
          f"{peer / peer_tune:.2f}, target <= 1.10")
    print(f"\n# inference (the trial's predict: length-sorted batches), all {len(validation_texts):,} validation rows")
    print(f"| eval batch | fp32 examples/s | {mixed} examples/s |")
    print("|---|---|---|")
    for batch in EVAL_BATCHES:
        fp32, fast = (rate for size, dtype, rate in inference if size == batch)
        print(f"| {batch} | {fp32:.0f} | {fast:.0f} |")


if __name__ == "__main__":
    main()
