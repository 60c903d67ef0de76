"""Post-training INT8 of a best trial from a real (tiny) sweep: the INT8 model predicts like the FP32 one, its
thresholds are chosen on validation, latency is measured and sane, and bad experiment dirs give one line."""
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.quantize import write_quantization
from tests.helpers.data import write_goemotions
from tests.helpers.models import build_tiny_bert
from tests.helpers.sweeps import run_sweep


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One finished single-label GoEmotions sweep of a tiny BERT (a real local Ray cluster)."""
    root = tmp_path_factory.mktemp("quantize")
    data = write_goemotions(root / "data", sizes=(160, 64, 64))
    texts = [line.split("\t")[0] for f in ("train.tsv", "dev.tsv", "test.tsv")
             for line in (data / f).read_text().splitlines()]
    model = build_tiny_bert(root / "tiny-bert", texts)
    result = run_sweep("goemotions_simplified.py", "--data-dir", str(data), "--models", str(model),
                       "--budget", "smoke", "--num-samples", "1", "--epochs", "2", "--lr", "3e-3",
                       "--train-rows", "160", "--val-rows", "64", "--test-rows", "64",
                       "--storage", str(root / "runs"), "--name", "single", "--no-dashboard")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "single"


def test_int8_agrees_with_fp32_and_is_measured(experiment):
    text = write_quantization(experiment, threads=1, repeats=3)
    saved = json.loads((experiment / "quantization.json").read_text())
    [row] = saved["rows"]
    assert saved["environment"]["threads"] == 1 and saved["environment"]["library"] == "torch.ao"
    assert row["test_agreement"] >= 0.9  # argmax of INT8 probabilities matches FP32 on most test rows
    assert row["test_max_prob_diff"] < 0.05
    assert abs(row["delta_test_macro_f1"]) <= 0.1
    best = json.loads((experiment / "best_trials.json").read_text())[0]
    assert row["fp32_test_macro_f1"] == pytest.approx(best["test_macro_f1"])  # FP32 is the trial's own result
    assert row["dataset_metric"] == "accuracy" and 0 <= row["int8_test_accuracy"] <= 1
    assert 0 < row["fp32_latency_ms"] < 1000 and 0 < row["int8_latency_ms"] < 1000
    assert row["int8_size_mb"] < row["fp32_size_mb"] and row["params_m"] > 0
    assert row["trial_dir"] == best["trial_dir"] and f"[{Path(best['trial_dir']).name}](" in text


def test_rows_are_read_again_as_the_sweep_subsampled_them(experiment, tmp_path):
    """INT8 predicts the sweep's own val/test rows again; if the data source changed, the trial is skipped."""
    import shutil

    from analysis.quantize import sweep_eval_data

    best = json.loads((experiment / "best_trials.json").read_text())[0]
    with np.load(f"{best['trial_dir']}/{best['checkpoint']}/predictions.npz") as saved:
        dataset, data = sweep_eval_data(experiment)
        assert dataset == "goemotions_single"
        assert np.array_equal(data.validation.labels, saved["val_labels"])
        assert np.array_equal(data.test.labels, saved["test_labels"])

    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    sweep = json.loads((copy / "sweep.json").read_text())
    changed = write_goemotions(tmp_path / "other-data", sizes=(160, 64, 64))
    (changed / "test.tsv").write_text("".join(sorted((changed / "test.tsv").read_text().splitlines(True))))
    (copy / "sweep.json").write_text(json.dumps({**sweep, "data_source": str(changed)}))
    text = write_quantization(copy, repeats=1)
    assert json.loads((copy / "quantization.json").read_text())["rows"] == []
    assert "test_labels: the sweep's data source no longer gives the rows this trial predicted" in text
