"""Bad data files and dataset flags of every sweep file: one line, exit 2, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.data import (EC_CASES, EMOTION6_CASES, replace_line, write_emotion6, write_goemotions,
                                write_semeval_ec)
from tests.helpers.sweeps import REPO



def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweeps" / script), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("script, writer, case", [
    ("semeval_ec.py", write_semeval_ec, EC_CASES[3]),  # duplicate ID
    ("semeval_ec.py", write_semeval_ec, EC_CASES[4]),  # NONE in the training file
    ("emotion6.py", write_emotion6, EMOTION6_CASES[0]),  # line without ';'
    ("emotion6.py", write_emotion6, EMOTION6_CASES[3]),  # non-UTF-8
])
def test_sweep_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_bert, script, writer, case):
    filename, line, content, expected = case
    directory = writer(tmp_path / "data")
    replace_line(directory / filename, line, content)
    storage = tmp_path / "results"
    result = run_cli(script, "--data-dir", str(directory), "--models", str(tiny_bert), "--budget", "smoke",
                     "--storage", str(storage), "--name", "bad", "--no-dashboard")
    assert result.returncode == 2 and not storage.exists()
    # One error line, last on stderr. (Other lines there come from library imports: torchao 0.18 prints
    # "Failed to load ..." when transformers sizes a local model directory.)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {directory / filename}:{expected.split(':', 1)[1]}")
    assert result.stderr.strip().splitlines()[-1] == line


def test_unknown_label_rule_is_a_one_line_flag_error(tmp_path, tiny_bert):
    result = run_cli("goemotions_simplified.py", "--data-dir", str(write_goemotions(tmp_path / "go")),
                     "--models", str(tiny_bert), "--label-rule", "first", "--storage", str(tmp_path / "r"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1  # argparse: before imports
    assert "--label-rule: invalid choice: 'first'" in result.stderr and not (tmp_path / "r").exists()
