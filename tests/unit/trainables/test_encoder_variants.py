"""The encoder's training variants as units: QAT's fake-quantization buffers move with the model, and a QAT
checkpoint predicts the test split as its trial would have; a QLoRA encoder on CPU is placed on CPU explicitly, and one
whose body a GPU trial loads in bf16 predicts in fp32 exactly as its export does; a non-finite training loss stops the
trial."""

import warnings

import numpy as np
import pytest
import torch

from tests.helpers.data import write_emotion6
from trainables import encoder_model
from trainables.data import load_dataset
from trainables.encoder import loss_value, predict, predict_test_split, tokenize_splits, token_rows
from trainables.encoder_model import FAKE_QUANT_STATE, four_bit_in_fp32, load_encoder, save_model


def test_every_qat_buffer_moves_with_the_model(tiny_bert):
    """Fake quantization goes in before the move to the trial's device: its observers' buffers must land there
    too (moved after, they would stay on CPU and break the first GPU step). `meta` stands in for CUDA here."""
    data = load_dataset("emotion6", write_emotion6(tiny_bert.parent / "e6-qat", sizes=(12, 6, 6)))
    model = load_encoder({"model_source": str(tiny_bert), "variant": "qat"}, data, torch.device("meta"))
    assert any("fake_quant" in name for name, _ in model.named_buffers())
    assert {tensor.device.type for tensor in (*model.parameters(), *model.buffers())} == {"meta"}


