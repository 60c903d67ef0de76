"""analysis.export checks a checkpoint before it copies it: truncated weights, a config whose labels are not the
trial's, an --out it cannot use are one line on stderr naming the file or flag, exit 2, and nothing written (no
export dir, no temporary dir, not even the export's parent). The clean export is one analysis.predict applies.
Real commands on a tiny finished experiment (tests/helpers/exports.py), run in-process."""
from __future__ import annotations

import json

import pytest

from analysis import export, predict
from tests.helpers.exports import TEXTS

MODEL = "tiny_00000/checkpoint_000000/model"


def refused(capsys, experiment_dir, out) -> str:
    """The one error line of an export that must leave nothing behind under out's first missing parent."""
    capsys.readouterr()
    assert export.main([str(experiment_dir), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert captured.out == ""
    return line


def test_the_clean_export_predicts(capsys, experiment_dir, tmp_path):
    out = tmp_path / "exports" / "tiny"
    assert export.main([str(experiment_dir), "--out", str(out)]) == 0
    rule = json.loads((out / "decision.json").read_text())
    assert rule["labels"] == ["anger", "joy", "sadness"] and rule["members"] == ["."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    capsys.readouterr()
    assert predict.main([str(out), "--input", str(source)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(TEXTS)


def test_truncated_checkpoint_weights_are_not_exported(capsys, experiment_dir, tmp_path):
    weights = experiment_dir / MODEL / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    line = refused(capsys, experiment_dir, tmp_path / "exports" / "tiny")
    assert line.startswith(f"error: {weights}: truncated or damaged (Error while deserializing header:")
    assert not (tmp_path / "exports").exists()


def test_a_checkpoint_config_with_other_labels_is_not_exported(capsys, experiment_dir, tmp_path):
    config = experiment_dir / MODEL / "config.json"
    data = json.loads(config.read_text())
    data["id2label"] = {"0": "anger", "1": "joy"}
    config.write_text(json.dumps(data))
    line = refused(capsys, experiment_dir, tmp_path / "exports" / "tiny")
    assert line == f"error: {config}: id2label has 2 labels, predictions.npz label_names 3"
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("where, expected", [
    ("a file", "--out {out}: exists and is not an export (no decision.json); choose another dir"),
    ("under a file", "--out {out}: {file} is not a directory"),
])
def test_an_out_it_cannot_use_is_refused(capsys, experiment_dir, tmp_path, where, expected):
    file = tmp_path / "file"
    file.write_text("keep me")
    out = file if where == "a file" else file / "tiny"
    assert refused(capsys, experiment_dir, out) == "error: " + expected.format(out=out, file=file)
    assert file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment", "file"]
