"""QLoRA decoder trainable: label parser, prompts, likelihood scoring (exact, and memory bounded by label
chunks), non-reentrant gradient checkpointing, hub revisions and offline checkpoints, and the sweep file's
checks and plan before Ray.

A 2-layer Qwen3 built from config with a word-level tokenizer over the fixture vocabulary (pad, eos and a
small chat template), loaded in 4-bit NF4 by bitsandbytes on CPU: the real QLoRA path, in seconds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.data import GOEMOTIONS_LABELS
from tests.helpers.models import SEMEVAL_LABELS, build_hub_cache, build_tiny_qwen, fixture_texts
from tests.helpers.sweeps import REPO
from trainables.labels_text import TEMPLATES, answer_text, parse_answer, template_problem


def load_4bit_lora(source: Path):
    """The trainable's model path in generation mode, with non-zero LoRA weights so adapters matter."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quantization, dtype=torch.float32)
    model = prepare_model_for_kbit_training(model)
    torch.manual_seed(1)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            init_lora_weights=False, task_type="CAUSAL_LM"))


# --- Labels as text -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected, parsed", [
    ("joy, optimism", {"joy", "optimism"}, True),
    (" Optimism and JOY.", {"joy", "optimism"}, True),  # case, order, extra words
    ("Emotions: sadnes, pesimism", {"sadness", "pessimism"}, True),  # near-miss spellings
    ("angry and surprised", {"anger", "surprise"}, True),  # inflections
    ("disgusted; joyful!", {"disgust", "joy"}, True),
    ("none", set(), True),
    ("None of them", set(), True),
    ("fear\nanger, joy, love", {"fear"}, True),  # only the first line is the answer
    ("I think the answer is", set(), False),
    ("dear", set(), False),  # close to fear, but not close enough
    ("", set(), False),
])
def test_parse_answer_handles_messy_generations(answer, expected, parsed):
    row, ok = parse_answer(answer, SEMEVAL_LABELS)
    assert {name for name, present in zip(SEMEVAL_LABELS, row) if present} == expected
    assert ok is parsed


def test_parse_answer_keeps_neutral_as_a_label_and_maps_inflections():
    row, ok = parse_answer("Neutral, annoyed, disappointed", GOEMOTIONS_LABELS)
    assert ok and {n for n, p in zip(GOEMOTIONS_LABELS, row) if p} == {"neutral", "annoyance", "disappointment"}


def test_answer_text_lists_labels_in_dataset_order_or_none():
    row = np.zeros(len(SEMEVAL_LABELS))
    assert answer_text(row, SEMEVAL_LABELS) == "none"
    row[[8, 0, 4]] = 1
    assert answer_text(row, SEMEVAL_LABELS) == "anger, joy, sadness"
    assert parse_answer(answer_text(row, SEMEVAL_LABELS), SEMEVAL_LABELS)[0] == row.astype(int).tolist()


def test_prompt_truncates_the_text_and_keeps_the_template(tiny_qwen):
    from trainables.decoder import load_tokenizer
    from trainables.labels_text import prompt_parts

    tokenizer = load_tokenizer(str(tiny_qwen))
    prefix, lead, suffix, answer_lead = prompt_parts(tokenizer, "plain", SEMEVAL_LABELS)
    assert tokenizer.decode(prefix) == "text :" and lead == " " and answer_lead == " "
    assert tokenizer.decode(suffix) == "emotions :"
    chat_prefix, _, chat_suffix, chat_lead = prompt_parts(tokenizer, "chat", SEMEVAL_LABELS)
    assert tokenizer.convert_ids_to_tokens(chat_prefix)[0] == "<|user|>"
    assert tokenizer.convert_ids_to_tokens(chat_suffix)[-1] == "<|assistant|>" and chat_lead == " "
    assert "anticipation , disgust" in tokenizer.decode(chat_prefix)  # {labels} filled in


def test_setup_problems_are_one_line_reasons(tiny_qwen, tmp_path, goemotions_dir):
    from trainables.decoder import setup_problem

    assert setup_problem(str(tiny_qwen), ["generation", "head"], list(TEMPLATES), [8, 32]) is None
    assert "has no {text} slot" in template_problem("Emotions:")
    assert "has no {text} slot" in setup_problem(str(tiny_qwen), ["generation"], ["Emotions:"], [8])
    assert setup_problem(str(tiny_qwen), ["head"], ["Emotions:"], [8]) is None  # heads use no template
    assert setup_problem(str(tiny_qwen), ["generation"], ["plain"], [0]) == "lora_r 0 must be > 0"
    no_pad = build_tiny_qwen(tmp_path / "no-pad", fixture_texts(goemotions_dir), pad=False)
    assert "neither a pad nor an end-of-sequence token" in setup_problem(str(no_pad), ["head"], ["plain"], [8])


