"""Bad data files and dataset flags of every sweep file: one line, exit 2, nothing written.

Each check calls the sweep file's `main` in this process (the `run_cli` fixture, tests/unit/conftest.py), as
`python sweeps/<file>.py` would with these flags: every check here ends before Ray starts."""
from __future__ import annotations

import pytest

from sweeps import emotion6, goemotions_simplified, semeval_ec
from tests.helpers.data import (EC_CASES, EMOTION6_CASES, replace_line, write_emotion6, write_goemotions,
                                write_semeval_ec)


@pytest.mark.parametrize("sweep, writer, case", [
    (semeval_ec, write_semeval_ec, EC_CASES[3]),  # duplicate ID
    (semeval_ec, write_semeval_ec, EC_CASES[4]),  # NONE in the training file
    (emotion6, write_emotion6, EMOTION6_CASES[0]),  # line without ';'
    (emotion6, write_emotion6, EMOTION6_CASES[3]),  # non-UTF-8
], ids=["semeval_ec.py-duplicate-id", "semeval_ec.py-none-in-train", "emotion6.py-no-semicolon",
        "emotion6.py-non-utf8"])
def test_sweep_exits_2_with_one_line_and_writes_nothing(run_cli, tmp_path, tiny_bert, sweep, writer, case):
    filename, line, content, expected = case
    directory = writer(tmp_path / "data")
    replace_line(directory / filename, line, content)
    storage = tmp_path / "results"
    result = run_cli(sweep, "--data-dir", str(directory), "--models", str(tiny_bert), "--budget", "smoke",
                     "--storage", str(storage), "--name", "bad", "--no-dashboard")
    assert result.returncode == 2 and not storage.exists()
    # One error line, last on stderr. (Other lines there may come from library imports: torchao 0.18 prints
    # "Failed to load ..." when transformers sizes a local model directory.)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {directory / filename}:{expected.split(':', 1)[1]}")
    assert result.stderr.strip().splitlines()[-1] == line


def test_unknown_label_rule_is_a_one_line_flag_error(run_cli, tmp_path, tiny_bert):
    result = run_cli(goemotions_simplified, "--data-dir", str(write_goemotions(tmp_path / "go")),
                     "--models", str(tiny_bert), "--label-rule", "first", "--storage", str(tmp_path / "r"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1  # argparse: before the plan
    assert "--label-rule: invalid choice: 'first'" in result.stderr and not (tmp_path / "r").exists()
