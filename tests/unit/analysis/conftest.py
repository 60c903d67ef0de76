"""A tiny export and a tiny finished experiment (with and without a model in its checkpoint), built once per session
(tests/helpers/exports.py), and a fresh copy of each per test, for the analysis commands' tests to damage."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.exports import write_experiment, write_export


@pytest.fixture(scope="session")
def clean_export(tmp_path_factory, tiny_bert) -> Path:
    return write_export(tiny_bert, tmp_path_factory.mktemp("clean") / "export")


@pytest.fixture(scope="session")
def clean_experiment(tmp_path_factory, tiny_bert) -> Path:
    return write_experiment(tmp_path_factory.mktemp("clean") / "experiment", tiny_bert)


@pytest.fixture(scope="session")
def clean_predictions(tmp_path_factory) -> Path:
    return write_experiment(tmp_path_factory.mktemp("clean") / "predictions")


@pytest.fixture
def export_dir(clean_export, tmp_path) -> Path:
    return Path(shutil.copytree(clean_export, tmp_path / "export"))


@pytest.fixture
def experiment_dir(clean_experiment, tmp_path) -> Path:
    return Path(shutil.copytree(clean_experiment, tmp_path / "experiment"))


@pytest.fixture
def predictions_dir(clean_predictions, tmp_path) -> Path:
    """An experiment whose checkpoint holds predictions only: what analysis.report reads."""
    return Path(shutil.copytree(clean_predictions, tmp_path / "experiment"))
