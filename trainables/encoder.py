"""Ray Tune function trainable: fine-tune one encoder with a classification head, one epoch per report.

Reads top to bottom: config → data → model → optimizer → (resume) → epochs of train / validate / choose
thresholds / checkpoint + report. Multi-label data trains with sigmoid + BCE (optional inverse-frequency
pos_weight) and tunes decision thresholds on validation; single-label data trains with softmax + CE.

Three training variants, chosen by `config["variant"]`, compared side by side by sweeps/emotion6.py:
- baseline: every weight fine-tuned in FP32 (bf16/fp16 autocast on GPU).
- qat: quantization-aware training for the dynamic INT8 that analysis.quantize serves with. Every Linear
  trains through torch.ao's dynamic-QAT Linear (INT8 fake quantization of its weights, straight-through
  gradients), so the weights learn to survive rounding. Checkpoints hold the plain float weights; converting
  them is `quantize_dynamic`, the same per-tensor symmetric INT8 the fake quantization simulated. Trains in fp32
  on every device (`train_dtype`).
- qlora: the body frozen in 4-bit NF4 (bitsandbytes) with LoRA adapters on the attention query/key/value
  projections and the head (with the body's pooler) trained in full (peft `modules_to_save`); checkpoints
  hold adapters and head only.

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
import logging
import math
import tempfile
import time
from contextlib import contextmanager, nullcontext
from itertools import chain
from pathlib import Path

import huggingface_hub.utils
import numpy as np
import torch
from ray import tune
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig,
                          get_linear_schedule_with_warmup)
from transformers.trainer_pt_utils import get_length_grouped_indices
from transformers.utils import logging as hf_logging

from trainables.checkpoints import TRAINING_STATE, load_training_state
from trainables.data import EmotionData, preprocess
from trainables.device import autocast_dtype, dtype_name, seed_trial, trial_device, trial_resources
from trainables.metrics import validation_scores
from trainables.models import TrialCost
from trainables.optimizers import build_optimizer, clip_grad_norm_
from trainables.rungs import RUNG_METRIC, rung_ends, rung_subset, rung_subset_rows

# transformers draws a progress bar each time a trial loads or saves weights ("Loading weights", "Writing model
# shards"): per epoch, per trial, interleaved by Ray into one console. Off; hub downloads keep theirs.
hf_logging.disable_progress_bar()
huggingface_hub.utils.enable_progress_bars()

DEFAULTS = {
    "variant": "baseline",  # baseline | qat | qlora
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
    "preprocess": "none",  # none | tweet (trainables.data.PREPROCESSORS), applied to texts before tokenizing
    "lora_lr": 5e-4,  # qlora: the adapters (a low-rank update learns best at a higher rate than full weights)
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    "seed": 0,
    "deterministic": False,  # --deterministic: reproducible kernels (trainables.device.seed_trial)
}
VARIANTS = ("baseline", "qat", "qlora")
VARIANT_ONLY = {"lr": ("baseline", "qat"), "lora_lr": ("qlora",), "lora_r": ("qlora",), "lora_alpha": ("qlora",),
                "lora_dropout": ("qlora",)}
# The attention input projections QLoRA adapts, as the BERT family, DistilBERT and newer encoders name them.
ATTENTION_QKV = ("query", "key", "value", "q_lin", "k_lin", "v_lin", "q_proj", "k_proj", "v_proj")
SPLITS = ("train", "validation", "test")
# QAT: beside a checkpoint's float weights (model/), the fake quantization's scales and weight observers. The
# observers move with every forward pass, evaluation included, so the probabilities an epoch saved depend on them.
FAKE_QUANT_STATE = "fake_quant.safetensors"


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


def fake_quantize_linears(model: torch.nn.Module) -> None:
    """Swap every nn.Linear for torch.ao's dynamic-QAT Linear (in place), keeping its trained weights."""
    import torch.ao.nn.qat.dynamic as qat_dynamic
    from torch.ao.quantization import default_dynamic_qat_qconfig

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                child.qconfig = default_dynamic_qat_qconfig
                setattr(module, name, qat_dynamic.Linear.from_float(child))


def head_modules(model: torch.nn.Module) -> list[str]:
    """Names of the modules QLoRA trains in full: everything outside the pretrained body, plus the body's pooler
    where it has one (BERT-style models classify from a dense + tanh over [CLS]; frozen in 4-bit it would feed
    the head features no one trained for this task, and sentence-embedding checkpoints never trained it)."""
    names = [name for name, child in model.named_children()
             if name != model.base_model_prefix and any(True for _ in child.parameters())]
    pooler = getattr(model.base_model, "pooler", None)
    return names + ["pooler"] if pooler is not None and any(True for _ in pooler.parameters()) else names


