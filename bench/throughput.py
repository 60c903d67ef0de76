"""Training throughput side by side, in one run: the HF Trainer at its best settings (length-grouped batches, in
fp32 and with its own bf16 mixed precision) and this project's encoder trial, on the same GoEmotions rows, batch
size and threads, over whole epochs, interleaved (`--pairs` rounds of every trainer, medians reported: the machine
is shared and its speed drifts), against the machine's fp32 and bf16 GEMM limits for the model's shapes (measured
in the same run). Prints a table.

    python -m bench.throughput --data-dir ../shared/data/goemotions [--rows 8000] [--batch-size 32] [--threads 2]
        [--pairs 2]

The trial is the real one: trainables.encoder.train_encoder through Ray Tune with --threads CPUs, its
`train_examples_per_s` (the epoch's training loop, from its first batch to its last optimizer step). The peer is
`transformers.Trainer` with `train_sampling_strategy="group_by_length"`, its `train_samples_per_second`. The limit:
training costs 6 FLOP per matmul weight per token (forward 2, backward 4); the GEMM rate is measured on the
model's own linear-layer shapes (forward, input-gradient and weight-gradient products) at the epoch's mean padded
batch, so limit examples/s = rate / (6 x matmul weights x mean padded length); in bf16 on a CPU with AMX the
matrix units are several times faster, so a bf16 trial is held to the bf16 limit.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from trainables.data import load_dataset
from trainables.encoder import length_grouped_batches
from trainables.models import offline_minilm_path

LR, MAX_LENGTH = 5e-5, 64


def matmul_weights(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear the training step multiplies by (the word embeddings are a lookup, not a GEMM)."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def gemm_rate(shapes: list[tuple[int, int]], tokens: int, dtype: torch.dtype = torch.float32, repeats: int = 5
              ) -> float:
    """FLOP/s of one training step's matrix products for `tokens` rows in `dtype`: for each Linear, X@W, dY@W^T,
    X^T@dY."""
    pairs = []
    for fan_in, fan_out in shapes:
        x, w, dy = (torch.randn(tokens, fan_in, dtype=dtype), torch.randn(fan_in, fan_out, dtype=dtype),
                    torch.randn(tokens, fan_out, dtype=dtype))
        pairs += [(x, w), (dy, w.T.contiguous()), (x.T.contiguous(), dy)]
    flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)
    for a, b in pairs:  # warm-up
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        for a, b in pairs:
            a @ b
    return flop * repeats / (time.perf_counter() - started)


def trainer_peer(texts: list[str], labels: np.ndarray, batch_size: int, threads: int, bf16: bool = False) -> float:
    """HF Trainer, length-grouped batches, one epoch, in fp32 or with its own bf16 mixed precision
    (`TrainingArguments(bf16=True)`: autocast on CPU, as a skilled user on this CPU would set it): its
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
                                 train_sampling_strategy="group_by_length", use_cpu=True, report_to=[],
                                 save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0, bf16=bf16)
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        return trainer.train().metrics["train_samples_per_second"]


def peer_in_tune(texts: list[str], labels: np.ndarray, batch_size: int, threads: int) -> float:
    """The same peer run as a Ray Tune trial with `threads` CPUs: what Ray itself costs a training loop (a Tune
    worker runs at Ray's worker niceness, in its own process, beside Ray's daemons)."""
    import ray
    from ray import tune

    def trial(config: dict) -> None:
        tune.report({"examples_per_s": trainer_peer(texts, labels, batch_size, threads)})

    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(tune.with_resources(trial, {"CPU": threads}),
                               run_config=tune.RunConfig(storage_path=storage, verbose=0))
            [result] = tuner.fit()
            if result.error:
                raise result.error
            return result.metrics["examples_per_s"]
    finally:
        ray.shutdown()


