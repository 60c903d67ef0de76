"""The report on real (tiny) finished sweeps, one multi-label and one single-label, the multi-label one with
W&B offline and INT8 numbers: its tables have one row per best trial, figures are real PNGs, bad dirs are
listed apart; bootstrap intervals and the FN/FP-heavy marks are checked on planted predictions."""
import json
import os
import re
import shutil

import matplotlib.pyplot as plt
import pytest

from analysis.quantize import write_quantization
from analysis.report import build_report
from tests.helpers.data import write_goemotions
from tests.helpers.models import build_tiny_bert
from tests.helpers.sweeps import REPO, finish, start_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = write_goemotions(root / "data")
    texts = [line.split("\t")[0] for f in ("train.tsv", "dev.tsv", "test.tsv")
             for line in (data / f).read_text().splitlines()]
    model = build_tiny_bert(root / "tiny-bert", texts)
    common = ("--data-dir", str(data), "--models", str(model), "--budget", "smoke", "--num-samples", "1",
              "--storage", str(root / "runs"), "--no-dashboard", "--test-rows", "48")
    # both sweeps at once, each on its own private Ray: most of a tiny sweep waits for Ray, so this saves a sweep
    sweeps = [start_sweep(REPO / "sweeps" / script, *common, "--name", name, *extra)
              for script, name, extra in (("goemotions_raw.py", "raw", ("--wandb", "offline")),
                                          ("goemotions_simplified.py", "single", ()))]
    for proc in sweeps:
        output = finish(proc)
        assert proc.returncode == 0, output[-3000:]
    write_quantization(root / "runs" / "raw", repeats=2)
    return root


def test_report_tables_figures_and_skipped(experiments, tmp_path):
    runs = experiments / "runs"
    broken = tmp_path / "broken"  # a finished sweep whose only trial lost its predictions
    shutil.copytree(runs / "single", broken)
    for npz in broken.glob("*/checkpoint_*/predictions.npz"):
        npz.unlink()
    (tmp_path / "not_an_experiment").mkdir()
    out = tmp_path / "report"
    text, skipped = build_report([runs / "raw", runs / "single", broken, tmp_path / "not_an_experiment"], out,
                                 resamples=200)

    assert (out / "report.md").read_text() == text
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    rows = [line for line in table1.splitlines() if line.startswith("| tiny-bert")]
    assert len(rows) == 2 and "goemotions_raw (multi-label)" in rows[0] and "(single-label)" in rows[1]
    trial = next((runs / "raw").glob("tiny-bert_*"))
    assert f"]({os.path.relpath(trial, out)})" in rows[0]  # every number links to its trial dir

    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    efficiency = [line for line in table2.splitlines() if line.startswith("| tiny-bert")]
    assert len(efficiency) == 2 and "not measured" in efficiency[1] and "not measured" not in efficiency[0]
    trials = len(list((runs / "raw").glob("tiny-bert_*/params.json")))
    assert f"| {trials} | " in efficiency[0]  # the model's trial count and cost beside its efficiency
    assert re.search(rf"- raw: Sweep cost: {trials} trials, [\d,]+ CPU-s", table2)
    table3 = text.split("## Table 3")[1].split("## Figures")[0]
    assert len([line for line in table3.splitlines() if line.startswith("| tiny-bert")]) == 1

    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == ["confusion_goemotions_simplified__single_label_tiny_bert.png", "fp32_vs_int8.png",
                       "latency_vs_macro_f1.png", "macro_f1_by_model.png"]
    for name in figures:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        image = plt.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0
        assert f"![{name[:-4]}]({name})" in text

    assert "FN-heavy" in text or "FP-heavy" in text
    assert any(str(broken) in line and "no predictions.npz" in line for line in skipped)
    assert any(f"{broken}: no successful trial" in line for line in skipped)
    assert any("not_an_experiment: not a finished sweep experiment" in line for line in skipped)
    assert "## Skipped" in text


def test_report_logs_tables_to_the_sweeps_wandb_group(experiments, tmp_path):
    raw = experiments / "runs" / "raw"
    assert json.loads((raw / "sweep.json").read_text())["wandb"] == "offline"
    build_report([raw], tmp_path / "report", resamples=50)
    tables = list((raw / "wandb").glob("offline-run-*/files/media/table/table1_macro_f1*.table.json"))
    assert len(tables) >= 1
    logged = json.loads(tables[-1].read_text())
    assert "test_macro_f1" in logged["columns"] and len(logged["data"]) == 1
    run_dir = tables[-1].parents[3]  # the report run sits beside the trials' runs in the sweep's dir
    assert list(run_dir.glob("run-*.wandb")) and list(run_dir.glob("files/media/images/figure/*.png"))
