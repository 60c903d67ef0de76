"""Training throughput of all-MiniLM-L6-v2 on real GoEmotions: fixed length 64 vs dynamic padding with
length-grouped batches (what trainables/encoder.py does). Prints a table.

    python bench/throughput.py --data-dir ../shared/data/goemotions [--steps 30] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trainables.data import load_dataset
from trainables.encoder import collate, length_grouped_batches
from trainables.models import offline_minilm_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_dataset("goemotions", args.data_dir)
    path = offline_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(data.train.texts, truncation=True, max_length=64, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    lengths = np.array([len(row) for row in ids])
    labels = torch.tensor(data.train.labels)
    rng = np.random.default_rng(0)

    def fixed_batches():
        order = rng.permutation(len(ids))
        return [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    def fixed_collate(indices):
        batch = tokenizer([data.train.texts[i] for i in indices], truncation=True, max_length=64,
                          padding="max_length", return_tensors="pt", return_token_type_ids=False)
        return dict(batch)

    rows = []
    for name, batches, make in (
        ("fixed length 64", fixed_batches(), fixed_collate),
        ("dynamic, length-grouped", length_grouped_batches(lengths, args.batch_size, rng),
         lambda idx: collate(ids, idx, tokenizer.pad_token_id, torch.device("cpu"))),
    ):
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=data.num_labels, problem_type="multi_label_classification")
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        seen, widths = 0, []
        for step, indices in enumerate(batches[: args.steps + 2]):
            if step == 2:  # two warm-up steps
                started, seen = time.perf_counter(), 0
            batch = make(indices)
            widths.append(batch["input_ids"].shape[1])
            loss = loss_fn(model(**batch).logits, labels[indices])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(indices)
        rows.append((name, seen / (time.perf_counter() - started), float(np.mean(widths[2:]))))

    print(f"# training throughput, all-MiniLM-L6-v2, batch {args.batch_size}, {args.steps} steps, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}")
    print("| batching | examples/s | mean padded length |")
    print("|---|---|---|")
    for name, speed, width in rows:
        print(f"| {name} | {speed:.1f} | {width:.1f} |")


if __name__ == "__main__":
    main()
