"""Ray Tune function trainable: QLoRA fine-tuning of a decoder (4-bit NF4 base + LoRA), one epoch per report.

Two modes, chosen by `config["mode"]`:
- generation: the model reads a prompt (trainables/labels_text.py) and learns to write the emotion names
  (loss on the answer tokens only). Each epoch is evaluated twice on validation: greedy generation parsed back
  to a label set (macro-F1, Jaccard, parse-failure rate), and likelihood scoring, where every label name's
  probability as the answer's first item becomes that label's score and goes through the same threshold search
  as the encoders. The likelihood scores are the trial's `val_probs`/`val_macro_f1`, so decoders are selected
  and analysed exactly like encoders; generation is reported beside them.
- head: AutoModelForSequenceClassification on the 4-bit base, LoRA in the body and a freshly trained score head
  (peft `modules_to_save`), multi-label BCE like the encoders.

Reads top to bottom: config → device and precision (from what Ray granted the trial, trainables/device.py) →
tokenizer and prompts → 4-bit model + LoRA → optimizer → (resume) → epochs of train / evaluate / choose
thresholds / checkpoint + report. Training and evaluation run under the same autocast (bf16 on Ampere and newer,
fp32 on older GPUs and on CPU, never fp16: `decoder_dtype`); unlike the encoders, which evaluate in fp32 as
analysis.predict does, since nothing recomputes a decoder's probabilities (analysis.predict applies encoder exports
only). predictions.npz and each result record it: `predict_dtype` (the evaluation's autocast) and
`body_compute_dtype` (the 4-bit layers'; on CPUs with AVX512-BF16 bitsandbytes evaluates them through a bf16 kernel
all the same), and the export copies both into decision.json. Checkpoints follow trainables/encoder.py's contract
but hold only the adapters (and the head), never the base weights: `adapter/`, `training_state.pt`, `predictions.npz`
(validation only). As for the encoders, trials never evaluate the test split: `predict_test_split` evaluates it, with
`evaluate`, the function a trial evaluates validation with, for the checkpoints the analysis reports, once the sweep's
search and confirmations end (trainables/checkpoint_predictions.py). On CPU a test split costs more than the rest
of a small trial: a smoke trial on SemEval E-c otherwise scored all 3,259 test tweets x 11 labels.
"""
from __future__ import annotations

import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training, set_peft_model_state_dict
from ray import tune
from safetensors.torch import load_file
from sklearn.metrics import jaccard_score
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

from trainables.checkpoints import TRAINING_STATE, load_training_state
from trainables.decoder_scoring import collate, generate, head_probs, label_log_likelihoods
from trainables.device import autocast_dtype, dtype_name, seed_trial, trial_device, trial_resources
from trainables.encoder import length_grouped_batches, loss_value, to_device
from trainables.labels_text import CHAT_TEMPLATES, TextEncoding, template_problem, text_encoding
from trainables.metrics import validation_scores
from trainables.scores import macro_f1
from trainables.models import TrialCost, four_bit_problem
from trainables.optimizers import linear_warmup_schedule
from trainables.rungs import RUNG_METRIC
from trainables.splits import EmotionData

DEFAULTS = {
    "mode": "generation",  # generation | head
    "template": "listed",  # generation only: a name in labels_text.TEMPLATES or a template string
    "lr": 2e-4,  # LoRA adapters
    "head_lr": 1e-3,  # head only: the new score layer
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "attention",  # attention | all_linear
    "batch_size": 8,
    "eval_batch_size": 16,
    "label_chunk": 4,  # generation only: labels scored per pass, so eval_batch_size x label_chunk cache rows at a time
    "weight_decay": 0.0,
    "warmup_ratio": 0.05,
    "epochs": 1,
    "max_length": 64,  # tokens of the example's text; the template and answer come on top
    "max_new_tokens": 32,  # generation cap; the longest training answer usually stops it sooner
    "grad_clip": 1.0,
    "pos_weight": "none",  # head only: none | inverse_frequency
    "pos_weight_clip": 30.0,
    "gradient_checkpointing": True,
    "thresholds": "exact",  # exact | optuna
    "metric": "macro_f1",  # macro_f1 | micro_f1 | jaccard: thresholds are tuned for it; reported as val_score
    "seed": 0,
    "deterministic": False,  # --deterministic: reproducible kernels (trainables.device.seed_trial)
}
MODES = ("generation", "head")
CPU_MAX_PARAMS_M = 1000  # 4-bit matmuls on CPU are slow: without a GPU only small decoders are worth a trial
TARGET_MODULES = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "all_linear": "all-linear"}
MODE_ONLY = {"template": "generation", "max_new_tokens": "generation", "head_lr": "head", "pos_weight": "head"}