@pytest.mark.parametrize("label_chunk", [1, 2, 6])
def test_likelihood_scores_equal_summed_log_probs(tiny_qwen, label_chunk):
    """Chunked scoring from one prompt pass and its cache equals scoring each label with a full forward pass of
    prompt + label, whatever the chunk size (one label at a time, uneven chunks, all labels at once)."""
    from trainables.decoder_scoring import label_log_likelihoods

    model = load_4bit_lora(tiny_qwen)
    assert type(model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    rng = np.random.default_rng(0)
    prompts = [rng.integers(5, 60, size=n).tolist() for n in (3, 9, 5, 12, 7)]
    labels = [[7], [8, 9], [10, 11, 12], [13], [14, 15], [16, 17, 18, 19]]  # names of different token lengths
    scores = label_log_likelihoods(model, prompts, labels, pad_id=0, batch_size=3, label_chunk=label_chunk,
                                   device=torch.device("cpu"), amp_dtype=None)
    model.eval()
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            for c, label in enumerate(labels):
                logits = model(input_ids=torch.tensor([prompt + label])).logits[0]
                logprobs = torch.log_softmax(logits, dim=-1)
                direct = sum(logprobs[len(prompt) - 1 + j, token].item() for j, token in enumerate(label))
                assert scores[i, c] == pytest.approx(direct, abs=1e-4)
    assert np.all(scores < 0)


def peak_cpu_bytes_allocated(run) -> int:
    """The most CPU memory torch held at once while `run()` ran, above what it held before: the running sum of
    the allocations and frees torch's profiler records (exact and repeatable, unlike the process's RSS)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    events = sorted((event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"),
                    key=lambda event: event.start_ns())
    return int(np.cumsum([event.nbytes() for event in events]).max())


def test_likelihood_scoring_memory_does_not_grow_with_the_label_count():
    """Scoring 48 labels needs no more memory than scoring 8, chunk by chunk; all 48 in one chunk (what copying
    the cache to every label did) needs several times more, so the measurement would see the difference."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from trainables.decoder_scoring import label_log_likelihoods

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, pad_token_id=0, tie_word_embeddings=False))
    rng = np.random.default_rng(0)
    prompts = [rng.integers(5, 2048, size=n).tolist() for n in rng.integers(20, 40, size=8)]
    labels = [rng.integers(5, 2048, size=3).tolist() for _ in range(48)]

    def peak(num_labels: int, label_chunk: int) -> int:
        return peak_cpu_bytes_allocated(lambda: label_log_likelihoods(
            model, prompts, labels[:num_labels], pad_id=0, batch_size=4, label_chunk=label_chunk,
            device=torch.device("cpu"), amp_dtype=None))

    few, many, unchunked = peak(8, 4), peak(48, 4), peak(48, 48)
    assert few > 0
    assert many <= 1.1 * few, (few, many)
    assert unchunked > 4 * many, (many, unchunked)


@pytest.mark.parametrize("mode", ["generation", "head"])
def test_gradient_checkpointing_is_non_reentrant_and_trains_the_adapters(tiny_qwen, mode):
    """peft alone would leave transformers a checkpoint function without `use_reentrant`, which torch runs as
    the reentrant variant; the trainable's model asks for the non-reentrant one, and a step still trains."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    from trainables.decoder import DEFAULTS, load_model

    config = {**DEFAULTS, "model_source": str(tiny_qwen), "mode": mode, "gradient_checkpointing": True}
    model = load_model(config, GOEMOTIONS_LABELS, pad_id=0, device=torch.device("cpu"), amp_dtype=None)
    layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
    assert len(layers) == 2 and all(layer.gradient_checkpointing for layer in layers)
    assert all(layer._gradient_checkpointing_func.keywords == {"use_reentrant": False} for layer in layers)

    first_norm_calls = []  # a layer's recomputation starts with its first norm
    layers[0].input_layernorm.register_forward_hook(lambda *_: first_norm_calls.append(1))
    model.train()
    input_ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    output = model(input_ids=input_ids, use_cache=False,
                   labels=input_ids if mode == "generation" else torch.eye(len(GOEMOTIONS_LABELS))[:2])
    output.loss.backward()
    assert len(first_norm_calls) == 2  # the forward pass, and again as backward recomputes the layer
    grads = {name: param.grad for name, param in model.named_parameters() if param.requires_grad}
    assert grads and all(grad is not None for grad in grads.values())
    assert all(grad.abs().sum() > 0 for name, grad in grads.items() if "lora_B" in name or "score" in name)


LOAD_AND_SAVE_OFFLINE = """
import json, sys, warnings
from pathlib import Path
import torch
from trainables.decoder import DEFAULTS, load_model, load_tokenizer, save_adapter

source, pinned, out = sys.argv[1:]
loaded = {}
for revision in (None, pinned):
    tokenizer = load_tokenizer(source, revision)
    config = {**DEFAULTS, "model_source": source, "model_revision": revision}
    model = load_model(config, ["joy"], tokenizer.pad_token_id, torch.device("cpu"), None)
    loaded[str(revision)] = {"model": model.config.max_position_embeddings, "tokenizer": tokenizer.model_max_length}
