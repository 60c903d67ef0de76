"""The encoder a trial trains, in one of three variants (`config["variant"]`), compared side by side by
sweeps/emotion6.py: how it is loaded (a pretrained body with a new head sized for the label set, or a checkpoint's
`model/` dir), the precision it trains in, and how a checkpoint saves it.

- baseline: every weight fine-tuned in FP32 (bf16/fp16 autocast on GPU).
- qat: quantization-aware training for the dynamic INT8 that analysis.quantize serves with. Every Linear
  trains through torch.ao's dynamic-QAT Linear (INT8 fake quantization of its weights, straight-through
  gradients), so the weights learn to survive rounding. Checkpoints hold the plain float weights; converting
  them is `quantize_dynamic`, the same per-tensor symmetric INT8 the fake quantization simulated. Trains in fp32
  on every device (`train_dtype`).
- qlora: the body frozen in 4-bit NF4 (bitsandbytes) with LoRA adapters on the attention query/key/value
  projections and the head (with the body's pooler) trained in full (peft `modules_to_save`); checkpoints
  hold adapters and head only.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub.utils
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig
from transformers.utils import logging as hf_logging

from trainables.device import autocast_dtype
from trainables.splits import EmotionData

# transformers draws a progress bar each time a trial loads or saves weights ("Loading weights", "Writing model
# shards"): per epoch, per trial, interleaved by Ray into one console. Off; hub downloads keep theirs.
hf_logging.disable_progress_bar()
huggingface_hub.utils.enable_progress_bars()

MODEL_DEFAULTS = {
    "variant": "baseline",  # baseline | qat | qlora
    "lora_r": 16,  # qlora: the adapters' rank, scale and dropout
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    # the body's and head's dropout probability (every nn.Dropout outside the LoRA adapters); None keeps the
    # checkpoint's own (0.1 for every encoder here). On CPU, dropout's random masks are drawn one number at a time
    # on one thread, ~3 ms for a [32, 40, 384] activation against 0.05 ms for a multiply: 15-18% of a MiniLM
    # bf16 training step (docs/benchmarks.md)
    "dropout": None,
}
VARIANTS = ("baseline", "qat", "qlora")
# The attention input projections QLoRA adapts, as the BERT family, DistilBERT and newer encoders name them.
ATTENTION_QKV = ("query", "key", "value", "q_lin", "k_lin", "v_lin", "q_proj", "k_proj", "v_proj")
# QAT: beside a checkpoint's float weights (model/), the fake quantization's scales and weight observers. The
# observers move with every forward pass, evaluation included, so the probabilities an epoch saved depend on them.
FAKE_QUANT_STATE = "fake_quant.safetensors"


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


def attention_implementation(device: torch.device) -> str | None:
    """transformers' "eager" attention on CPU (softmax(QK^T)V in plain ops), its default SDPA elsewhere. The same
    arithmetic (probabilities within 1e-7); on CPU, SDPA routes a training step to a math path that checks every
    row for full masking, or, without dropout, to a flash kernel whose backward is slow: per bf16 MiniLM step eager is
    1.05x SDPA with dropout and 1.39x without (docs/benchmarks.md), and as fast for prediction."""
    return "eager" if device.type == "cpu" else None


def set_dropout(model: torch.nn.Module, probability: float) -> None:
    """Every dropout of the body and head drops with `probability` (the encoders here read their attention dropout
    from the module's `p` at each forward, like the rest); LoRA's own dropout is `lora_dropout`'s."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"dropout: {probability!r} is not a probability in [0, 1)")
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and "lora_dropout" not in name:
            module.p = probability


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
    config = {**MODEL_DEFAULTS, **config}
    labels = {"num_labels": data.num_labels, "id2label": dict(enumerate(data.label_names)),
              "label2id": {n: i for i, n in enumerate(data.label_names)},
              "problem_type": "multi_label_classification" if data.multi_label else "single_label_classification"}
    revision = None if saved else config.get("model_revision")
    attention = attention_implementation(device)
    if config["variant"] != "qlora":
        model = from_pretrained_quietly(saved or config["model_source"], revision=revision,
                                        ignore_mismatched_sizes=True, attn_implementation=attention, **labels)
        if config["variant"] == "qat":  # before the move: the fake-quant observers' buffers must move with it
            fake_quantize_linears(model)
            if saved and (saved / FAKE_QUANT_STATE).is_file():
                model.load_state_dict(load_file(saved / FAKE_QUANT_STATE), strict=False)
        if config["dropout"] is not None:
            set_dropout(model, float(config["dropout"]))
        return model.to(device)

    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    # Loaded in its compute dtype, everything outside the 4-bit layers comes in bf16 on a GPU and peft's
    # prepare_model_for_kbit_training upcasts it to fp32 (values bf16-rounded); the export loads it the same way.
    compute_dtype = body_dtype(device)
    model = from_pretrained_quietly(
        config["model_source"], revision=config.get("model_revision"), ignore_mismatched_sizes=True,
        quantization_config=four_bit_body(compute_dtype), dtype=compute_dtype, attn_implementation=attention,
        # an explicit map on CPU too: with None, transformers places a 4-bit model on CUDA whenever it sees one,
        # while analysis feeds it CPU tensors
        device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"}, **labels)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # small bodies fit as they are
    if config["dropout"] is not None:
        set_dropout(model, float(config["dropout"]))
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
