"""A trial's precision and seeding as units, without CUDA or Ray: the precision gates decide from the device and the
GPU's compute capability, given here for GPUs this machine does not have; `--deterministic` trains a tiny encoder to
the same weights twice (train_encoder with Tune's calls stood in for)."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.data import write_emotion6
from trainables import device as trial_device_module
from trainables import encoder
from trainables.data import load_dataset
from trainables.decoder import decoder_dtype
from trainables.device import DETERMINISTIC_CUBLAS_WORKSPACE, autocast_dtype
from trainables.encoder_model import train_dtype

CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")
AMPERE, HOPPER, TURING, VOLTA = (8, 0), (9, 0), (7, 5), (7, 0)


@pytest.mark.parametrize("capability, dtype", [(HOPPER, torch.bfloat16), (AMPERE, torch.bfloat16),
                                               (TURING, torch.float16), (VOLTA, torch.float16)])
def test_encoders_autocast_in_bf16_from_ampere_and_fp16_before(capability, dtype):
    assert autocast_dtype(CUDA, capability=capability) == dtype
    assert train_dtype(CUDA, "baseline", cpu_bf16=True, capability=capability) == dtype
    assert train_dtype(CUDA, "qlora", cpu_bf16=True, capability=capability) == dtype


@pytest.mark.parametrize("capability, dtype", [(HOPPER, torch.bfloat16), (AMPERE, torch.bfloat16),
                                               (TURING, None), (VOLTA, None)])
def test_decoders_compute_in_bf16_or_fp32_never_fp16(capability, dtype):
    """Qwen-family activations may exceed fp16's range: before Ampere decoders fall back to fp32, not fp16."""
    assert decoder_dtype(CUDA, capability=capability) == dtype
    assert decoder_dtype(CPU) is None


@pytest.mark.parametrize("capability", [HOPPER, AMPERE, TURING, None])
def test_qat_trains_in_fp32_on_every_device(capability, monkeypatch):
    monkeypatch.setattr(trial_device_module, "native_bf16_cpu", lambda: True)
    device = CPU if capability is None else CUDA
    assert train_dtype(device, "qat", cpu_bf16=True, capability=capability) is None


def test_cpu_bf16_applies_to_the_baseline_only_and_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(trial_device_module, "native_bf16_cpu", lambda: True)
    assert train_dtype(CPU, "baseline", cpu_bf16=True) == torch.bfloat16
    assert train_dtype(CPU, "baseline", cpu_bf16=False) is None
    assert train_dtype(CPU, "qlora", cpu_bf16=True) is None  # its 4-bit layers compute in fp32 on CPU
    monkeypatch.setattr(trial_device_module, "native_bf16_cpu", lambda: False)
    assert train_dtype(CPU, "baseline", cpu_bf16=True) is None


@pytest.fixture
def torch_state(monkeypatch):
    """What a deterministic trial changes in its process, restored for the tests that run after it here."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    threads, deterministic, benchmark = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                                         torch.backends.cudnn.benchmark)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = benchmark


def trained_weights(config: dict, data, monkeypatch) -> dict:
    """The weights of train_encoder's last checkpoint, run in this process: Tune's and Ray's calls stood in for (no
    checkpoint to resume; each report's checkpoint dir read before the trainable deletes it; outside a trial
    `ray.get_gpu_ids` would start a Ray), on one CPU."""
    import ray

    reports = []

    def report(metrics: dict, checkpoint: str) -> None:
        reports.append({"deterministic": torch.are_deterministic_algorithms_enabled(),
                        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                        "weights": load_file(Path(checkpoint) / "model" / "model.safetensors")})

    monkeypatch.setattr(encoder, "tune", SimpleNamespace(get_checkpoint=lambda: None, report=report,
                                                         Checkpoint=SimpleNamespace(from_directory=str)))
    for module in (encoder, trial_device_module):  # the trainable's, and TrialCost's
        monkeypatch.setattr(module, "trial_resources", lambda: (0.0, 1.0))
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    encoder.train_encoder(config, data)
    assert reports[-1]["deterministic"] and reports[-1]["cublas"] == DETERMINISTIC_CUBLAS_WORKSPACE
    return reports[-1]["weights"]


def test_a_deterministic_encoder_trains_to_the_same_weights_twice(tiny_bert, tmp_path, monkeypatch, torch_state):
    data = load_dataset("emotion6", write_emotion6(tmp_path / "e6", sizes=(24, 6, 6)))
    config = {"model_source": str(tiny_bert), "epochs": 1, "batch_size": 8, "lr": 1e-3, "deterministic": True,
              "seed": 3}
    first, second = (trained_weights(config, data, monkeypatch) for _ in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    pretrained = load_file(tiny_bert / "model.safetensors")
    moved = [key for key in pretrained.keys() & first.keys() if not torch.equal(pretrained[key], first[key])]
    assert moved  # the body trained: equal weights are not just the untouched checkpoint twice
