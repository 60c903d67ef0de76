"""Fixtures for the unit tests (no Ray): `run_cli` runs a sweep file's `main` in this process, as
`python sweeps/<file>.py` would with the same flags, for checks that end before Ray starts (a bad flag, bad
data, --dry-run). tests/unit/sweeps/test_cli_fuzz.py keeps one real subprocess run of the command line."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run a sweep file's main() with these flags: its exit code and what it printed, like a subprocess's."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # main() would join a cluster named there

    def run(sweep, *argv: str) -> SimpleNamespace:
        capsys.readouterr()
        try:
            code = sweep.main(sweep.EXPERIMENT, list(argv))
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run
