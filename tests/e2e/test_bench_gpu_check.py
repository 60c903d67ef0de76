"""bench/gpu_check.py's Ray checks on one logical GPU: the real trainables, packed."""
from __future__ import annotations

import pytest

from bench.gpu_check import PACKED_TRIALS, decoder_check, packing_check, synthetic_data
from tests.helpers.models import build_tiny_bert
from trainables.device import SIMULATED_GPUS_ENV
from trainables.models import ResolvedModel


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    data = synthetic_data(240, 40)
    texts = data.train.texts + data.validation.texts + data.test.texts
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts), data


def test_ray_checks_run_the_real_trainables_on_one_logical_gpu(tiny_encoder, tmp_path, monkeypatch):
    """The decoder check (a tiny Qwen3 in 4-bit) and four packed encoder trials, through Tune on a Ray that
    declares one GPU, as on a GPU machine; the trials train on CPU through the simulation switch."""
    import ray

    from tests.helpers.models import build_tiny_qwen

    model_dir, data = tiny_encoder
    decoder_data = synthetic_data(32, 16)
    decoder_dir = build_tiny_qwen(tmp_path / "tiny-qwen", decoder_data.train.texts + decoder_data.validation.texts)
    monkeypatch.setenv(SIMULATED_GPUS_ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ray.init(address="local", num_gpus=1, num_cpus=PACKED_TRIALS, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        decoder = decoder_check(ResolvedModel("tiny-qwen", str(decoder_dir), 0.1), decoder_data, cpus=1,
                                storage=tmp_path)
        packed = packing_check(ResolvedModel(model_dir.name, str(model_dir), 0.1), synthetic_data(4000, 40), cpus=1,
                               gpu_mb=None, storage=tmp_path)
    finally:
        ray.shutdown()
    assert decoder.result == "PASS", decoder.note
    # sized as a sweep sizes a decoder trial: a tiny model's memory, an eighth of a (reference, 24 GB) GPU
    assert decoder.note.startswith("tiny-qwen (0M, 0.125 GPU): loss ") and "parse failures" in decoder.note
    assert decoder.examples_per_s > 0
    assert packed.result == "PASS", packed.note
    assert f"{PACKED_TRIALS} trials on GPU 0, all running together" in packed.note
    assert packed.examples_per_s > 0
