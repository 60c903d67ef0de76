"""The training state a resumed trial reads back (optimizer, schedule, epoch, best score): tensors, numbers and
strings only, loaded without pickle's power to run code. Checkpoints live on storage that other people and nodes
write to (an NFS/EFS share, a synced bucket), and a pickled object planted there would otherwise run in every
worker that resumes from it."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

TRAINING_STATE = "training_state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be trusted or read; one line naming the file."""


def load_training_state(path: Path, device: torch.device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds pickled objects, not only tensors and numbers (a "
                              f"training state this project wrote never does), so loading it could run code"
                              ) from None