def from_pretrained_quietly(source: str | Path, **kwargs) -> torch.nn.Module:
    """AutoModelForSequenceClassification.from_pretrained without transformers' load report, which at every
    trial lists the freshly initialised head as missing or mismatched: expected, and a table of noise that hides
    real warnings. A weight of the pretrained *body* that the checkpoint lacks still warns, in one line."""
    modeling_logger = logging.getLogger("transformers.modeling_utils")  # a filter, not a level: at WARNING and
    drop_report = lambda record: "LOAD REPORT" not in record.getMessage()  # noqa: E731  above, transformers
    modeling_logger.addFilter(drop_report)  # logs a line about tensor parallelism for every layer
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(source, output_loading_info=True, **kwargs)
    finally:
        modeling_logger.removeFilter(drop_report)
    heads = set(head_modules(model)) - {"pooler"}
    body = sorted(key for key in (*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"]))
                  if key.split(".")[0] not in heads)
    if body:
        logging.getLogger(__name__).warning(
            "%s: %d weights of the model body are not in the checkpoint and start random (%s)", source, len(body),
            ", ".join(body[:3]) + (", ..." if len(body) > 3 else ""))
    return model


def four_bit_body(compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    """QLoRA's body: NF4 with double quantization; the head and the pooler stay float, they train in full."""
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype,
                              llm_int8_skip_modules=["classifier", "pooler", "pooler.dense"])


def train_dtype(device: torch.device, variant: str, cpu_bf16: bool,
                capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype of a trial's training steps (None: fp32). QAT trains in fp32 on every device: under
    autocast its layers would multiply the fake-quantized weights, and the activations, rounded again to bf16's 8 or
    fp16's 11 significant bits, so the weights would learn to survive another rounding than the INT8 alone that
    quantize_dynamic serves them with, from fp32 activations. `cpu_bf16` is for the baseline only: QLoRA's 4-bit
    layers compute in fp32 on CPU. `capability`: the GPU's, as autocast_dtype takes it."""
    if variant == "qat":
        return None
    return autocast_dtype(device, cpu_bf16=cpu_bf16 and variant == "baseline", capability=capability)


def body_dtype(device: torch.device) -> torch.dtype:
    """The dtype a QLoRA body is loaded, quantized to NF4 and trained in: the trial's autocast dtype on a GPU
    (bitsandbytes dequantizes straight into it), fp32 on CPU. The NF4 blocks depend on it (bf16-rounded weights
    quantize differently), so trials record it and the export loads the body in it."""
    return autocast_dtype(device) or torch.float32


@contextmanager
def four_bit_in_fp32(model: torch.nn.Module):
    """Inside the block, a QLoRA body's 4-bit layers compute in fp32, their NF4 weights dequantized straight into
    fp32, as analysis.export dequantizes them. Left alone, bitsandbytes casts a layer's input to its compute dtype
    with or without autocast (bf16 on a GPU trial), and on CPUs with AVX512-BF16 evaluates through a bf16 kernel
    (repacking the weights for it at the first eval-mode forward, so the block must come before that)."""
    from bitsandbytes.nn import Linear4bit

    layers = [module for module in model.modules() if isinstance(module, Linear4bit)]
    saved = [(layer.compute_dtype, layer.compute_type_is_set, layer.support_avx512bf16_for_cpu) for layer in layers]
    for layer in layers:
        layer.compute_dtype, layer.compute_type_is_set, layer.support_avx512bf16_for_cpu = torch.float32, True, False
    try:
        yield
    finally:
        for layer, state in zip(layers, saved):
            layer.compute_dtype, layer.compute_type_is_set, layer.support_avx512bf16_for_cpu = state


def load_encoder(config: dict, data: EmotionData, device: torch.device, saved: Path | None = None
                 ) -> torch.nn.Module:
    """The model a trial trains (or analysis evaluates): the pretrained body with a new head sized for the
    label set, or the saved `model/` dir of a checkpoint, built for `config["variant"]`."""
    config = {**DEFAULTS, **config}
    labels = {"num_labels": data.num_labels, "id2label": dict(enumerate(data.label_names)),
              "label2id": {n: i for i, n in enumerate(data.label_names)},
              "problem_type": "multi_label_classification" if data.multi_label else "single_label_classification"}
    revision = None if saved else config.get("model_revision")
    if config["variant"] != "qlora":
        model = from_pretrained_quietly(saved or config["model_source"], revision=revision,
                                        ignore_mismatched_sizes=True, **labels)
        if config["variant"] == "qat":  # before the move: the fake-quant observers' buffers must move with it
            fake_quantize_linears(model)
            if saved and (saved / FAKE_QUANT_STATE).is_file():
                model.load_state_dict(load_file(saved / FAKE_QUANT_STATE), strict=False)
        return model.to(device)

    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    # Loaded in its compute dtype, everything outside the 4-bit layers comes in bf16 on a GPU and peft's
    # prepare_model_for_kbit_training upcasts it to fp32 (values bf16-rounded); the export loads it the same way.
    compute_dtype = body_dtype(device)
    model = from_pretrained_quietly(
        config["model_source"], revision=config.get("model_revision"), ignore_mismatched_sizes=True,
        quantization_config=four_bit_body(compute_dtype), dtype=compute_dtype,
        # an explicit map on CPU too: with None, transformers places a 4-bit model on CUDA whenever it sees one,
        # while analysis feeds it CPU tensors
        device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"}, **labels)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # small bodies fit as they are
    if saved:
        return PeftModel.from_pretrained(model, saved, is_trainable=True)
    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(ATTENTION_QKV))
    return get_peft_model(model, LoraConfig(
        r=int(config["lora_r"]), lora_alpha=int(config["lora_alpha"]), lora_dropout=float(config["lora_dropout"]),
        target_modules=targets, modules_to_save=head_modules(model), task_type="SEQ_CLS"))


def save_model(model: torch.nn.Module, directory: Path, variant: str) -> None:
    """A checkpoint's model, as load_encoder loads it back. qlora: adapters + head only (the embeddings never train,
    so peft need not ask the hub whether the vocabulary grew); qat: the float weights, and beside them the fake
    quantization's state (FAKE_QUANT_STATE)."""
    if variant == "qlora":
        model.save_pretrained(directory, save_embedding_layers=False)
    elif variant == "qat":
        state = model.state_dict()
        model.save_pretrained(directory, state_dict={key: value for key, value in state.items()
                                                     if "fake_quant" not in key})
        save_file({key: value.contiguous() for key, value in state.items() if "fake_quant" in key},
                  directory / FAKE_QUANT_STATE)
    else:
        model.save_pretrained(directory)


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
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_ratio"] * steps_per_epoch * epochs),
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
