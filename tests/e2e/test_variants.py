"""Encoder variants on dair-ai emotion: sweeps/emotion6.py runs baseline, QAT and QLoRA as separate studies of a
tiny BERT (real Ray, Optuna, torch.ao fake quantization, bitsandbytes 4-bit and peft on CPU), and
analysis.variants serves each best trial as FP32 / PTQ INT8 / QAT INT8 / QLoRA NF4 in one measured table."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from analysis.report import build_report
from analysis.variants import write_variants
from tests.helpers.data import write_emotion6
from tests.helpers.models import build_tiny_bert
from tests.helpers.sweeps import run_sweep
from trainables.data import load_dataset
from trainables.encoder_model import fake_quantize_linears


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    data_dir = write_emotion6(root / "e6", sizes=(120, 60, 60))
    data = load_dataset("emotion6", data_dir)
    model = build_tiny_bert(root / "tiny", [t for s in (data.train, data.validation, data.test) for t in s.texts])
    result = run_sweep("emotion6.py", "--data-dir", str(data_dir), "--models", str(model), "--budget", "smoke",
                       "--num-samples", "1", "--epochs", "2", "--lr", "3e-3", "--storage", str(root / "runs"),
                       "--name", "variants", "--no-dashboard")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "variants", result.stdout


def trial_dir(sweep_dir, study):
    [trial] = [p.parent for p in sweep_dir.glob(f"{study}_*/params.json")]
    return trial


def best_checkpoint(sweep_dir, study):
    [row] = [r for r in json.loads((sweep_dir / "best_trials.json").read_text()) if r["model"] == study]
    return trial_dir(sweep_dir, study) / row["checkpoint"]


def test_each_variant_is_its_own_study(experiment):
    sweep_dir, stdout = experiment
    for variant in ("baseline", "qat", "qlora"):
        params = json.loads((trial_dir(sweep_dir, f"tiny-{variant}") / "params.json").read_text())
        assert params["variant"] == variant and params["model"] == f"tiny-{variant}"
        assert ("lora_r" in params) == (variant == "qlora")  # LoRA keys are searched only where they apply
    qlora = json.loads((trial_dir(sweep_dir, "tiny-qlora") / "params.json").read_text())
    assert (qlora["lora_r"], qlora["lora_alpha"], qlora["lora_dropout"]) == (16, 32, 0.1)  # the default point
    assert "first trial at" in stdout


def test_qat_checkpoint_holds_plain_float_weights(experiment):
    sweep_dir, _ = experiment
    keys = load_file(best_checkpoint(sweep_dir, "tiny-qat") / "model" / "model.safetensors").keys()
    assert "classifier.weight" in keys and not any("fake_quant" in key for key in keys)


def test_qat_trains_every_linear_through_int8_fake_quantization(experiment, tmp_path):
    from transformers import AutoModelForSequenceClassification

    sweep_dir, _ = experiment
    source = json.loads((trial_dir(sweep_dir, "tiny-qat") / "params.json").read_text())["model_source"]
    model = AutoModelForSequenceClassification.from_pretrained(source)
    inputs = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    float_logits = model(**inputs).logits.detach()
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    fake_quantize_linears(model)
    assert sum(type(m) is torch.nn.Linear for m in model.modules()) == 0
    assert sum(type(m).__name__ == "Linear" and hasattr(m, "weight_fake_quant") for m in model.modules()) == linears
    logits = model(**inputs).logits
    assert not torch.equal(logits.detach(), float_logits)  # weights are rounded to INT8 in the forward pass
    logits.sum().backward()
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0


def test_qlora_checkpoint_holds_adapters_and_head_only(experiment):
    sweep_dir, _ = experiment
    model_dir = best_checkpoint(sweep_dir, "tiny-qlora") / "model"
    config = json.loads((model_dir / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 32, 0.1)
    assert set(config["target_modules"]) == {"query", "key", "value"}
    assert {"classifier", "pooler"} <= set(config["modules_to_save"])  # the head and BERT's [CLS] pooler train
    keys = load_file(model_dir / "adapter_model.safetensors").keys()
    assert any("lora_A" in key for key in keys) and any("classifier" in key for key in keys)
    assert not any("embeddings" in key or "intermediate" in key for key in keys)  # no base weights
    result = json.loads((trial_dir(sweep_dir, "tiny-qlora") / "result.json").read_text().splitlines()[-1])
    assert 0 < result["trainable_params_m"] < result["params_m"]


def test_variants_table_serves_each_best_trial_and_measures_it(experiment):
    sweep_dir, _ = experiment
    text = write_variants(sweep_dir, threads=1, repeats=2)
    rows = json.loads((sweep_dir / "variants.json").read_text())["rows"]
    assert [(r["model"], r["form"]) for r in rows] == [("tiny", "FP32"), ("tiny", "PTQ INT8"), ("tiny", "QAT INT8"),
                                                       ("tiny", "QLoRA NF4")]
    best = {r["model"]: r for r in json.loads((sweep_dir / "best_trials.json").read_text())}
    by_form = {r["form"]: r for r in rows}
    # Reloading the checkpoints reproduces the trials' own predictions (QLoRA: 4-bit body + saved adapters).
    assert by_form["FP32"]["test_max_prob_diff_from_trial"] < 1e-5
    assert by_form["QLoRA NF4"]["test_max_prob_diff_from_trial"] < 1e-4
    assert by_form["QLoRA NF4"]["test_agreement_with_trial"] == 1.0
    assert by_form["FP32"]["test_macro_f1"] == pytest.approx(best["tiny-baseline"]["test_macro_f1"])
    assert by_form["PTQ INT8"]["test_agreement_with_trial"] >= 0.9
    for row in rows:
        assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["test_macro_f1"] <= 1
        assert row["total_inference_s"] > 0 and row["threads"] == 1
        assert row["per_sample_ms"] == pytest.approx(1000 * row["total_inference_s"] / row["test_rows"])
    assert by_form["PTQ INT8"]["size_mb"] < by_form["FP32"]["size_mb"]
    assert text.count("| tiny |") == 4

    report, _ = build_report([sweep_dir], sweep_dir.parent / "report", resamples=50)
    table4 = report.split("## Table 4")[1].split("##")[0]
    assert [line.split(" | ")[2] for line in table4.splitlines() if line.startswith("| tiny")] == \
        ["FP32", "PTQ INT8", "QAT INT8", "QLoRA NF4"]
    assert "| sadness |" in report or "| joy |" in report  # class names come with the saved predictions


def test_label_names_are_saved_with_predictions(experiment):
    sweep_dir, _ = experiment
    with np.load(best_checkpoint(sweep_dir, "tiny-qlora") / "predictions.npz") as arrays:
        assert list(arrays["label_names"]) == ["sadness", "joy", "love", "anger", "fear", "surprise"]


@pytest.mark.parametrize("study", ["tiny-baseline", "tiny-qat", "tiny-qlora"])
def test_each_variant_exports_to_plain_weights_that_predict_as_the_trial_did(experiment, tmp_path, study):
    """QLoRA is merged into the dequantized body (the weights its adapters trained against), so its export needs
    neither bitsandbytes nor peft; QAT exports its float weights (its trial predicted through fake quantization,
    so probabilities differ in the 4th decimal, and the argmax does not)."""
    from analysis import export, predict
    from analysis.trials import read_json
    from trainables.data import load_sweep_data

    sweep_dir, _ = experiment
    out = tmp_path / study
    assert export.main([str(sweep_dir), "--model", study, "--out", str(out)]) == 0
    rule = read_json(out / "decision.json")
    assert rule["task"] == "single_label" and rule["members"] == ["."] and "thresholds" not in rule
    assert not (out / "adapter_config.json").exists() and "quantization_config" not in read_json(out / "config.json")
    texts = load_sweep_data(read_json(sweep_dir / "sweep.json")).test.texts
    _, decision, probs = predict.predict(out, texts)
    with np.load(best_checkpoint(sweep_dir, study) / "predictions.npz") as arrays:
        assert probs == pytest.approx(arrays["test_probs"], abs=1e-3 if study == "tiny-qat" else 1e-5)
        assert np.array_equal(decision.apply(probs).argmax(axis=1), arrays["test_probs"].argmax(axis=1))
