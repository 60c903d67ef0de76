"""What each training option costs per step, without Ray or the machine's drift between runs: the encoder trial's
bf16 training step (its model loading, optimizer, gradient clipping and batches) for several options side by side in
one process, interleaved step by step on the same real GoEmotions length-grouped batches (the order rotates each
step; the first batches warm every shape up untimed). Prints each option's total and median step time and its
speed against the first option.

    python -m bench.train_step_options --data-dir ../shared/data/goemotions [--rows 2000] [--batch-size 32]
        [--threads 2]

bench/throughput.py compares whole epochs against the HF Trainer; this isolates one option from another.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainables.data import load_dataset
from trainables.encoder import DEFAULTS, collate, length_grouped_batches, token_rows, tokenize_splits
from trainables.encoder_model import load_encoder
from trainables.models import offline_minilm_path
from trainables.optimizers import build_optimizer, clip_grad_norm_

# config overrides, and the attention implementation (None: what load_encoder picks: eager on CPU)
OPTIONS = {
    "dense, dropout 0.1, SDPA (before 6 Dec)": ({"word_embedding_updates": "dense", "dropout": None}, "sdpa"),
    "dense, dropout 0.1": ({"word_embedding_updates": "dense", "dropout": None}, None),
    "sparse, dropout 0.1": ({"word_embedding_updates": "sparse", "dropout": None}, None),
    "dense, dropout 0": ({"word_embedding_updates": "dense", "dropout": 0.0}, None),
    "sparse, dropout 0": ({"word_embedding_updates": "sparse", "dropout": 0.0}, None),
    "sparse, dropout 0, SDPA": ({"word_embedding_updates": "sparse", "dropout": 0.0}, "sdpa"),
}
WARMUP_BATCHES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_dataset("goemotions", args.data_dir).subsample(args.rows, 200, 200, seed=0)
    config = {**DEFAULTS, "model": "minilm", "model_source": offline_minilm_path(), "lr": 1e-4, "head_lr": 3e-3}
    tokens = tokenize_splits(data, config, ("train",))
    ids, lengths = token_rows(tokens["train"])
    labels = torch.tensor(data.train.labels, dtype=torch.float32)
    device = torch.device("cpu")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    trainers = {}
    for name, (overrides, attention) in OPTIONS.items():
        model = load_encoder({**config, **overrides}, data, device)
        if attention:
            model.set_attn_implementation(attention)
        trainers[name] = (model.train(), build_optimizer(model, {**config, **overrides}, qlora=False))

    def step(model, optimizer, indices) -> None:
        """The trial's step (trainables/encoder.py), fp32 loss and all."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**collate(ids, indices, tokens["pad_id"], device)).logits.float()
        loss = loss_fn(logits, labels[indices])
        loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm_(optimizer, 1.0)
        optimizer.step()

    names = list(trainers)
    times = {name: [] for name in names}
    for number, indices in enumerate(length_grouped_batches(lengths, args.batch_size, seed=0)):
        rotated = names[number % len(names):] + names[:number % len(names)]
        for name in rotated:
            started = time.perf_counter()
            step(*trainers[name], indices)
            if number >= WARMUP_BATCHES:
                times[name].append(time.perf_counter() - started)

    first = sum(times[names[0]])
    print(f"# bf16 training steps, all-MiniLM-L6-v2, {args.rows:,} GoEmotions rows, batch {args.batch_size}, "
          f"{args.threads} threads, {len(times[names[0]])} timed steps each, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| option | total s | median ms/step | speed vs first |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {sum(times[name]):.2f} | {1000 * statistics.median(times[name]):.1f} | "
              f"{first / sum(times[name]):.3f}x |")


if __name__ == "__main__":
    main()
