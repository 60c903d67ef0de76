"""Both QLoRA decoder modes through real sweeps: generation (label names as text) and a classification head;
what their checkpoints hold (test predictions only where the tables report them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from tests.helpers.sweeps import checkpoints_with_test_predictions, reported_checkpoints, run_sweep
from trainables.labels_text import TEMPLATES


def sweep(storage: Path, name: str, data_dir: Path, model: Path, *extra: str):
    return run_sweep("qlora_goemotions.py", "--data-dir", str(data_dir), "--models", str(model),
                     "--budget", "smoke", "--search", "random", "--storage", str(storage), "--name", name,
                     "--no-dashboard", *extra)


def trial_dirs(storage: Path, name: str, model: Path) -> list[Path]:
    return sorted(p.parent for p in (storage / name).glob(f"{model.name}*/params.json"))


def check_checkpoints(trials: list[Path], allowed: tuple[str, ...]) -> list[dict]:
    """Every checkpoint holds adapters (+ head) only, the resume state, and the encoder's prediction keys; the test
    predictions are there for the reported checkpoints only. Returns the reported checkpoints' predictions."""
    sweep_dir = trials[0].parent
    reported = reported_checkpoints(sweep_dir)
    assert checkpoints_with_test_predictions(sweep_dir)[0] == reported
    best = []
    for trial in trials:
        checkpoints = sorted(trial.glob("checkpoint_*"))
        assert checkpoints, trial
        for checkpoint in checkpoints:
            files = {p.name for p in checkpoint.rglob("*") if p.is_file()}
            assert files == {"adapter_config.json", "adapter_model.safetensors", "training_state.pt",
                             "predictions.npz"} | ({"README.md"} & files), files
            keys = list(load_file(checkpoint / "adapter" / "adapter_model.safetensors"))
            assert keys and all(any(part in key for part in allowed) for key in keys), keys
            with np.load(checkpoint / "predictions.npz") as npz:
                arrays = dict(npz)
            assert {"epoch", "val_macro_f1", "val_probs", "val_labels", "global_threshold",
                    "per_class_thresholds"} <= set(arrays)
            assert arrays["val_probs"].shape == arrays["val_labels"].shape == (32, 28)
            assert np.all((arrays["val_probs"] >= 0) & (arrays["val_probs"] <= 1))
            if (str(trial), checkpoint.name) in reported:
                assert arrays["test_probs"].shape == arrays["test_labels"].shape == (32, 28)
                best.append(arrays)
    return best


def test_generation_mode_sweep_trains_two_trials_and_reports_both_decision_rules(tmp_path, goemotions_dir,
                                                                                 tiny_qwen):
    result = sweep(tmp_path, "gen", goemotions_dir, tiny_qwen, "--mode", "generation")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'mode': 'generation'" in result.stdout and "template" in result.stdout  # the plan
    trials = trial_dirs(tmp_path, "gen", tiny_qwen)
    assert len(trials) == 2
    for arrays in check_checkpoints(trials, ("lora_A", "lora_B")):
        assert arrays["val_generated"].shape == (32, 28) and set(np.unique(arrays["val_generated"])) <= {0, 1}
        assert arrays["test_generated"].shape == (32, 28)  # the test split has labels to score the answers against
    for trial in trials:
        results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert {"val_macro_f1", "val_macro_f1_generation", "val_jaccard_generation", "parse_failure_rate",
                "train_s_per_step"} <= set(results[-1])
        assert 0.0 <= results[-1]["parse_failure_rate"] <= 1.0
        assert json.loads((trial / "params.json").read_text())["template"] in TEMPLATES
    table = (tmp_path / "gen" / "best_trials.md").read_text()
    assert "val_macro_f1_generation" in table and "parse_failure_rate" in table


def test_head_mode_sweep_trains_lora_and_the_score_head_only(tmp_path, goemotions_dir, tiny_qwen):
    result = sweep(tmp_path, "head", goemotions_dir, tiny_qwen, "--mode", "head")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = trial_dirs(tmp_path, "head", tiny_qwen)
    assert len(trials) == 2
    check_checkpoints(trials, ("lora_A", "lora_B", "score"))
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        assert params["mode"] == "head" and "template" not in params  # a head has no prompt to search
        keys = list(load_file(next(trial.glob("checkpoint_*")) / "adapter" / "adapter_model.safetensors"))
        assert any("score" in key for key in keys)
    assert "val_macro_f1" in (tmp_path / "head" / "best_trials.md").read_text()

    # exported: the adapters and head, the tokenizer and the decision rule, naming the base they load on
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from analysis import export, predict

    assert export.main([str(tmp_path / "head"), "--out", str(tmp_path / "export")]) == 0
    rule = json.loads((tmp_path / "export" / "decision.json").read_text())
    assert rule["kind"] == "decoder_adapter" and rule["base"]["source"] == str(tiny_qwen)
    assert rule["predict_dtype"] == rule["body_compute_dtype"] == "float32"  # evaluated as trained: fp32 on CPU
    assert len(rule["thresholds"]) == 28 and (tmp_path / "export" / "tokenizer_config.json").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(rule["base"]["source"], num_labels=28)
    model = PeftModel.from_pretrained(base, tmp_path / "export")
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert predict.main([str(tmp_path / "export"), "--input", str(goemotions_dir / "labels.txt")]) == 2