warned = {}
for name, save in (("save_adapter", lambda: save_adapter(model, Path(out) / "ours")),
                   ("peft_default", lambda: model.save_pretrained(Path(out) / "default"))):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save()
    warned[name] = [str(warning.message) for warning in caught]
print(json.dumps({"loaded": loaded, "warned": warned}))
"""


def test_hub_model_loads_at_its_pinned_revision_and_saves_without_asking_the_hub(tmp_path, goemotions_dir):
    """A model named by hub id, from a local cache, with HF_HUB_OFFLINE=1 as on a cluster without internet.
    Tokenizer and model follow `model_revision` (None: the main branch). Saving the adapter leaves the hub
    alone, where peft's default save looks the base model's config up on the hub: offline, that lookup is the
    "Could not find a config file" warning, at every checkpoint."""
    main, pinned = "a" * 40, "b" * 40
    model = build_tiny_qwen(tmp_path / "model", fixture_texts(goemotions_dir))
    build_hub_cache(tmp_path / "cache", "tiny-org/tiny-qwen", {main: model, pinned: model}, main)
    pinned_dir = tmp_path / "cache" / "models--tiny-org--tiny-qwen" / "snapshots" / pinned
    for file, key, value in (("config.json", "max_position_embeddings", 256),
                             ("tokenizer_config.json", "model_max_length", 77)):  # what tells the commits apart
        settings = json.loads((pinned_dir / file).read_text())
        (pinned_dir / file).write_text(json.dumps({**settings, key: value}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", LOAD_AND_SAVE_OFFLINE, "tiny-org/tiny-qwen", pinned,
                             str(tmp_path / "saved")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["loaded"]["None"]["model"] == 512 and report["loaded"]["None"]["tokenizer"] != 77  # main
    assert report["loaded"][pinned] == {"model": 256, "tokenizer": 77}
    lookup = "Could not find a config file in tiny-org/tiny-qwen"
    assert any(lookup in message for message in report["warned"]["peft_default"]), report["warned"]
    assert report["warned"]["save_adapter"] == [], report["warned"]
    assert (tmp_path / "saved" / "ours" / "adapter_model.safetensors").exists()


# --- The sweep file's checks before Ray, its `main` in this process (`run_cli`, tests/unit/conftest.py) -----


def test_bad_decoder_input_fails_before_ray_with_one_line(tmp_path, goemotions_dir, tiny_qwen, capsys, run_cli):
    import sweeps.qlora_goemotions as sweep_file
    from sweeps.run import main

    argv = ["--data-dir", str(goemotions_dir), "--models", str(tiny_qwen), "--budget", "smoke",
            "--storage", str(tmp_path), "--name", "bad", "--no-dashboard"]
    cases = [({"template": "Emotions:"}, "has no {text} slot"), ({"lora_r": 0}, "lora_r 0 must be > 0")]
    for fixed, message in cases:
        experiment = dataclasses.replace(sweep_file.EXPERIMENT, fixed=fixed)
        with pytest.raises(SystemExit) as exit_info:
            main(experiment, argv + ["--mode", "generation"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --models {tiny_qwen.name}: ") and message in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(sweep_file.EXPERIMENT, argv + ["--budget", "full"])
    assert "QLoRA decoders on CPUs run the smoke or cpu budget only" in capsys.readouterr().err
    no_pad = build_tiny_qwen(tmp_path / "no-pad", fixture_texts(goemotions_dir), pad=False)
    result = run_cli(sweep_file, *argv[:2], "--models", str(no_pad), *argv[4:])
    assert result.returncode == 2 and "neither a pad nor an end-of-sequence token" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_plan_gives_each_alias_its_own_mode_and_search_space(tmp_path, goemotions_dir, tiny_qwen, run_cli):
    """Directories named like the aliases get the sweep file's per-model modes: generation searches prompt
    templates, the head searches its own learning rate and pos_weight instead."""
    import sweeps.qlora_goemotions as sweep_file

    for alias in ("qwen3-0.6b", "qwen2.5-7b"):
        (tmp_path / alias).symlink_to(tiny_qwen)
    result = run_cli(sweep_file, "--data-dir", str(goemotions_dir), "--models",
                     str(tmp_path / "qwen3-0.6b"), str(tmp_path / "qwen2.5-7b"), "--budget", "smoke",
                     "--storage", str(tmp_path / "results"), "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    generation = lines[next(i for i, line in enumerate(lines) if "model qwen3-0.6b" in line) + 1]
    head = lines[next(i for i, line in enumerate(lines) if "model qwen2.5-7b" in line) + 1]
    assert "fixed {'mode': 'generation'}" in generation and "template" in generation and "head_lr" not in generation
    assert "fixed {'mode': 'head'}" in head and "head_lr" in head and "template" not in head
    assert not (tmp_path / "results").exists()
