"""Use the winner: a tiny real sweep (real Ray and Optuna, its winner confirmed with a second seed) is exported with
analysis.export (its seed ensemble, its best trial alone, and its trial ensemble with --ensemble trials);
transformers' pipeline loads the export offline, and analysis.predict on the sweep's own test texts gives exactly the
labels the sweep's analysis reported, in every input and output format, and from them every test score its tables
report. Bad export dirs and inputs are one line, exit 2, and no output file."""
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from analysis import export, predict
from analysis.trials import read_json
from bench.gpu_check import round_trip_verdict
from tests.helpers.sweeps import REPO, run_sweep
from trainables.data import load_sweep_data
from trainables.device import native_bf16_cpu


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


def ensemble_of(sweep_dir, kind: str = "seeds"):
    """The sweep's seed ensemble (or trial ensemble) as ensembles.json records it, with its saved predictions."""
    [row] = [row for row in read_json(sweep_dir / "ensembles.json") if row["kind"] == kind]
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
    assert rule["members"] == [".", f"members/seed-{best_seed + 1}"] and rule["weights"] == [1, 1]
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


def test_round_trip_verdict_passes_for_the_single_export_and_names_a_score_it_does_not_give_back(sweep, tmp_path):
    """bench.gpu_check's round trip judged on this sweep: its best trial exported alone gives back every test score
    best_trials.json reports for it; a table whose test_jaccard is 0.01 off fails, naming it."""
    sweep_dir, texts = sweep
    out = tmp_path / "single"
    assert export.main([str(sweep_dir), "--single", "--out", str(out)]) == 0
    verdict, note = round_trip_verdict(sweep_dir, out)
    assert verdict == "PASS", note
    assert note.endswith(f"largest difference 0.0e+00; 0 of {len(texts)} test rows decided otherwise than the trial "
                         f"did)")

    tampered = tmp_path / "tampered"  # the two files the verdict reads from a sweep dir; trial dirs stay where they are
    tampered.mkdir()
    shutil.copy(sweep_dir / "sweep.json", tampered)
    [best] = read_json(sweep_dir / "best_trials.json")
    (tampered / "best_trials.json").write_text(json.dumps([{**best, "test_jaccard": best["test_jaccard"] + 0.01}]))
    verdict, note = round_trip_verdict(tampered, out)
    assert verdict == "FAIL"
    assert note.startswith(f"{best['model']}: test_jaccard {best['test_jaccard'] + 0.01:.4f} reported, "
                           f"{best['test_jaccard']:.4f} from the export; largest difference 1.0e-02; 0 of ")


def scores_at(probs: np.ndarray, labels: np.ndarray, per_class: list[float], global_threshold: float | None = None
                ) -> dict:
    """The test scores the tables report, by scikit-learn from 0/1 decisions at the given thresholds."""
    scores = {}
    for suffix, thresholds in (("", np.array(per_class)), ("_global", global_threshold)):
        if thresholds is None:
            continue
        predicted = (probs >= thresholds).astype(int)
        scores.update({f"test_macro_f1{suffix}": f1_score(labels, predicted, average="macro", zero_division=0),
                       f"test_micro_f1{suffix}": f1_score(labels, predicted, average="micro", zero_division=0),
                       f"test_jaccard{suffix}": jaccard_score(labels, predicted, average="samples", zero_division=1)})
    scores["test_f1"] = f1_score(labels, (probs >= np.array(per_class)).astype(int), average=None, zero_division=0)
    return scores


