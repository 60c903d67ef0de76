"""A sweep's console carries the plan, Tune's trial table and real warnings, not per-trial chatter: transformers'
load report for the head every trial replaces, its progress bars, bitsandbytes' missing-kernels notice, Tune's
per-checkpoint INFO line. tests/e2e/test_sweep.py checks a whole sweep's output for NOISE."""
from __future__ import annotations

import logging

import torch
from transformers import AutoModelForSequenceClassification

from tests.helpers.sweeps import NOISE
from trainables.encoder_model import from_pretrained_quietly


def test_a_new_head_loads_silently(tiny_bert, capfd, caplog):
    with caplog.at_level(logging.INFO):
        model = from_pretrained_quietly(tiny_bert, num_labels=28, ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 28  # the checkpoint's 2-label head was replaced
    output = "".join(capfd.readouterr()) + caplog.text
    assert not any(noise in output for noise in NOISE), output


def test_a_body_weight_missing_from_the_checkpoint_still_warns(tiny_bert, tmp_path, caplog):
    """A checkpoint that lacks part of the pretrained body (a truncated download, the wrong architecture) trains
    from random weights there: that is a real warning, kept, in one line."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    missing = "bert.encoder.layer.0.attention.self.query.weight"
    model.save_pretrained(tmp_path, state_dict={k: v for k, v in model.state_dict().items() if k != missing})
    with caplog.at_level(logging.WARNING, logger="trainables.encoder_model"):
        loaded = from_pretrained_quietly(tmp_path, num_labels=28, ignore_mismatched_sizes=True)
    [record] = [r for r in caplog.records if r.name == "trainables.encoder_model"]
    assert missing in record.getMessage() and "\n" not in record.getMessage()
    assert "1 weights of the model body" in record.getMessage()
    assert not torch.equal(loaded.state_dict()[missing], model.state_dict()[missing])