def param_applies(key: str, fixed: dict) -> bool:
    """Whether a searched parameter matters for the trials' mode (a prompt template does not for a head)."""
    return MODE_ONLY.get(key, fixed.get("mode", DEFAULTS["mode"])) == fixed.get("mode", DEFAULTS["mode"])


def load_tokenizer(source: str, revision: str | None = None):
    """The model's tokenizer with a pad token: its own, else its end-of-sequence token. `revision` pins a hub
    commit; None takes a local directory as it is (or the hub's main branch)."""
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{source}: the tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def setup_problem(source: str, modes: list[str], templates: list[str], lora_rs: list,
                  revision: str | None = None) -> str | None:
    """What stops this model from training here (one line), checked before Ray starts; None when fine."""
    for mode in modes:
        if mode not in MODES:
            return f"mode {mode!r} is not one of {', '.join(MODES)}"
    for r in lora_rs:
        if not r > 0:
            return f"lora_r {r} must be > 0"
    for template in templates if "generation" in modes else []:
        if template_problem(template):
            return template_problem(template)
    if problem := four_bit_problem():
        return problem
    try:
        tokenizer = load_tokenizer(source, revision)
    except (OSError, ValueError) as error:
        return str(error).splitlines()[0]
    chat = sorted(set(templates) & CHAT_TEMPLATES) if "generation" in modes else []
    if chat and not tokenizer.chat_template:
        return f"{source}: template {chat[0]!r} needs a chat template, and the tokenizer has none"
    return None


def decoder_dtype(device: torch.device, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """A decoder's autocast dtype (None: fp32): bf16 on GPUs that compute it natively, fp32 on older GPUs (T4,
    V100) and on CPU, never the fp16 the encoders use there. Decoders like Qwen's carry activations in their
    residual stream that may exceed fp16's largest value (65504): they would overflow to inf and the loss to NaN.
    fp32 rather than refusing the trial: slower, and more memory, but a pre-Ampere GPU still trains decoders.
    `capability`: the GPU's, as autocast_dtype takes it."""
    dtype = autocast_dtype(device, capability=capability)
    return None if dtype == torch.float16 else dtype


def load_model(config: dict, label_names: list[str], pad_id: int, device: torch.device,
               amp_dtype: torch.dtype | None):
    """The base quantized to 4-bit NF4 on load, then LoRA adapters; the base never trains.

    The 4-bit matmuls compute in the trial's autocast dtype (fp32 on CPU). Gradient checkpointing is asked for
    as non-reentrant: left to itself, peft passes no checkpoint arguments and torch silently falls back to its
    reentrant variant, the one it recommends against (it only trains through a hook that forces the embedding
    output to require grad).
    """
    compute_dtype = amp_dtype or torch.float32
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=compute_dtype,
                                      llm_int8_skip_modules=["score"] if config["mode"] == "head" else None)
    common = {"quantization_config": quantization, "dtype": compute_dtype, "revision": config.get("model_revision"),
              "device_map": {"": device.index} if device.type == "cuda" else {"": "cpu"}}
    if config["mode"] == "generation":
        model = AutoModelForCausalLM.from_pretrained(config["model_source"], **common)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            config["model_source"], num_labels=len(label_names), problem_type="multi_label_classification",
            id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)}, **common)
        model.config.pad_token_id = pad_id  # the head pools the last non-pad token
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(config["gradient_checkpointing"]),
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, LoraConfig(
        r=int(config["lora_r"]), lora_alpha=int(config["lora_alpha"]), lora_dropout=float(config["lora_dropout"]),
        target_modules=TARGET_MODULES[config["target_modules"]],
        task_type="CAUSAL_LM" if config["mode"] == "generation" else "SEQ_CLS"))  # SEQ_CLS trains `score` in full


def save_adapter(model, directory: Path) -> None:
    """The adapters (and the head), never the base weights. Embedding layers are never saved: nothing here trains
    or resizes them, and peft's default ("auto") asks the hub at every checkpoint whether the base model's
    vocabulary changed."""
    model.save_pretrained(directory, save_embedding_layers=False)


