"""Checkpoints load without pickle: a planted one is refused in one line and never runs."""
from __future__ import annotations

import time

import pytest
import torch

from trainables.checkpoints import CheckpointError, load_training_state


def test_a_planted_pickle_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    planted = tmp_path / "checkpoint_000001" / "training_state.pt"
    planted.parent.mkdir()
    torch.save({"optimizer": Payload(), "epoch": 0, "best_val": 0.5}, planted)
    with pytest.raises(CheckpointError) as refused:
        load_training_state(planted, torch.device("cpu"))
    assert str(planted) in str(refused.value) and "\n" not in str(refused.value)
    time.sleep(0.1)
    assert not marker.exists()