def test_a_qat_checkpoint_predicts_the_test_split_as_its_trial_would_have(tiny_bert, tmp_path):
    """Fake quantization's weight observers move with every forward pass, evaluation included, so the probabilities a
    QAT trial computes depend on them. The checkpoint keeps them beside the float weights: predicting the test split
    from it later gives, bit for bit, what the trial would have predicted right after validating; from the weights
    alone (fresh observers) it would not."""
    data = load_dataset("emotion6", write_emotion6(tmp_path / "e6", sizes=(24, 12, 12)))
    config = {"model_source": str(tiny_bert), "variant": "qat", "eval_batch_size": 4}
    tokens = tokenize_splits(data, config)
    model = load_encoder(config, data, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = {"input_ids": torch.randint(5, 20, (6, 10)), "attention_mask": torch.ones(6, 10, dtype=torch.long)}
    for _ in range(3):  # the observers trail the weights as they train
        model(**batch).logits.pow(2).mean().backward()
        optimizer.step()

    def predict_split(model, name):
        return predict(model, *token_rows(tokens[name]), num_labels=data.num_labels, multi_label=False,
                       pad_id=tokens["pad_id"], device=torch.device("cpu"), batch_size=4, four_bit=False)[0]

    predict_split(model, "validation")
    save_model(model, tmp_path / "checkpoint" / "model", "qat")  # as the trial saves it after validating
    by_the_trial = predict_split(model, "test")
    later = predict_test_split(config, data, tmp_path / "checkpoint", torch.device("cpu"), {})["test_probs"]
    assert later.tobytes() == by_the_trial.tobytes()
    (tmp_path / "checkpoint" / "model" / FAKE_QUANT_STATE).unlink()
    fresh_observers = predict_test_split(config, data, tmp_path / "checkpoint", torch.device("cpu"), {})["test_probs"]
    assert not np.array_equal(fresh_observers, by_the_trial)


def test_qlora_on_cpu_is_placed_on_cpu_explicitly(tiny_bert):
    """With device_map None, transformers' bitsandbytes quantizer puts a 4-bit model on CUDA whenever it sees one
    (quantizer_bnb_4bit.update_device_map) while analysis feeds it CPU tensors; asked for the CPU, every weight
    is there. (Without CUDA both land on the CPU: bench/gpu_check.py is where the difference shows.)"""
    data = load_dataset("emotion6", write_emotion6(tiny_bert.parent / "e6-qlora", sizes=(12, 6, 6)))
    model = load_encoder({"model_source": str(tiny_bert), "variant": "qlora"}, data, torch.device("cpu"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    batch = {"input_ids": torch.tensor([[2, 7, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    assert model(**batch).logits.shape == (1, data.num_labels)  # CPU inputs, CPU model


def test_a_bf16_qlora_body_predicts_in_fp32_as_its_export_does(tiny_bert, tmp_path, monkeypatch):
    """A GPU trial loads its 4-bit body in bf16 (emulated here on CPU): everything outside the 4-bit layers comes in
    bf16 and peft upcasts it to fp32, and the NF4 blocks are those of the bf16-rounded weights. The trial's fp32
    predictions (four_bit_in_fp32) equal the export's, which loads the body in the recorded dtype and dequantizes it
    into fp32; an export that loaded it in fp32 (as before the dtype was recorded), or predictions left to
    bitsandbytes (its inputs cast to bf16), differ by far more than float noise."""
    from bitsandbytes.nn import Linear4bit

    from analysis.export import merged_qlora_encoder

    data = load_dataset("emotion6", write_emotion6(tmp_path / "e6", sizes=(12, 6, 6)))
    config = {"model_source": str(tiny_bert), "variant": "qlora"}
    monkeypatch.setattr(encoder_model, "body_dtype", lambda device: torch.bfloat16)
    torch.manual_seed(0)
    model = load_encoder(config, data, torch.device("cpu"))
    assert {p.dtype for p in model.parameters() if p.dtype != torch.uint8} == {torch.float32}  # NF4 packs in uint8
    assert {m.weight.quant_state.dtype for m in model.modules() if isinstance(m, Linear4bit)} == {torch.bfloat16}
    batch = {"input_ids": torch.randint(5, 20, (6, 10)), "attention_mask": torch.ones(6, 10, dtype=torch.long)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):  # adapters away from their zero start, so merging them matters
        model(**batch).logits.pow(2).mean().backward()
        optimizer.step()
    model.eval()
    with torch.no_grad(), four_bit_in_fp32(model):
        trial = model(**batch).logits
    with torch.no_grad():
        left_to_bitsandbytes = model(**batch).logits
    model.save_pretrained(tmp_path / "saved", save_embedding_layers=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported, fp32_body = (merged_qlora_encoder(config, tmp_path / "saved", data.label_names, False, dtype)
                               for dtype in ("bfloat16", "float32"))
        with torch.no_grad():
            exported, fp32_body = exported(**batch).logits, fp32_body(**batch).logits
    assert (trial - exported).abs().max() < 1e-7  # merging the adapters rounds in the last bits (measured 1.5e-8)
    assert (trial - fp32_body).abs().max() > 1e-6 and (trial - left_to_bitsandbytes).abs().max() > 1e-6  # 1e-4, 9e-6
    assert all(m.compute_dtype == torch.bfloat16 for m in model.modules() if isinstance(m, Linear4bit))  # restored


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_a_training_loss_that_is_not_finite_stops_the_trial(loss):
    assert loss_value(torch.tensor(0.25), 0) == 0.25
    with pytest.raises(FloatingPointError, match="epoch 3: training loss is"):
        loss_value(torch.tensor(loss), 2)


def test_dropout_sets_every_body_and_head_dropout_and_none_keeps_the_checkpoints(tiny_bert):
    """`dropout` 0 makes a training-mode forward deterministic (attention dropout included: the encoders read it
    from the module at each forward); None keeps the checkpoint's own, so two training-mode forwards differ.
    QLoRA's adapters keep their `lora_dropout`; an impossible probability is refused by name."""
    data = load_dataset("emotion6", write_emotion6(tiny_bert.parent / "e6-dropout", sizes=(12, 6, 6)))
    batch = {"input_ids": torch.randint(5, 20, (4, 9)), "attention_mask": torch.ones(4, 9, dtype=torch.long)}

    def two_training_forwards(config):
        model = load_encoder({"model_source": str(tiny_bert), **config}, data, torch.device("cpu")).train()
        with torch.no_grad():
            return model, model(**batch).logits, model(**batch).logits

    model, first, second = two_training_forwards({"dropout": 0.0})
    assert torch.equal(first, second)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    _, first, second = two_training_forwards({"dropout": None})
    assert not torch.equal(first, second)
    qlora = load_encoder({"model_source": str(tiny_bert), "variant": "qlora", "dropout": 0.0, "lora_dropout": 0.2},
                         data, torch.device("cpu"))
    probabilities = {name: m.p for name, m in qlora.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {p for name, p in probabilities.items() if "lora_dropout" in name} == {0.2}
    assert {p for name, p in probabilities.items() if "lora_dropout" not in name} == {0.0}
    with pytest.raises(ValueError, match="dropout: 1.5"):
        load_encoder({"model_source": str(tiny_bert), "dropout": 1.5}, data, torch.device("cpu"))


def test_cpu_attention_is_eager_and_gives_sdpas_probabilities(tiny_bert, tmp_path):
    """On CPU the encoder trains and predicts with transformers' eager attention (faster per step there), which must
    compute what its default SDPA computes: the same probabilities to float noise, padded rows included."""
    data = load_dataset("emotion6", write_emotion6(tmp_path / "e6", sizes=(12, 6, 6)))
    config = {"model_source": str(tiny_bert), "eval_batch_size": 4}
    tokens = tokenize_splits(data, config)
    model = load_encoder(config, data, torch.device("cpu"))
    assert model.config._attn_implementation == "eager"

    def probabilities():
        return predict(model, *token_rows(tokens["validation"]), num_labels=data.num_labels, multi_label=False,
                       pad_id=tokens["pad_id"], device=torch.device("cpu"), batch_size=4, four_bit=False)[0]

    eager = probabilities()
    model.set_attn_implementation("sdpa")
    np.testing.assert_allclose(probabilities(), eager, atol=1e-6)
