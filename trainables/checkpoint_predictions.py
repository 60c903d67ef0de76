"""A finished trial's checkpoint predicts the test split, once the analysis reports it.

Trials predict validation only: everything that selects (ASHA, the Optuna studies, each model's best trial, the
trial ensemble's greedy picks) reads validation, and test scores are reported for the selected checkpoints alone
(analysis.trials.reported_runs). `add_test_predictions` adds a checkpoint's test predictions to its predictions.npz
with the trial's own code: the trainable's `predict_test_split` (trainables/encoder.py, trainables/decoder.py) loads
the model from the checkpoint as a resumed trial loads it and predicts with the function the trial validated with,
after the trial's own setup (seeds, deterministic kernels, the device and threads its resources give:
trainables/device.py), so the probabilities are the ones the trial itself would have computed for that checkpoint.
The file is rewritten whole (trainables/atomic.py); a checkpoint that has test predictions already is left alone, so
a resumed sweep or a re-run analysis predicts nothing twice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables import atomic
from trainables.splits import EmotionData
from trainables.device import seed_trial, trial_device


def add_test_predictions(checkpoint: Path, config: dict, data: EmotionData, gpus: float, cpus: float,
                         shared_tokens: dict | None = None) -> None:
    """Add the test split's predictions to `checkpoint`'s predictions.npz, predicted as a trial of `config` given
    `gpus` and `cpus` predicts (`data`: the sweep's rows; `shared_tokens`: its tokenization, encoders only)."""
    saved = Path(checkpoint) / "predictions.npz"
    with np.load(saved) as npz:
        arrays = dict(npz)
    if "test_probs" in arrays:
        return
    seed_trial(int(config.get("seed", 0)), bool(config.get("deterministic", False)))
    device = trial_device(gpus, cpus)
    if (saved.parent / "adapter").is_dir():  # a decoder's checkpoint: adapters over a 4-bit base
        from trainables.decoder import predict_test_split

        arrays.update(predict_test_split(config, data, saved.parent, device))
    else:
        from trainables.encoder import predict_test_split

        arrays.update(predict_test_split(config, data, saved.parent, device, shared_tokens))
    with atomic.replacing(saved, "wb") as handle:
        np.savez_compressed(handle, **arrays)
