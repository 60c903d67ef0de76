"""Use the winner: a tiny real sweep (real Ray and Optuna, its winner confirmed with a second seed) is exported with
analysis.export; transformers' pipeline loads the export offline, and analysis.predict on the sweep's own test texts
gives exactly the labels the sweep's analysis reported, in every input and output format. Bad export dirs and
inputs are one line, exit 2, and no output file."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from analysis import export, predict
from analysis.trials import read_json
from tests.helpers.sweeps import REPO, run_sweep
from trainables.data import load_sweep_data


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, goemotions_dir, tiny_bert):
    storage = tmp_path_factory.mktemp("export")
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--num-samples", "1", "--epochs", "2", "--lr", "3e-3",
                       "--confirm-seeds", "1", "--storage", str(storage), "--name", "winner", "--no-dashboard")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = storage / "winner"
    return sweep_dir, load_sweep_data(read_json(sweep_dir / "sweep.json")).test.texts


@pytest.fixture(scope="module")
def exported(sweep):
    sweep_dir, _ = sweep
    assert export.main([str(sweep_dir)]) == 0
    return sweep_dir / "export" / read_json(sweep_dir / "best_trials.json")[0]["model"]


def ensemble_of(sweep_dir):
    [row] = read_json(sweep_dir / "ensembles.json")
    with np.load(row["predictions"]) as npz:
        return row, dict(npz)


def test_export_holds_the_seed_ensemble_and_its_decision_rule(sweep, exported):
    sweep_dir, _ = sweep
    row, arrays = ensemble_of(sweep_dir)
    rule = read_json(exported / "decision.json")
    assert rule["task"] == "multi_label" and rule["metric"] == "macro_f1"
    assert rule["labels"] == [str(name) for name in arrays["label_names"]]
    assert np.array_equal(np.array(rule["thresholds"], dtype=np.float32), arrays["per_class_thresholds"])
    provenance = rule["provenance"]
    best_seed = read_json(sweep_dir / "best_trials.json")[0]["config_seed"]
    assert provenance["seeds"] == [best_seed, best_seed + 1]
    assert rule["members"] == [".", f"members/seed-{best_seed + 1}"]
    assert provenance["trials"] == [os.path.realpath(member) for member in row["members"]]
    assert provenance["scores"]["test"]["macro_f1"] == pytest.approx(row["test_macro_f1"], abs=1e-6)
    assert provenance["sweep_versions"]["torch"] and provenance["config"]["lr"] == 3e-3
    for member in rule["members"]:  # each a plain model dir: weights, config with the label names, tokenizer
        config = read_json(exported / member / "config.json")
        assert config["id2label"]["0"] == rule["labels"][0] and (exported / member / "model.safetensors").is_file()
        assert (exported / member / "tokenizer.json").is_file()


def test_pipeline_loads_the_export_offline(sweep, exported, monkeypatch):
    from transformers import pipeline

    sweep_dir, texts = sweep
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    [best] = read_json(sweep_dir / "best_trials.json")
    with np.load(f"{best['trial_dir']}/{best['checkpoint']}/predictions.npz") as npz:
        trial_probs, names = npz["test_probs"], [str(name) for name in npz["label_names"]]
    classify = pipeline("text-classification", model=str(exported), top_k=None)
    for output, probs in zip(classify(texts[:4]), trial_probs):  # the export's own dir is the search's best trial
        scores = {item["label"]: item["score"] for item in output}
        assert [scores[name] for name in names] == pytest.approx(probs.tolist(), abs=1e-5)


def test_predict_reproduces_the_sweeps_test_labels(sweep, exported, tmp_path):
    sweep_dir, texts = sweep
    _, arrays = ensemble_of(sweep_dir)
    names = np.array([str(name) for name in arrays["label_names"]])
    expected = [names[row >= arrays["per_class_thresholds"]].tolist() for row in arrays["test_probs"]]
    assert len({tuple(labels) for labels in expected}) > 1  # the rule tells these texts apart
    (tmp_path / "test.txt").write_text("\n".join(texts) + "\n")
    with open(tmp_path / "test.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "Text"], *([str(i), text] for i, text in enumerate(texts))])
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))

    for source in ("test.txt", "test.csv", "test.jsonl"):
        out = tmp_path / f"{source}.out.jsonl"
        assert predict.main([str(exported), "--input", str(tmp_path / source), "--output", str(out),
                             "--probabilities"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [row["text"] for row in rows] == texts, source
        assert [row["labels"] for row in rows] == expected, source
        probs = np.array([[row["probabilities"][name] for name in names] for row in rows])
        assert probs == pytest.approx(arrays["test_probs"], abs=1e-6)

    # CSV out; stdin in, as a shell pipe would give it, JSONL on stdout
    assert predict.main([str(exported), "--input", str(tmp_path / "test.txt"), "--output",
                         str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv", newline="") as handle:
        assert [row["labels"].split(";") if row["labels"] else [] for row in csv.DictReader(handle)] == expected
    piped = subprocess.run([sys.executable, "-m", "analysis.predict", str(exported)], input="\n".join(texts[:5]),
                           capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert [json.loads(line)["labels"] for line in piped.stdout.splitlines()] == expected[:5]


def test_single_exports_the_best_trial_with_its_own_thresholds(sweep, tmp_path):
    sweep_dir, texts = sweep
    assert export.main([str(sweep_dir), "--single"]) == 0
    [best] = read_json(sweep_dir / "best_trials.json")
    out = sweep_dir / "export" / f"{best['model']}-single"
    rule = read_json(out / "decision.json")
    assert rule["members"] == ["."] and not (out / "members").exists()
    with np.load(f"{best['trial_dir']}/{best['checkpoint']}/predictions.npz") as npz:
        assert np.array_equal(np.array(rule["thresholds"], dtype=np.float32), npz["per_class_thresholds"])
        _, decision, probs = predict.predict(out, texts)
        assert np.array_equal(decision.apply(probs), (npz["test_probs"] >= npz["per_class_thresholds"]).astype(int))


def test_int8_predictions_stay_close_to_fp32(sweep, exported):
    _, texts = sweep
    _, _, fp32 = predict.predict(exported, texts)
    _, _, int8 = predict.predict(exported, texts, int8=True)
    assert not np.array_equal(fp32, int8)  # the Linear layers did run in INT8
    assert np.abs(fp32 - int8).max() < 0.05


def test_an_unknown_model_or_a_foreign_out_dir_is_refused(sweep, tmp_path, capsys):
    sweep_dir, _ = sweep
    assert export.main([str(sweep_dir), "--model", "nope", "--out", str(tmp_path / "x")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --model nope: not a model of") and not (tmp_path / "x").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert export.main([str(sweep_dir), "--out", str(tmp_path / "mine")]) == 2
    assert "is not an export" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").is_file()


@pytest.mark.parametrize("problem, expected", [
    ("no decision file", "decision.json: not found"),
    ("no weights", "model.safetensors: not found"),
    ("no text column", "input.csv: no text column (columns: id, body); pass --text-column"),
    ("empty line", "input.txt:2: empty text"),
    ("not UTF-8", "input.txt:3: not UTF-8 (byte 0xff at column 5)"),
])
def test_bad_exports_and_inputs_are_one_line_and_write_nothing(exported, tmp_path, capsys, problem, expected):
    export_dir = tmp_path / "export"
    shutil.copytree(exported, export_dir)
    source = tmp_path / "input.txt"
    source.write_text("I love it\nthanks a lot\n")
    if problem == "no decision file":
        (export_dir / "decision.json").unlink()
    elif problem == "no weights":
        (export_dir / "members" / os.listdir(export_dir / "members")[0] / "model.safetensors").unlink()
    elif problem == "no text column":
        source = tmp_path / "input.csv"
        source.write_text("id,body\n1,I love it\n")
    elif problem == "empty line":
        source.write_text("I love it\n  \nthanks\n")
    else:
        source.write_bytes(b"I love it\nthanks\nnot \xff utf-8\n")
    out = tmp_path / "out.jsonl"
    assert predict.main([str(export_dir), "--input", str(source), "--output", str(out)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and expected in line
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []
