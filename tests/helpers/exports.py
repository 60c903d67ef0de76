"""Tiny exports and experiments for the analysis commands, built in seconds from the tiny BERT (tests/helpers/models):
`write_export` an analysis.export dir (decision.json, a seed ensemble of two 3-label classifiers, each with its
tokenizer) that analysis.predict applies; `write_experiment` a finished sweep dir in Tune's layout (params.json,
result.json, a checkpoint with predictions.npz and a float model) that analysis.export and analysis.report read. No
hub, no training: the classifiers' heads are random, seeded, so their probabilities spread around the thresholds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from analysis.decision import FORMAT

LABELS = ["anger", "joy", "sadness"]
TEXTS = ["cue0 the really", "cue1 lol today", "so cue2 it", "this is cue27", "a cue3 cue4 [NAME]", "really 😂 cue5"]


def write_classifier(tiny_bert: Path, directory: Path, seed: int) -> Path:
    """A multi-label classifier over LABELS saved as a trial saves it (config with id2label and problem_type)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_bert, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                        label2id={name: i for i, name in enumerate(LABELS)},
                                        problem_type="multi_label_classification")
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    return directory


def write_tokenizer(tiny_bert: Path, directory: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tiny_bert / name, directory / name)


def write_export(tiny_bert: Path, directory: Path) -> Path:
    """An export of a two-seed ensemble ("." and members/seed-1) with thresholds 0.5, as analysis.export writes."""
    members = [".", "members/seed-1"]
    for seed, member in enumerate(members):
        write_classifier(tiny_bert, directory / member, seed)
        write_tokenizer(tiny_bert, directory / member)
    rule = {"format": FORMAT, "task": "multi_label", "labels": LABELS, "thresholds": [0.5, 0.5, 0.5],
            "global_threshold": 0.5, "threshold_method": "exact", "metric": "macro_f1", "members": members,
            "member_thresholds": [[0.5] * 3, [0.5] * 3], "text": {"preprocess": "none", "max_length": 32},
            "kind": "encoder", "variant": "baseline", "provenance": {"model": "tiny", "seeds": [0, 1]}}
    (directory / "decision.json").write_text(json.dumps(rule, indent=2) + "\n")
    return directory


def write_experiment(directory: Path, tiny_bert: Path | None = None, rows: int = 40) -> Path:
    """A finished sweep of one trial of model "tiny" over LABELS (multi-label); with `tiny_bert`, its checkpoint
    holds a float model over it (what analysis.export copies), else only the predictions (all analysis.report
    reads)."""
    trial = directory / "tiny_00000"
    checkpoint = trial / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    if tiny_bert is not None:
        write_classifier(tiny_bert, checkpoint / "model", seed=0)
    config = {"study": "tiny", "model": "tiny", "model_source": str(tiny_bert or "none"), "seed": 0, "lr": 1e-3,
              "max_length": 32, "preprocess": "none", "thresholds": "exact", "variant": "baseline"}
    (trial / "params.json").write_text(json.dumps(config))
    (trial / "result.json").write_text(json.dumps({"training_iteration": 1, "params_m": 0.1, "time_total_s": 1.0,
                                                   "cpu_seconds": 1.0, "gpu_seconds": 0.0}) + "\n")
    rng = np.random.default_rng(0)
    labels = {split: (rng.random((rows, len(LABELS))) < 0.4).astype(np.float32) for split in ("val", "test")}
    probs = {split: np.clip(0.6 * labels[split] + 0.4 * rng.random(labels[split].shape), 0, 1).astype(np.float32)
             for split in labels}
    np.savez(checkpoint / "predictions.npz", epoch=1, metric="macro_f1", val_score=0.5, val_macro_f1=0.5,
             label_names=np.array(LABELS), val_probs=probs["val"], val_labels=labels["val"],
             test_probs=probs["test"], test_labels=labels["test"], global_threshold=0.5,
             per_class_thresholds=np.full(len(LABELS), 0.5, dtype=np.float32))
    (directory / "sweep.json").write_text(json.dumps({"experiment": "tiny_sweep", "dataset": "goemotions",
                                                      "models": [{"name": "tiny", "num_samples": 1}]}))
    return directory
