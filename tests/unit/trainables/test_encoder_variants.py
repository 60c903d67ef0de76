"""The encoder's training variants as units: QAT's fake-quantization buffers move with the model; a QLoRA
encoder on CPU is placed on CPU explicitly."""

import torch

from tests.helpers.data import write_emotion6
from trainables.data import load_dataset
from trainables.encoder import load_encoder


def test_every_qat_buffer_moves_with_the_model(tiny_bert):
    """Fake quantization goes in before the move to the trial's device: its observers' buffers must land there
    too (moved after, they would stay on CPU and break the first GPU step). `meta` stands in for CUDA here."""
    data = load_dataset("emotion6", write_emotion6(tiny_bert.parent / "e6-qat", sizes=(12, 6, 6)))
    model = load_encoder({"model_source": str(tiny_bert), "variant": "qat"}, data, torch.device("meta"))
    assert any("fake_quant" in name for name, _ in model.named_buffers())
    assert {tensor.device.type for tensor in (*model.parameters(), *model.buffers())} == {"meta"}


def test_qlora_on_cpu_is_placed_on_cpu_explicitly(tiny_bert):
    """With device_map None, transformers' bitsandbytes quantizer puts a 4-bit model on CUDA whenever it sees one
    (quantizer_bnb_4bit.update_device_map) while analysis feeds it CPU tensors; asked for the CPU, every weight
    is there. (Without CUDA both land on the CPU: bench/gpu_check.py is where the difference shows.)"""
    data = load_dataset("emotion6", write_emotion6(tiny_bert.parent / "e6-qlora", sizes=(12, 6, 6)))
    model = load_encoder({"model_source": str(tiny_bert), "variant": "qlora"}, data, torch.device("cpu"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    batch = {"input_ids": torch.tensor([[2, 7, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    assert model(**batch).logits.shape == (1, data.num_labels)  # CPU inputs, CPU model