def test_every_reported_test_score_comes_back_from_the_export(sweep, exported, tmp_path):
    """One precision story: the trials trained under bf16 autocast (where this CPU has it natively) and computed
    the probabilities behind their thresholds and scores in fp32, as recorded; analysis.predict on the exports then
    gives, against the dataset's test labels, every test score of best_trials.json (the best trial, its seeds' mean
    and sd), ensembles.json (the seed ensemble), per_class_f1.csv and decision.json, to the last bit."""
    sweep_dir, texts = sweep
    labels = load_sweep_data(read_json(sweep_dir / "sweep.json")).test.labels
    [best], (joint, _) = read_json(sweep_dir / "best_trials.json"), ensemble_of(sweep_dir)
    rule = read_json(exported / "decision.json")
    for trial in rule["provenance"]["trials"]:
        last = json.loads((Path(trial) / "result.json").read_text().splitlines()[-1])
        assert last["train_dtype"] == ("bfloat16" if native_bf16_cpu() else "float32")
        assert last["predict_dtype"] == rule["predict_dtype"] == "float32" and "body_compute_dtype" not in rule
    assert export.main([str(sweep_dir), "--single", "--out", str(tmp_path / "single")]) == 0
    single = read_json(tmp_path / "single" / "decision.json")

    _, _, ensemble_probs = predict.predict(exported, texts)
    _, _, best_probs = predict.predict(tmp_path / "single", texts)
    seed_probs = predict.member_probs(exported, texts)[2][1]
    ensemble = scores_at(ensemble_probs, labels, rule["thresholds"], rule["global_threshold"])
    alone = scores_at(best_probs, labels, single["thresholds"], single["global_threshold"])
    seed = scores_at(seed_probs, labels, rule["member_thresholds"][1])
    macro = [alone["test_macro_f1"], seed["test_macro_f1"]]
    alone.update(test_macro_f1_mean=statistics.fmean(macro), test_macro_f1_sd=statistics.stdev(macro))

    for row, recomputed in ((best, alone), (joint, ensemble)):
        reported = {key: value for key, value in row.items() if key.startswith("test_")}
        assert reported and reported == {key: recomputed[key] for key in reported}, row["model"]
    with open(sweep_dir / "per_class_f1.csv", newline="") as handle:
        per_class = [float(entry["test_f1"]) for entry in csv.DictReader(handle) if entry["model"] == best["model"]]
    assert per_class == alone["test_f1"].tolist()
    assert rule["provenance"]["scores"]["test"] == {key: round(ensemble[f"test_{key}"], 6)
                                                    for key in rule["provenance"]["scores"]["test"]}


def test_the_trial_ensemble_exports_and_predict_gives_back_its_test_scores(sweep, tmp_path):
    """The trial ensemble (greedy selection over the sweep's two trials, analysis.trial_ensemble) as
    `--ensemble trials` exports it: its members, weights and thresholds are the ones ensembles.json reports, and
    analysis.predict on the test texts decides exactly as its saved probabilities did and gives back every test
    score it reports."""
    sweep_dir, texts = sweep
    labels = load_sweep_data(read_json(sweep_dir / "sweep.json")).test.labels
    joint, arrays = ensemble_of(sweep_dir, "trials")
    assert joint["library"] == 2 and sum(joint["weights"]) == joint["rounds"] and joint["checkpoints"]
    assert export.main([str(sweep_dir), "--ensemble", "trials", "--out", str(tmp_path / "joint")]) == 0
    rule = read_json(tmp_path / "joint" / "decision.json")
    assert rule["weights"] == joint["weights"] and rule["thresholds"] == joint["thresholds"]
    assert rule["provenance"]["trials"] == [os.path.realpath(member) for member in joint["members"]]
    assert len(rule["members"]) == len(joint["members"]) and rule["provenance"]["model"] == "trial ensemble"

    _, decision, probs = predict.predict(tmp_path / "joint", texts)
    assert np.array_equal(decision.apply(probs), (arrays["test_probs"] >= arrays["per_class_thresholds"]).astype(int))
    recomputed = scores_at(probs, labels, rule["thresholds"], rule["global_threshold"])
    reported = {key: value for key, value in joint.items() if key.startswith("test_")}
    assert reported and reported == {key: recomputed[key] for key in reported}
    assert rule["provenance"]["scores"]["test"] == {key: round(recomputed[f"test_{key}"], 6)
                                                    for key in rule["provenance"]["scores"]["test"]}


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
    ("bf16 probabilities", "decision.json: predict_dtype 'bfloat16': its thresholds and scores come from"),
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
    elif problem == "bf16 probabilities":  # as a trial that predicted under bf16 autocast would record it
        rule = read_json(export_dir / "decision.json")
        (export_dir / "decision.json").write_text(json.dumps({**rule, "predict_dtype": "bfloat16"}))
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
