"""The decision rule: how a model's probabilities become labels, and decision.json, the file an export carries it in.

A trial (or a seed ensemble) saves its rule with its probabilities in predictions.npz: `label_names`, the `metric`
it was tuned for and, for multi-label data, `per_class_thresholds` chosen on validation (label i is predicted when
its probability reaches threshold i); single-label data has no thresholds (the most probable label). An export
writes the same rule as decision.json (analysis.export) and analysis.predict reads it back. Everything that turns
probabilities into labels (the per-class tables, the seed comparison, the report, INT8 agreement, the leaderboard
files, analysis.predict) decides here, so every number and every file follows one rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables import atomic

DECISION_FILE = "decision.json"
FORMAT = "emotion-sweep decision rule, version 1"


class DecisionError(ValueError):
    """A dir without a readable decision.json: one line naming the file."""


def selected_metric(arrays: dict) -> str:
    """The metric the trial tuned its thresholds for and was selected by (macro-F1 before --metric existed)."""
    return str(arrays["metric"]) if "metric" in arrays else "macro_f1"


def decide(probs: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Multi-label (`thresholds` given): (N, C) 0/1, each label whose probability reaches its threshold.
    Single-label: (N,) the most probable class of each row."""
    return (probs >= thresholds).astype(int) if thresholds is not None else probs.argmax(axis=1)


def decisions(arrays: dict, split: str) -> np.ndarray:
    """The `split` ("val" or "test") decided by the rule saved with the probabilities (predictions.npz layout)."""
    return decide(arrays[f"{split}_probs"], arrays.get("per_class_thresholds"))


@dataclass
class Decision:
    """The rule as labels are predicted with it: label names, multi- or single-label, per-class thresholds."""
    labels: list[str]
    multi_label: bool
    thresholds: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Decision":
        """The rule saved with a trial's (or seed ensemble's) predictions.npz."""
        multi_label = "per_class_thresholds" in arrays
        return cls([str(name) for name in arrays["label_names"]], multi_label,
                   np.asarray(arrays["per_class_thresholds"]) if multi_label else None)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) 0/1 predictions: thresholds per class (multi-label) or the argmax (single-label, one-hot)."""
        if self.multi_label:
            return decide(probs, self.thresholds).astype(np.int64)
        return np.eye(len(self.labels), dtype=np.int64)[decide(probs)]


def rule_fields(arrays: dict, metric: str, method: str, members: list[str], member_arrays: list[dict]) -> dict:
    """decision.json's rule, its first fields in file order, from the probabilities' arrays (predictions.npz
    layout): `task`, `labels`, `thresholds` with how they were chosen (multi-label), `metric`, the `members` whose
    probabilities are averaged and, for a seed ensemble, each member's own thresholds (`member_arrays`)."""
    multi_label = "per_class_thresholds" in arrays
    return {
        "format": FORMAT,
        "task": "multi_label" if multi_label else "single_label",
        "labels": [str(name) for name in arrays["label_names"]],
        **({"thresholds": [float(t) for t in arrays["per_class_thresholds"]],
            "global_threshold": float(arrays["global_threshold"]), "threshold_method": method} if multi_label else {}),
        "metric": metric,
        "members": members,
        **({"member_thresholds": [[float(t) for t in member["per_class_thresholds"]] for member in member_arrays]}
           if multi_label and len(member_arrays) > 1 else {}),
    }


def write_decision(directory: Path, rule: dict) -> None:
    atomic.write_text(directory / DECISION_FILE, json.dumps(rule, indent=2) + "\n")


def read_decision(export_dir: Path) -> tuple[dict, Decision]:
    """(decision.json of an export dir, its rule), checked: the task, labels and thresholds agree, and the file
    names its members and how texts are prepared."""
    export_dir = Path(export_dir)
    path = export_dir / DECISION_FILE
    if not export_dir.is_dir():
        raise DecisionError(f"{export_dir}: not a directory (an export from: python -m analysis.export)")
    if not path.is_file():
        raise DecisionError(f"{path}: not found; {export_dir} is not an export (python -m analysis.export writes one)")
    try:
        rule = json.loads(path.read_text(encoding="utf-8"))
        multi_label = {"multi_label": True, "single_label": False}[rule["task"]]
        labels = [str(name) for name in rule["labels"]]
        thresholds = np.array(rule["thresholds"], dtype=np.float32) if multi_label else None
        if thresholds is not None and thresholds.shape != (len(labels),):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
        if not rule["members"] or not isinstance(rule["text"]["max_length"], int):
            raise ValueError("no members, or no text.max_length")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DecisionError(f"{path}: unreadable decision rule ({type(error).__name__}: {error})") from None
    return rule, Decision(labels, multi_label, thresholds)
