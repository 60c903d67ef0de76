"""Fixtures every test may use: GoEmotions-format files, and a tiny BERT and a tiny Qwen3 built from config over
their vocabulary (builders in tests/helpers/), and the `e2e` marker on every test under tests/e2e/ (those start Ray).

    pytest                # everything (the README's test command)
    pytest -m "not e2e"   # the fast loop: no test that starts Ray
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.data import write_goemotions
from tests.helpers.models import build_tiny_bert, build_tiny_qwen, fixture_texts
from trainables.device import SIMULATED_GPUS_ENV

E2E = Path(__file__).resolve().parent / "e2e"
# Tests declare logical GPUs on CPU machines (`ray start --num-gpus 2`): trials given one train on CPU instead of
# failing for want of CUDA. Every Ray node a test starts inherits this from the test process.
os.environ[SIMULATED_GPUS_ENV] = "1"


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def goemotions_dir(tmp_path_factory) -> Path:
    return write_goemotions(tmp_path_factory.mktemp("goemotions"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, goemotions_dir) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), fixture_texts(goemotions_dir))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory, goemotions_dir) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), fixture_texts(goemotions_dir))
