"""Ray Tune function trainable: fine-tune one encoder with a classification head, one epoch per report.

Reads top to bottom: config → data → model → optimizer → (resume) → epochs of train / validate / choose
thresholds / checkpoint + report. Multi-label data trains with sigmoid + BCE (optional inverse-frequency
pos_weight) and tunes decision thresholds on validation; single-label data trains with softmax + CE.

Three training variants (baseline, qat, qlora: trainables/encoder_model.py), compared side by side by
sweeps/emotion6.py.

Trials train in bf16/fp16 where the device has it (QAT in fp32), but every probability that chooses thresholds or
reports a score is computed in fp32 without autocast, as analysis.predict computes it from the export: the same model
gives the same labels in both, and predictions.npz and each reported result record it (`predict_dtype`; QLoRA also
`body_compute_dtype`, the dtype its 4-bit body was loaded, quantized and trained in, which the export loads it in).

Every checkpoint holds the full training state (so a retried or resumed trial continues where it stopped)
and that epoch's validation probabilities; a QAT checkpoint also its fake quantization's scales and observers
(`FAKE_QUANT_STATE`), as that epoch's predictions used them. Trials never predict the test split: only the
checkpoints the analysis reports need it, so once the search and the confirmations end, the sweep has
`predict_test_split` predict it for those alone (trainables/checkpoint_predictions.py), with `predict`, the function
a trial validates with, from the checkpoint a trial saved: the same probabilities the trial would have computed. Test
data never influences anything a trial decides.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import nullcontext
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from ray import tune
from transformers import AutoTokenizer
from transformers.trainer_pt_utils import get_length_grouped_indices

from trainables.checkpoints import TRAINING_STATE, load_training_state
from trainables.encoder_model import (MODEL_DEFAULTS, VARIANTS, body_dtype, four_bit_in_fp32, load_encoder, save_model,
                                      train_dtype)
from trainables.device import dtype_name, seed_trial, trial_device, trial_resources
from trainables.metrics import validation_scores
from trainables.models import TrialCost
from trainables.optimizers import build_optimizer, clip_grad_norm_, linear_warmup_schedule
from trainables.rungs import RUNG_METRIC, rung_ends, rung_subset, rung_subset_rows
from trainables.splits import EmotionData
from trainables.tweets import preprocess

DEFAULTS = {
    **MODEL_DEFAULTS,  # variant (baseline | qat | qlora) and the qlora adapters' shape: trainables/encoder_model.py
    "lr": 5e-5,  # encoder body (baseline, qat)
    "head_lr": 1e-3,  # the freshly initialised classification head learns faster than the body
    "batch_size": 32,
    "eval_batch_size": 64,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "epochs": 2,
    "rungs_per_epoch": 1,  # reports per epoch: >1 adds validation-subset rungs inside it (trainables/rungs.py)
    "max_length": 64,
    "grad_clip": 1.0,
    "pos_weight": "none",  # none | inverse_frequency
    "pos_weight_clip": 30.0,
    "thresholds": "exact",  # exact | optuna
    "metric": "macro_f1",  # macro_f1 | micro_f1 | jaccard: thresholds are tuned for it; reported as val_score
    # dense | sparse | frozen: how the word-embedding matrix trains, half of a small encoder's weights (MiniLM: 11.7M
    # of 22.7M) of which a batch touches a few hundred rows (trainables/optimizers.py)
    "word_embedding_updates": "dense",
    # On a CPU with native bf16 (AMX, AVX512-BF16) the training steps run under bf16 autocast, as on Ampere GPUs:
    # 1.6x the examples/s at the same F1 (docs/benchmarks.md). The weights stay fp32, and so do predictions (on GPUs
    # too), so the saved probabilities are what the fp32 model gives anywhere. Ignored by the qat variant (fp32 on
    # every device, train_dtype), by qlora (its 4-bit layers run in fp32 on CPU) and on CPUs without native bf16.
    "cpu_bf16": True,
    "preprocess": "none",  # none | tweet (trainables.tweets.PREPROCESSORS), applied to texts before tokenizing
    "lora_lr": 5e-4,  # qlora: the adapters (a low-rank update learns best at a higher rate than full weights)
    "seed": 0,
    "deterministic": False,  # --deterministic: reproducible kernels (trainables.device.seed_trial)
}
VARIANT_ONLY = {"lr": ("baseline", "qat"), "lora_lr": ("qlora",), "lora_r": ("qlora",), "lora_alpha": ("qlora",),
                "lora_dropout": ("qlora",)}
SPLITS = ("train", "validation", "test")


def param_applies(key: str, fixed: dict) -> bool:
    """Whether a searched parameter matters for the trials' variant (LoRA rank does not for a full fine-tune)."""
    return fixed.get("variant", DEFAULTS["variant"]) in VARIANT_ONLY.get(key, VARIANTS)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Batches of similar-length examples, so padding shrinks to nearly the true length: the HF Trainer's
    group_by_length order (random megabatches of up to 50 batches, each sorted by length), seeded, so a resumed
    epoch repeats its batches."""
    order = get_length_grouped_indices(lengths.tolist(), batch_size, generator=torch.Generator().manual_seed(seed))
    return [np.array(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def tokenization_key(config: dict) -> str:
    """What a split's token ids depend on: the tokenizer (source and revision), the truncation length and the text
    preprocessing."""
    config = {**DEFAULTS, **config}
    return json.dumps([str(config["model_source"]), config.get("model_revision"), int(config["max_length"]),
                       config["preprocess"]])


def tokenize_splits(data: EmotionData, config: dict, splits: tuple[str, ...] = SPLITS) -> dict:
    """The splits' token ids (by default every split's), each as one flat int32 array and each row's length (one
    compact object that Ray's object store shares between trials without copying), and the tokenizer's padding id."""
    config = {**DEFAULTS, **config}
    tokenizer = AutoTokenizer.from_pretrained(config["model_source"], revision=config.get("model_revision"))
    tokens = {"pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0}
    for name in splits:
        ids = tokenizer(preprocess(getattr(data, name).texts, config["preprocess"]), truncation=True,
                        max_length=int(config["max_length"]), return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        lengths = np.array([len(row) for row in ids], dtype=np.int64)
        tokens[name] = (np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum())), lengths)
    return tokens


def token_rows(split_tokens: tuple[np.ndarray, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """A split's rows of token ids (views into the flat array) and their lengths."""
    flat, lengths = split_tokens
    return np.split(flat, np.cumsum(lengths)[:-1]), lengths


