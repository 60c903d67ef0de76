"""Dynamic INT8 of a model's Linear layers, its latency measurement, and one line for a bad experiment dir."""

import torch

from analysis.inference import quantize_int8
from analysis.quantize import latency_ms, main, timing_batches


def test_quantized_linear_layers_and_latency():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64)).eval()
    int8 = quantize_int8(model)
    linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.modules()) == linear > 0
    assert not any(type(m) is torch.nn.Linear for m in int8.modules())  # every Linear became INT8
    batches = timing_batches([list(range(1, 3 + i % 7)) for i in range(70)], pad_id=0, count=2)
    assert [b["input_ids"].shape[0] for b in batches] == [32, 32]
    times = [latency_ms(m, batches, repeats=3) for m in (model, int8)]
    assert all(0 < t < 1000 for t in times)
    with torch.inference_mode():
        logits = [m(**batches[0]).logits for m in (model, int8)]
    assert (logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean() >= 0.9


def test_bad_experiment_dirs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no Tune trials found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main([str(tmp_path), "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --threads 0: must be >= 1"
