"""analysis.report refuses what it cannot do before it makes its report dir: an --out naming a file (or under one),
a --resamples that is not a count, experiment dirs none of which can be read. One line on stderr, exit 2, and no
dir left behind. Real commands on a tiny finished experiment (tests/helpers/exports.py), run in-process."""
from __future__ import annotations

import json

import pytest

from analysis import report


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = report.main([str(arg) for arg in argv])
    except SystemExit as exit:  # argparse
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_clean_report_is_written(capsys, predictions_dir, tmp_path):
    code, out, err = run(capsys, predictions_dir, "--out", tmp_path / "new" / "report", "--resamples", "20")
    assert code == 0, err
    assert out == f"{tmp_path / 'new' / 'report' / 'report.md'}\n"
    assert "20 resamples of the test rows" in (tmp_path / "new" / "report" / "report.md").read_text()


def test_an_out_naming_a_file_is_refused(capsys, predictions_dir, tmp_path):
    file = tmp_path / "report.md"
    file.write_text("keep me")
    for out, expected in ((file, f"--out {file}: exists and is not a directory"),
                          (file / "report", f"--out {file / 'report'}: {file} is not a directory")):
        assert run(capsys, predictions_dir, "--out", out) == (2, "", f"error: {expected}\n")
    assert file.read_text() == "keep me"


@pytest.mark.parametrize("value, expected", [
    ("-5", "-5 is not a count (1 .. 2147483647)"),
    ("0", "0 is not a count (1 .. 2147483647)"),
    ("ten", "'ten' is not a whole number"),
])
def test_a_resample_count_that_is_not_a_count_is_refused(capsys, predictions_dir, tmp_path, value, expected):
    code, out, err = run(capsys, predictions_dir, "--out", tmp_path / "report", f"--resamples={value}")
    assert (code, out, err) == (2, "", f"python -m analysis.report: error: argument --resamples: {expected}\n")
    assert not (tmp_path / "report").exists()


def test_no_readable_experiment_leaves_no_report_dir(capsys, predictions_dir, tmp_path):
    sweep = predictions_dir / "sweep.json"
    sweep.write_text(json.dumps({"experiment": "tiny_sweep"}))  # no dataset: its label kind is unknown
    code, out, err = run(capsys, predictions_dir, "--out", tmp_path / "new" / "report")
    assert (code, out) == (2, "")
    assert err == (f"error: no readable experiment: {sweep}: names no known dataset and experiment (one of: "
                   f"goemotions, goemotions_single, semeval_ec, emotion6)\n")
    assert not (tmp_path / "new").exists()
