"""E-c leaderboard files: what analysis writes reads back through the E-c reader."""
from __future__ import annotations


import numpy as np

from analysis.predictions import write_ec_file
from tests.helpers.data import write_semeval_ec
from trainables.data import (SEMEVAL_EC_COLUMNS, read_semeval_ec)


def test_prediction_file_round_trips_through_the_ec_reader(tmp_path):
    test = read_semeval_ec(write_semeval_ec(tmp_path / "ec") / "2018-E-c-En-test.txt", labelled=False)
    predictions = np.random.default_rng(0).random((len(test), 11)) < 0.3
    path = write_ec_file(tmp_path / "predictions" / "model.txt", test, predictions)
    assert path.read_bytes().startswith(("\t".join(SEMEVAL_EC_COLUMNS) + "\r\n").encode())
    back = read_semeval_ec(path, labelled=True)
    assert back.ids == test.ids and back.texts == test.texts
    assert np.array_equal(back.labels, predictions.astype(np.float32))
