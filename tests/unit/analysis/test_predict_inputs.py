"""analysis.predict refuses what it cannot do before it predicts anything: a decision.json that disagrees with its
members' config.json or breaks its own invariants, truncated weights, an --output it could not write, --text-column
on plain text. Each refusal is one line on stderr naming the file, field or flag, exit 2, no output file. Long CSV
fields are read, not refused. Real commands on a tiny export (tests/helpers/exports.py), run in-process."""
from __future__ import annotations

import json
import math

import pytest

from analysis import predict
from tests.helpers.exports import LABELS, TEXTS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = predict.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, export_dir, tmp_path, *argv) -> str:
    """The one error line of a run that must write nothing."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    output = tmp_path / "out.jsonl"
    code, out, err = run(capsys, export_dir, "--input", source, "--output", output, *argv)
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()
    assert not output.exists() and not list(tmp_path.glob(".out.jsonl*"))
    return line


def edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, expected", [
    (lambda r: (r["labels"].pop(), r["thresholds"].pop()),
     "config.json: id2label has 3 labels, decision.json labels 2"),
    (lambda r: r["labels"].__setitem__(1, "happy"),
     "config.json: id2label[\"1\"] is 'joy', decision.json labels 'happy' (label order differs)"),
    (lambda r: r["labels"].reverse(), "config.json: id2label[\"0\"] is 'anger', decision.json labels 'sadness'"),
    (lambda r: r["thresholds"].__setitem__(0, math.nan), "decision.json: thresholds[0]: nan is not a threshold"),
    (lambda r: r["thresholds"].__setitem__(2, 1.5), "decision.json: thresholds[2]: 1.5 is not a threshold"),
    (lambda r: r["thresholds"].__setitem__(1, "0.5"), "decision.json: thresholds[1]: '0.5' is not a threshold"),
    (lambda r: r["thresholds"].pop(), "decision.json: thresholds: 2 for 3 labels"),
    (lambda r: r["text"].__setitem__("preprocess", "lowercase"),
     "decision.json: text.preprocess: 'lowercase' (one of: none, tweet)"),
    (lambda r: r["text"].__setitem__("max_length", 0), "decision.json: text.max_length: 0 is not a token count"),
    (lambda r: r["text"].__setitem__("max_length", 512),
     "config.json: max_position_embeddings 128 < text.max_length 512"),
    (lambda r: r.__setitem__("task", "single_label"),
     "config.json: problem_type 'multi_label_classification', but the decision rule is single_label"),
    (lambda r: r.__setitem__("members", [".", "../elsewhere"]),
     "decision.json: members[1]: '../elsewhere' is not a dir"),
    (lambda r: r.__setitem__("members", [".", "members/seed-9"]), "members/seed-9: not found (a model dir)"),
])
def test_a_decision_rule_its_models_cannot_follow_is_refused(capsys, export_dir, tmp_path, change, expected):
    edit_json(export_dir / "decision.json", change)
    line = refused(capsys, export_dir, tmp_path)
    assert line.startswith(f"error: {export_dir}") and expected in line


def test_a_member_whose_config_names_other_labels_is_refused(capsys, export_dir, tmp_path):
    edit_json(export_dir / "members/seed-1/config.json", lambda c: c["id2label"].__setitem__("2", "grief"))
    line = refused(capsys, export_dir, tmp_path)
    assert line == (f"error: {export_dir}/members/seed-1/config.json: id2label[\"2\"] is 'grief', decision.json "
                    f"labels 'sadness' (label order differs)")


def test_truncated_weights_are_named_before_anything_loads_them(capsys, export_dir, tmp_path):
    weights = export_dir / "members/seed-1/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    line = refused(capsys, export_dir, tmp_path)
    assert line == (f"error: {weights}: truncated or damaged (Error while deserializing header: incomplete "
                    f"metadata, file not fully covered)")


def test_weights_of_another_head_size_are_named_by_tensor(capsys, export_dir, tmp_path, tiny_bert):
    """Config and decision.json agree on four labels, the weights hold a head for three."""
    edit_json(export_dir / "config.json", lambda c: (c["id2label"].__setitem__("3", "fear"),
                                                     c["label2id"].__setitem__("fear", 3)))
    edit_json(export_dir / "members/seed-1/config.json", lambda c: (c["id2label"].__setitem__("3", "fear"),
                                                                    c["label2id"].__setitem__("fear", 3)))
    edit_json(export_dir / "decision.json", lambda r: (r["labels"].append("fear"), r["thresholds"].append(0.5)))
    line = refused(capsys, export_dir, tmp_path)
    assert line == (f"error: {export_dir}/model.safetensors: classifier.bias has shape [3], config.json builds [4]")


def test_a_csv_field_longer_than_the_csv_modules_limit_is_read(capsys, export_dir, tmp_path):
    long_text = "cue0 " * 40_000  # 200,000 characters: over the csv module's default 131,072
    source = tmp_path / "long.csv"
    source.write_text(f"id,text\n1,{long_text}\n2,cue1 lol\n")
    code, out, err = run(capsys, export_dir, "--input", source)
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == [long_text, "cue1 lol"]


@pytest.mark.parametrize("where, expected", [
    ("a dir", "--output {out}: is a directory (name a file)"),
    ("a missing dir", "--output {out}: its directory does not exist"),
    ("a file's child", "--output {out}: its directory does not exist"),
])
def test_an_output_it_cannot_write_is_refused_before_the_input_is_read(capsys, export_dir, tmp_path, where,
                                                                       expected):
    """The input does not exist: the --output check comes first, before any input is read or text predicted."""
    out = {"a dir": tmp_path, "a missing dir": tmp_path / "nowhere" / "out.jsonl",
           "a file's child": tmp_path / "file.txt" / "out.jsonl"}[where]
    (tmp_path / "file.txt").write_text("a file")
    code, stdout, err = run(capsys, export_dir, "--input", tmp_path / "missing.txt", "--output", out)
    assert (code, stdout, err) == (2, "", f"error: {expected.format(out=out)}\n")


def test_text_column_on_a_plain_text_file_is_refused_and_tsv_reads_its_header(capsys, export_dir, tmp_path):
    """A SemEval-2018 E-c file is tab-separated with a header, but named .txt: read as plain text, its header would
    be classified as a text. --text-column says the user meant columns, so plain text with it is refused."""
    source = tmp_path / "2018-E-c-En-dev.txt"
    source.write_text("ID\tTweet\t" + "\t".join(LABELS) + "\n"
                      + "".join(f"2018-En-{i}\t{text}\t0\t1\t0\n" for i, text in enumerate(TEXTS[:3])))
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, export_dir, "--input", source, "--text-column", "Tweet", "--output", out)
    assert (code, stdout, err) == (2, "", f"error: --text-column Tweet: {source} is read as plain text (one text per "
                                          f"line, no columns); pass --format tsv, csv or jsonl\n")
    assert not out.exists()
    code, _, err = run(capsys, export_dir, "--input", source, "--format", "tsv", "--text-column", "Tweet",
                       "--output", out)
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == TEXTS[:3]


def test_a_bad_flag_is_one_line(capsys, export_dir):
    with pytest.raises(SystemExit) as exit:
        predict.main([str(export_dir), "--format", "xml"])
    assert exit.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m analysis.predict: error: argument --format: invalid choice: 'xml'")