def collate(input_ids: list, indices: np.ndarray, pad_id: int, device: torch.device) -> dict:
    """Pad a batch to its own longest sequence (dynamic padding). On a GPU the batch goes through pinned host
    memory, so its copy overlaps the previous step's kernels instead of stalling them."""
    rows = [input_ids[i] for i in indices]
    lengths = np.array([len(row) for row in rows])
    ids = np.full((len(rows), lengths.max()), pad_id, dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = row
    mask = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
    return {"input_ids": to_device(torch.from_numpy(ids), device),
            "attention_mask": to_device(torch.from_numpy(mask), device)}


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def loss_value(loss: torch.Tensor, epoch: int) -> float:
    """The step's loss as a float, or FloatingPointError when it is not finite: one device sync per step, shared by
    the check and the epoch's running loss."""
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"epoch {epoch + 1}: training loss is {value}")
    return value


def predict(model: torch.nn.Module, input_ids: list[np.ndarray], lengths: np.ndarray, *, num_labels: int,
            multi_label: bool, pad_id: int, device: torch.device, batch_size: int, four_bit: bool,
            labels: torch.Tensor | None = None, loss_fn: torch.nn.Module | None = None) -> tuple[np.ndarray, float]:
    """Probabilities in input order (batches sorted by length for speed) and, given `labels`, the mean `loss_fn`
    loss; in fp32 without autocast whatever the training precision (a QLoRA body's 4-bit layers too: `four_bit`), so
    thresholds and scores come from what analysis.predict computes. A trial validates with it;
    `predict_test_split` predicts a checkpoint's test split with it."""
    model.eval()
    order = np.argsort(-lengths, kind="stable")
    probs = np.zeros((len(input_ids), num_labels), dtype=np.float32)
    total_loss = 0.0
    with torch.no_grad(), four_bit_in_fp32(model) if four_bit else nullcontext():
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            logits = model(**collate(input_ids, indices, pad_id, device)).logits.float()
            if labels is not None:
                total_loss += loss_fn(logits, labels[indices].to(device)).item() * len(indices)
            scores = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            probs[indices] = scores.cpu().numpy()
    return probs, total_loss / len(input_ids)


