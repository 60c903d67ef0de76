"""What a model costs to train, from its architecture (trainables/models.py ComputeProfile): the aliases' profiles
are in the registry (offline), a local directory's come from its config.json, whatever the config calls them."""
from __future__ import annotations

import json

import pytest

from trainables.models import MODELS, ComputeProfile, ModelError, ResolvedModel, compute_profile, \
    params_m_from_config


def test_a_shared_layer_counts_once_per_use():
    """ALBERT-base runs one 768-wide layer 12 times: per token it computes like BERT-base, not like its 12M
    parameters; MiniLM-L6 (22.7M, 6 layers of 384) computes far less."""
    albert, bert, minilm = (MODELS[alias].profile for alias in ("albert", "bert", "minilm"))
    assert albert.shared_layers and albert.params_m < minilm.params_m
    assert albert.train_flops_per_token(128) == pytest.approx(bert.train_flops_per_token(128), rel=0.05)
    assert albert.train_flops_per_token(128) > 5 * minilm.train_flops_per_token(128)
    # ~65 MFLOP per training token for MiniLM-L6 at GoEmotions' lengths (docs/benchmarks.md, measured on CPU)
    assert 60e6 < minilm.train_flops_per_token(20) < 75e6


def test_training_memory_grows_with_the_batch_and_qlora_holds_less():
    qwen = MODELS["qwen3-0.6b"].profile
    assert qwen.train_memory_gb(8, 128) < qwen.train_memory_gb(32, 128) < qwen.train_memory_gb(32, 512)
    # full fine-tuning: 16 bytes a parameter before activations; a 4-bit base with adapters far less
    assert qwen.train_memory_gb(1, 1) == pytest.approx(16 * 600e6 / 1e9, rel=0.01)
    assert qwen.train_memory_gb(1, 1, four_bit=True, lora=True) < 1.0


def test_every_alias_has_a_profile_offline():
    for alias, info in MODELS.items():
        profile = compute_profile(ResolvedModel(alias, info.hub_id, info.params_m))
        assert profile is info.profile and profile.compute_params() > 0, alias


def test_a_local_directory_is_profiled_from_its_config(tiny_bert):
    config = json.loads((tiny_bert / "config.json").read_text())
    params_m = params_m_from_config("tiny", tiny_bert)
    profile = compute_profile(ResolvedModel(tiny_bert.name, str(tiny_bert), params_m))
    assert profile == ComputeProfile(config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
                                     config["vocab_size"], config["num_attention_heads"], params_m)


@pytest.mark.parametrize("fields, expected", [
    ({"model_type": "distilbert", "n_layers": 3, "dim": 64, "hidden_dim": 256, "n_heads": 4},
     (3, 64, 256, 4, None, False)),
    ({"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "n_inner": None}, (2, 32, 128, 2, None, False)),
    ({"model_type": "albert", "num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 128,
      "num_attention_heads": 2, "embedding_size": 16, "num_hidden_groups": 1}, (4, 64, 128, 2, 16, True)),
])
def test_configs_name_the_numbers_differently(tmp_path, fields, expected):
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 100, **fields}))
    profile = compute_profile(ResolvedModel("local", str(tmp_path), 1.0))
    assert (profile.layers, profile.hidden_size, profile.intermediate_size, profile.attention_heads,
            profile.embedding_size, profile.shared_layers) == expected


def test_a_config_without_its_layers_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 0}))
    with pytest.raises(ModelError, match="^--models local: config.json does not say the model's layers"):
        compute_profile(ResolvedModel("local", str(tmp_path), 1.0))
