"""An encoder run on CPU as analysis serves it: its probabilities in input order (`predict_probs`, batched by
length as the trainable predicts, so the same model gives the same probabilities) and its dynamic-INT8 copy
(`quantize_int8`; analysis.quantize says why torch.ao). Shared by analysis.predict (new texts), analysis.quantize
and analysis.variants (a trial's rows predicted again); it knows nothing of trials or exports.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from trainables.encoder import collate

LIBRARIES = ("torch.ao", "torchao")


def quantize_int8(model: torch.nn.Module, library: str = "torch.ao") -> torch.nn.Module:
    """A dynamic-INT8 copy of `model` (Linear weights INT8, activations quantized per batch at run time)."""
    model = copy.deepcopy(model).eval()
    if library == "torch.ao":
        with warnings.catch_warnings():  # torch 2.13 marks torch.ao.quantization deprecated
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if library == "torchao":
        # torchao is optional (pip install -e '.[bench]'): imported only when asked for
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model
    raise ValueError(f"unknown quantization library {library!r} (one of {', '.join(LIBRARIES)})")


def predict_probs(model: torch.nn.Module, input_ids: list[list[int]], pad_id: int, multi_label: bool,
                  batch_size: int = 64, progress=None) -> np.ndarray:
    """Probabilities in input order; batches sorted by length, as the trainable predicts (so the same model gives
    the same probabilities). `progress`: a tqdm bar, advanced by each batch's texts."""
    lengths = np.array([len(row) for row in input_ids])
    order = np.argsort(-lengths, kind="stable")
    probs = []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            logits = model(**collate(input_ids, order[start:start + batch_size], pad_id, torch.device("cpu"))).logits
            probs.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).float().numpy())
            if progress is not None:
                progress.update(len(probs[-1]))
    result = np.empty((len(input_ids), probs[0].shape[1]), dtype=np.float32)
    result[order] = np.concatenate(probs)
    return result