def project_trial(data, batch_size: int, threads: int, **config_overrides) -> tuple[float, float]:
    """The encoder trainable as a sweep runs it (Ray Tune, one trial, `threads` CPUs): train_examples_per_s, and
    validation macro-F1 after the epoch (the sweep recipe's learning rates, so a training option that costs
    quality shows)."""
    import ray
    from ray import tune

    from trainables.encoder import train_encoder

    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            config = {"model": "minilm", "model_source": offline_minilm_path(), "lr": 1e-4, "head_lr": 3e-3,
                      "pos_weight": "inverse_frequency", "batch_size": batch_size, "epochs": 1,
                      "max_length": MAX_LENGTH, "seed": 0, "thresholds": "exact", **config_overrides}
            tuner = tune.Tuner(tune.with_resources(tune.with_parameters(train_encoder, data=data), {"CPU": threads}),
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
TRIAL_OPTIONS = {
    "this project's trial, fp32 (cpu_bf16 off)": {"cpu_bf16": False},
    "this project's trial (default: bf16 autocast where the CPU has it)": {},
    "this project's trial, sparse word-embedding updates": {"word_embedding_updates": "sparse"},
    "this project's trial, word embeddings frozen": {"word_embedding_updates": "frozen"},
}
EVAL_BATCHES = (64, 128, 256)


def inference_rates(texts: list[str], threads: int) -> list[tuple[int, str, float]]:
    """(eval batch, dtype, examples/s) of the trial's prediction loop over `texts`, fp32 and bf16 autocast
    interleaved per batch size so that drift in the machine's speed hits both alike."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.encoder import collate

    torch.set_num_threads(threads)
    ids = AutoTokenizer.from_pretrained(offline_minilm_path())(texts, truncation=True, max_length=MAX_LENGTH)[
        "input_ids"]
    order = np.argsort(-np.array([len(row) for row in ids]), kind="stable")
    model = AutoModelForSequenceClassification.from_pretrained(offline_minilm_path(), num_labels=28).eval()
    rates = []
    for batch in EVAL_BATCHES:
        for dtype in ("fp32", "bf16"):
            started = time.perf_counter()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                for start in range(0, len(order), batch):
                    model(**collate(ids, order[start:start + batch], 0, torch.device("cpu"))).logits.float()
            rates.append((batch, dtype, len(order) / (time.perf_counter() - started)))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=2, help="interleaved rounds of every trainer (medians)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
    rate, rate_bf16 = gemm_rate(shapes, tokens), gemm_rate(shapes, tokens, torch.bfloat16)
    limit, limit_bf16 = (r / (6 * weights * padded) for r in (rate, rate_bf16))

    texts, labels = data.train.texts, data.train.labels
    runs = {"fp32 peer": [], "bf16 peer": [], **{name: [] for name in TRIAL_OPTIONS}}
    f1s = {name: [] for name in TRIAL_OPTIONS}
    for _ in range(args.pairs):  # interleaved: each round runs every trainer once
        runs["fp32 peer"].append(trainer_peer(texts, labels, args.batch_size, args.threads))
        runs["bf16 peer"].append(trainer_peer(texts, labels, args.batch_size, args.threads, bf16=True))
        for name, options in TRIAL_OPTIONS.items():
            speed, f1 = project_trial(data, args.batch_size, args.threads, **options)
            runs[name].append(speed)
            f1s[name].append(f1)
    speeds = {name: statistics.median(values) for name, values in runs.items()}
    peer, peer_bf16 = speeds["fp32 peer"], speeds["bf16 peer"]
    peer_tune = peer_in_tune(texts, labels, args.batch_size, args.threads)
    validation_texts = load_dataset("goemotions", args.data_dir).validation.texts
    inference = inference_rates(validation_texts, args.threads)

    print(f"# training throughput: all-MiniLM-L6-v2 on {args.rows:,} GoEmotions rows, batch {args.batch_size}, "
          f"1 epoch, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# GEMM limits: fp32 {rate / 1e9:.0f} GFLOP/s, bf16 {rate_bf16 / 1e9:.0f} GFLOP/s on the model's shapes x "
          f"{tokens} tokens; {6 * weights / 1e6:.0f} MFLOP per token; mean padded length {padded:.1f} -> fp32 "
          f"{limit:.0f}, bf16 {limit_bf16:.0f} examples/s")
    print(f"# medians of {args.pairs} interleaved rounds (each run: " + "; ".join(
        f"{name} {', '.join(f'{v:.1f}' for v in values)}" for name, values in runs.items()) + ")")
    print("| trainer | train examples/s | vs HF Trainer fp32 | vs HF Trainer bf16 | % of fp32 / bf16 GEMM limit "
          "| val macro-F1 (1,000 rows) |")
    print("|---|---|---|---|---|---|")

    def row(name: str, speed: float, f1: str = "") -> None:
        print(f"| {name} | {speed:.1f} | {speed / peer:.2f}x | {speed / peer_bf16:.2f}x | "
              f"{100 * speed / limit:.0f}% / {100 * speed / limit_bf16:.0f}% | {f1} |")

    row("HF Trainer, group_by_length, fp32 (peer)", peer)
    row("HF Trainer, group_by_length, bf16=True (peer)", peer_bf16)
    row("the fp32 peer inside a Ray Tune trial (one run)", peer_tune)
    for name in TRIAL_OPTIONS:
        row(name, speeds[name], " / ".join(f"{f1:.4f}" for f1 in f1s[name]))
    print(f"targets: default trial >= 1.3x the bf16 peer (ratio of medians); Ray's cost (peer / peer in Tune): "
          f"{peer / peer_tune:.2f}, target <= 1.10")
    print(f"\n# inference (the trial's predict: length-sorted batches), all {len(validation_texts):,} validation rows")
    print("| eval batch | fp32 examples/s | bf16 examples/s |")
    print("|---|---|---|")
    for batch in EVAL_BATCHES:
        fp32, bf16 = (rate for size, dtype, rate in inference if size == batch)
        print(f"| {batch} | {fp32:.0f} | {bf16:.0f} |")


if __name__ == "__main__":
    main()