def evaluate(model, tokenizer, prompts: list[list[int]], encoding: TextEncoding, config: dict, label_names: list[str],
             device: torch.device, amp_dtype: torch.dtype | None, answers: bool = True) -> dict:
    """Scores for the threshold search (`probs`), plus in generation mode, with `answers`, the greedy answers parsed
    (`generated`, `parsed`). A trial evaluates validation with it; `predict_test_split` a checkpoint's test split."""
    batch_size = int(config["eval_batch_size"])
    if config["mode"] == "head":
        return {"probs": head_probs(model, prompts, len(label_names), tokenizer.pad_token_id, batch_size, device,
                                    amp_dtype)}
    log_likelihood = label_log_likelihoods(model, prompts, encoding.label_ids, tokenizer.pad_token_id, batch_size,
                                           int(config["label_chunk"]), device, amp_dtype)
    scores = {"probs": np.exp(log_likelihood).astype(np.float32)}
    if answers:
        scores["generated"], scores["parsed"] = generate(model, tokenizer, prompts, label_names,
                                                         encoding.max_new_tokens, batch_size, device, amp_dtype)
    return scores


def predict_test_split(config: dict, data: EmotionData, checkpoint: Path, device: torch.device
                       ) -> dict[str, np.ndarray]:
    """What a checkpoint's predictions.npz gains once the analysis reports it: `test_probs`, evaluated from its
    adapters as its trial evaluated validation (the model loaded as a resumed trial loads it); where the split has
    labels also `test_labels` and, in generation mode, `test_generated`. Where it has none (SemEval E-c withholds its
    test labels) no answers are generated: they are read only to be scored against labels, and greedy generation
    costs as much as the likelihood scores or more (SmolLM2-135M on CPU: 0.6x to 1.8x, by template)."""
    config = {**DEFAULTS, **config}
    amp_dtype = decoder_dtype(device)
    tokenizer = load_tokenizer(config["model_source"], config.get("model_revision"))
    encoding = text_encoding(config, tokenizer, data)
    model = load_model(config, data.label_names, tokenizer.pad_token_id, device, amp_dtype)
    set_peft_model_state_dict(model, load_file(checkpoint / "adapter" / "adapter_model.safetensors"))
    labelled = data.test.labels is not None
    test = evaluate(model, tokenizer, encoding.encode(data.test.texts), encoding, config, data.label_names, device,
                    amp_dtype, answers=labelled)
    if not labelled:
        return {"test_probs": test["probs"]}
    return {"test_probs": test["probs"], "test_labels": data.test.labels,
            **({"test_generated": test["generated"]} if "generated" in test else {})}