def predict_test_split(config: dict, data: EmotionData, checkpoint: Path, device: torch.device,
                       shared_tokens: dict | None = None) -> dict[str, np.ndarray]:
    """What a checkpoint's predictions.npz gains once the analysis reports it: `test_probs` (and `test_labels` where
    the split has labels), predicted from its saved model as its trial predicted validation. `shared_tokens`: the
    sweep's tokenization (tokenize_splits), when the caller has it."""
    config = {**DEFAULTS, **config}
    tokens = (shared_tokens or {}).get(tokenization_key(config)) or tokenize_splits(data, config, ("test",))
    test_ids, test_lengths = token_rows(tokens["test"])
    model = load_encoder(config, data, device, checkpoint / "model")
    probs, _ = predict(model, test_ids, test_lengths, num_labels=data.num_labels, multi_label=data.multi_label,
                       pad_id=tokens["pad_id"], device=device, batch_size=int(config["eval_batch_size"]),
                       four_bit=config["variant"] == "qlora")
    return {"test_probs": probs, **({"test_labels": data.test.labels} if data.test.labels is not None else {})}


def train_encoder(config: dict, data: EmotionData, shared_tokens: dict | None = None) -> None:
    config = {**DEFAULTS, **config}
    cost = TrialCost()  # from the trial's start: loading and tokenizing cost too
    seed = int(config["seed"])
    seed_trial(seed, bool(config["deterministic"]))  # before CUDA: cuBLAS reads its workspace setting once
    device = trial_device(*trial_resources())  # what Ray granted: a GPU share, or CPUs only
    amp_dtype = train_dtype(device, config["variant"], bool(config["cpu_bf16"]))
    multi_label = data.multi_label

    # Data: every split's token ids, shared by the sweep when it tokenized them for this tokenizer (the object
    # store holds them once for all trials), else tokenized here; batches are padded per batch. `phases` times what
    # a trial spends outside its training loop (reported with every epoch, so a sweep's overhead per trial can be
    # read off its results).
    phases = {"tokenize_s": -time.perf_counter()}
    tokens = ((shared_tokens or {}).get(tokenization_key(config))
              or tokenize_splits(data, config, ("train", "validation")))
    pad_id = tokens["pad_id"]
    (train_ids, train_lengths), (val_ids, val_lengths) = (token_rows(tokens[name]) for name in ("train", "validation"))
    label_dtype = torch.float32 if multi_label else torch.long
    train_labels = torch.tensor(data.train.labels, dtype=label_dtype)
    val_labels = torch.tensor(data.validation.labels, dtype=label_dtype)

    # Model: a pretrained body + a new head sized for this label set; a retried or restored trial
    # continues from its last checkpoint instead.
    phases["tokenize_s"] += time.perf_counter()
    phases["load_s"] = -time.perf_counter()
    checkpoint = tune.get_checkpoint()
    resume_dir = Path(checkpoint.to_directory()) if checkpoint else None
    if resume_dir and not (resume_dir / TRAINING_STATE).exists():
        return  # restored from its last epoch's checkpoint: the trial had finished when its driver stopped
    model = load_encoder(config, data, device, resume_dir / "model" if resume_dir else None)
    qlora = config["variant"] == "qlora"
    # how the saved probabilities were computed: analysis.export copies it into decision.json
    precision = {"predict_dtype": dtype_name(torch.float32),
                 **({"body_compute_dtype": dtype_name(body_dtype(device))} if qlora else {})}
    trainable_params, all_params = (model.get_nb_trainable_parameters() if qlora else  # 4-bit counted unpacked
                                    (sum(p.numel() for p in model.parameters()),) * 2)
    params_m, trainable_params_m = all_params / 1e6, trainable_params / 1e6
    phases["load_s"] += time.perf_counter()

    if multi_label:
        pos_weight = None
        if config["pos_weight"] == "inverse_frequency":
            positives = train_labels.sum(dim=0).clamp(min=1.0)
            pos_weight = ((len(train_labels) - positives) / positives).clamp(max=config["pos_weight_clip"])
            pos_weight = pos_weight.to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    else:
        loss_fn = torch.nn.CrossEntropyLoss()

    # Optimizer: the head is everything outside the pretrained body, with its own learning rate. QLoRA trains
    # only the adapters (at lora_lr) and the head. The word embeddings train densely, sparsely or not at all.
    optimizer = build_optimizer(model, config, qlora)
    epochs = int(config["epochs"])
    steps_per_epoch = math.ceil(len(train_ids) / int(config["batch_size"]))
    scheduler = linear_warmup_schedule(optimizer, int(config["warmup_ratio"] * steps_per_epoch * epochs),
                                       steps_per_epoch * epochs)

    start_epoch, best_val = 0, -1.0
    if resume_dir:
        state = load_training_state(resume_dir / TRAINING_STATE, device)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_val = state["epoch"] + 1, state["best_val"]
        cost.carried_wall_s = state["trial_wall_s"]

    # Rungs inside an epoch (trainables/rungs.py): a report after each R-th of its batches, scored on a fixed
    # validation subset and without a checkpoint, so ASHA can stop a poor trial early in its first epoch.
    rungs_per_epoch = int(config["rungs_per_epoch"])
    batch_ends = rung_ends(steps_per_epoch, rungs_per_epoch)
    subset = rung_subset(data.validation.labels, rung_subset_rows(len(val_ids), len(train_ids), rungs_per_epoch))
    subset_ids, subset_lengths = [val_ids[i] for i in subset], val_lengths[subset]
    subset_labels = data.validation.labels[subset]

    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    for epoch in range(start_epoch, epochs):
        model.train()
        started, seen, train_loss = time.perf_counter(), 0, 0.0
        batches = length_grouped_batches(train_lengths, int(config["batch_size"]), seed * 1000 + epoch)
        for batch, indices in enumerate(batches, start=1):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(**collate(train_ids, indices, pad_id, device)).logits.float()
            loss = loss_fn(logits, to_device(train_labels[indices], device))
            value = loss_value(loss, epoch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            clip_grad_norm_(optimizer, config["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            train_loss += value * len(indices)
            seen += len(indices)
            if batch in batch_ends:
                scoring = time.perf_counter()
                subset_probs, _ = predict(model, subset_ids, subset_lengths, num_labels=data.num_labels,
                                          multi_label=multi_label, pad_id=pad_id, device=device,
                                          batch_size=int(config["eval_batch_size"]), four_bit=qlora)
                subset_scores, _ = validation_scores(subset_probs, subset_labels, multi_label, config["metric"],
                                                     config["thresholds"], seed)
                model.train()
                tune.report({RUNG_METRIC: subset_scores["val_score"], "train_loss": train_loss / seen,
                             "epoch": round(epoch + batch / steps_per_epoch, 3), **cost.metrics()})
                started += time.perf_counter() - scoring  # train_examples_per_s counts training only
        train_seconds = time.perf_counter() - started

        phases["val_s"] = -time.perf_counter()
        val_probs, val_loss = predict(model, val_ids, val_lengths, num_labels=data.num_labels, multi_label=multi_label,
                                      pad_id=pad_id, device=device, batch_size=int(config["eval_batch_size"]),
                                      four_bit=qlora, labels=val_labels, loss_fn=loss_fn)
        phases["val_s"] += time.perf_counter()
        y_val = data.validation.labels
        metrics = {"epoch": epoch + 1, "train_loss": train_loss / seen, "val_loss": val_loss,
                   "train_examples_per_s": seen / train_seconds, "params_m": params_m,
                   "trainable_params_m": trainable_params_m, "train_dtype": dtype_name(amp_dtype), **precision,
                   # and the most GPU memory this trial held so far
                   "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0}
        scores, thresholds = validation_scores(val_probs, y_val, multi_label, config["metric"], config["thresholds"],
                                               seed)
        metrics.update(scores)
        metrics[RUNG_METRIC] = metrics["val_score"]  # an epoch's rung is scored on the whole split
        arrays = {"val_probs": val_probs, "val_labels": y_val, **thresholds}
        best_val = max(best_val, metrics["val_score"])
        metrics["best_val_score"] = best_val
        metrics.update(cost.metrics())
        phases["save_s"] = -time.perf_counter()

        with tempfile.TemporaryDirectory() as directory:
            save_model(model, Path(directory) / "model", config["variant"])
            if epoch + 1 < epochs:  # what resuming needs; after the last epoch nothing resumes (2/3 of the size)
                torch.save({"optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch, "best_val": best_val,
                            "trial_wall_s": metrics["trial_wall_s"]},
                           Path(directory) / TRAINING_STATE)
            np.savez_compressed(Path(directory) / "predictions.npz", epoch=epoch + 1, metric=config["metric"],
                                val_score=metrics["val_score"], val_macro_f1=metrics["val_macro_f1"],
                                label_names=np.array(data.label_names), **precision, **arrays)
            phases["save_s"] += time.perf_counter()  # the files; Tune's copy of them into storage comes after
            metrics.update({"train_s": train_seconds, **phases})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
