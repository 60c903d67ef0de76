"""How a decoder trial scores validation (and, for the checkpoints the analysis reports, test) rows: each label
name's likelihood as the answer (generation mode), the head's sigmoid (head mode), and greedy answers parsed back to
label sets. Batches run longest first, left-padded where the model continues the prompt."""
from __future__ import annotations

import copy

import numpy as np
import torch

from trainables.encoder import to_device
from trainables.labels_text import parse_answer


def collate(rows: list[list[int]], pad_id: int, device: torch.device, left: bool = False) -> dict:
    """Pad a batch to its longest row; left padding (for generation and scoring) gets explicit positions. On a GPU
    through pinned memory, as the encoders' batches (trainables.encoder.to_device)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[r, span] = torch.tensor(row)
        mask[r, span] = 1
    return {"input_ids": to_device(ids, device), "attention_mask": to_device(mask, device)}


def label_log_likelihoods(model, prompts: list[list[int]], label_ids: list[list[int]], pad_id: int,
                          batch_size: int, label_chunk: int, device: torch.device,
                          amp_dtype: torch.dtype | None) -> np.ndarray:
    """(N, C) summed log-probability of each label name's tokens right after each prompt.

    Each prompt runs once (left-padded, so its next-token distribution scores every label's first token).
    Labels of more than one token then continue from the prompt's key/value cache, `label_chunk` labels at a
    time: the cache is copied to batch x label_chunk rows, never to batch x C (all 28 GoEmotions labels at once
    took about 22 GiB for Qwen3-0.6B), so memory does not grow with the label set. Log-probabilities are
    gathered on the device and one (batch, C) tensor per batch comes back, instead of a GPU sync per token.
    """
    first_tokens = torch.tensor([label[0] for label in label_ids], device=device)
    longer = sorted((c for c, label in enumerate(label_ids) if len(label) > 1), key=lambda c: -len(label_ids[c]))
    chunks = [longer[i:i + label_chunk] for i in range(0, len(longer), label_chunk)]  # similar lengths together
    order = np.argsort([-len(row) for row in prompts], kind="stable")
    scores = np.zeros((len(prompts), len(label_ids)), dtype=np.float32)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            inputs = collate([prompts[i] for i in indices], pad_id, device, left=True)
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            output = model(**inputs, position_ids=positions, use_cache=bool(chunks), logits_to_keep=1)
            batch_scores = torch.log_softmax(output.logits[:, -1].float(), dim=-1)[:, first_tokens]  # (B, C)
            for chunk in chunks:  # row b * k + j continues prompt b with label chunk[j]
                cache = copy.deepcopy(output.past_key_values)
                cache.batch_repeat_interleave(len(chunk))
                names = collate([label_ids[c] for c in chunk] * len(indices), pad_id, device)
                reads = names["attention_mask"][:, 1:]  # step j reads token j and scores token j + 1
                steps = torch.arange(reads.shape[1], device=device)
                logits = model(input_ids=names["input_ids"][:, :-1], past_key_values=cache,
                               attention_mask=torch.cat([inputs["attention_mask"].repeat_interleave(len(chunk), 0),
                                                         reads], dim=1),
                               position_ids=positions[:, -1:].repeat_interleave(len(chunk), 0) + 1 + steps).logits
                token_scores = torch.log_softmax(logits.float(), dim=-1).gather(
                    -1, names["input_ids"][:, 1:, None]).squeeze(-1)
                rest = token_scores.masked_fill(reads == 0, 0.0).sum(dim=1)
                batch_scores[:, chunk] += rest.view(len(indices), len(chunk))
            scores[indices] = batch_scores.cpu().numpy()
    return scores


def head_probs(model, input_ids: list[list[int]], num_labels: int, pad_id: int, batch_size: int,
               device: torch.device, amp_dtype: torch.dtype | None) -> np.ndarray:
    model.eval()
    order = np.argsort([-len(row) for row in input_ids], kind="stable")
    probs = np.zeros((len(input_ids), num_labels), dtype=np.float32)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            logits = model(**collate([input_ids[i] for i in indices], pad_id, device)).logits.float()
            probs[indices] = torch.sigmoid(logits).cpu().numpy()
    return probs


def generate(model, tokenizer, prompts: list[list[int]], label_names: list[str], max_new_tokens: int,
             batch_size: int, device: torch.device, amp_dtype: torch.dtype | None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy answers parsed to (multi-hot predictions, parsed-or-not per row)."""
    model.eval()
    order = np.argsort([-len(row) for row in prompts], kind="stable")
    predicted = np.zeros((len(prompts), len(label_names)), dtype=np.float32)
    parsed = np.zeros(len(prompts), dtype=bool)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            inputs = collate([prompts[i] for i in indices], tokenizer.pad_token_id, device, left=True)
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, text in zip(indices, texts):
                predicted[i], parsed[i] = parse_answer(text, label_names)
    return predicted, parsed