def train_decoder(config: dict, data: EmotionData) -> None:
    config = {**DEFAULTS, **config}
    cost = TrialCost()  # from the trial's start: loading and tokenizing cost too
    seed, mode = int(config["seed"]), config["mode"]
    seed_trial(seed, bool(config["deterministic"]))  # before CUDA: cuBLAS reads its workspace setting once
    gpus, cpus = trial_resources()
    device = trial_device(gpus, cpus)  # a GPU trial that cannot see CUDA fails here, in one line
    amp_dtype = decoder_dtype(device)  # bf16 on Ampere and newer, else None (fp32)
    if not data.multi_label:
        raise ValueError(f"{data.name}: the decoder trainable handles multi-label data only")
    label_names = data.label_names
    # evaluation runs under the training autocast, and the 4-bit layers compute in its dtype (load_model)
    precision = {"predict_dtype": dtype_name(amp_dtype), "body_compute_dtype": dtype_name(amp_dtype)}

    # Data: token ids once per trial. Generation: prompt ids per example, and the answer after it.
    tokenizer = load_tokenizer(config["model_source"], config.get("model_revision"))
    pad_id = tokenizer.pad_token_id
    encoding = text_encoding(config, tokenizer, data)
    train_ids, val_ids = encoding.encode(data.train.texts), encoding.encode(data.validation.texts)
    train_rows = ([prompt + answer for prompt, answer in zip(train_ids, encoding.answers)] if mode == "generation"
                  else train_ids)
    train_lengths = np.array([len(row) for row in train_rows])
    train_labels = torch.tensor(data.train.labels, dtype=torch.float32)

    model = load_model(config, label_names, pad_id, device, amp_dtype)
    trainable_m, params_m = (count / 1e6 for count in model.get_nb_trainable_parameters())  # 4-bit counted unpacked

    checkpoint = tune.get_checkpoint()
    resume_dir = Path(checkpoint.to_directory()) if checkpoint else None
    if resume_dir:
        set_peft_model_state_dict(model, load_file(resume_dir / "adapter" / "adapter_model.safetensors"))

    loss_fn = None
    if mode == "head":
        pos_weight = None
        if config["pos_weight"] == "inverse_frequency":
            positives = train_labels.sum(dim=0).clamp(min=1.0)
            pos_weight = ((len(train_labels) - positives) / positives).clamp(max=config["pos_weight_clip"])
            pos_weight = pos_weight.to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    # Optimizer: only adapters (and the head, at its own learning rate) have gradients.
    adapters = [p for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" not in n]
    head = [p for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    optimizer = torch.optim.AdamW([{"params": adapters, "lr": config["lr"]},
                                   {"params": head, "lr": config["head_lr"]}], weight_decay=config["weight_decay"])
    epochs = int(config["epochs"])
    steps_per_epoch = math.ceil(len(train_rows) / int(config["batch_size"]))
    scheduler = linear_warmup_schedule(optimizer, int(config["warmup_ratio"] * steps_per_epoch * epochs),
                                       steps_per_epoch * epochs)
    start_epoch, best_val = 0, -1.0
    if resume_dir:
        state = load_training_state(resume_dir / TRAINING_STATE, device)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_val = state["epoch"] + 1, state["best_val"]
        cost.carried_wall_s = state["trial_wall_s"]

    for epoch in range(start_epoch, epochs):
        model.train()
        started, seen, train_loss = time.perf_counter(), 0, 0.0
        batches = length_grouped_batches(train_lengths, int(config["batch_size"]), seed * 1000 + epoch)
        for indices in batches:
            inputs = collate([train_rows[i] for i in indices], pad_id, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                if mode == "generation":
                    targets = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
                    for row, i in enumerate(indices):
                        targets[row, :len(train_ids[i])] = -100  # loss on the answer only
                    loss = model(**inputs, labels=targets, use_cache=False).loss  # a cache is for generating
                else:
                    loss = loss_fn(model(**inputs, use_cache=False).logits.float(),
                                   to_device(train_labels[indices], device))
            value = loss_value(loss, epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # no GradScaler: decoders never train in fp16 (decoder_dtype)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config["grad_clip"])
            optimizer.step()
            scheduler.step()
            train_loss += value * len(indices)
            seen += len(indices)
        train_seconds = time.perf_counter() - started

        y_val = data.validation.labels
        val = evaluate(model, tokenizer, val_ids, encoding, config, label_names, device, amp_dtype)
        scores, thresholds = validation_scores(val["probs"], y_val, True, config["metric"], config["thresholds"], seed)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss / seen, "train_examples_per_s": seen / train_seconds,
                   "train_s_per_step": train_seconds / len(batches), "params_m": params_m,
                   "trainable_params_m": trainable_m,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # this trial's process
                   "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0,
                   **precision, **scores}
        arrays = {"val_probs": val["probs"], "val_labels": y_val, **thresholds}
        if mode == "generation":
            metrics.update(val_macro_f1_generation=macro_f1(y_val, val["generated"]),
                           val_jaccard_generation=float(jaccard_score(y_val, val["generated"], average="samples",
                                                                      zero_division=1)),
                           parse_failure_rate=float(1.0 - val["parsed"].mean()))
            arrays.update(val_generated=val["generated"], parse_failure_rate=np.float32(metrics["parse_failure_rate"]))
        best_val = max(best_val, metrics["val_score"])
        metrics["best_val_score"] = best_val
        metrics[RUNG_METRIC] = metrics["val_score"]  # a decoder reports once per epoch: its rung is the epoch
        metrics.update(cost.metrics())

        with tempfile.TemporaryDirectory() as directory:
            save_adapter(model, Path(directory) / "adapter")
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                        "best_val": best_val,
                        "trial_wall_s": metrics["trial_wall_s"]}, Path(directory) / TRAINING_STATE)
            np.savez_compressed(Path(directory) / "predictions.npz", epoch=epoch + 1, metric=config["metric"],
                                val_score=metrics["val_score"], val_macro_f1=metrics["val_macro_f1"],
                                label_names=np.array(data.label_names), **precision, **arrays)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
