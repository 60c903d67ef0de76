"""The decision rule: how a model's probabilities become labels, and decision.json, the file an export carries it in.

A trial (or a seed ensemble) saves its rule with its probabilities in predictions.npz: `label_names`, the `metric`
it was tuned for and, for multi-label data, `per_class_thresholds` chosen on validation (label i is predicted when
its probability reaches threshold i); single-label data has no thresholds (the most probable label). An export
writes the same rule as decision.json (analysis.export) and analysis.predict reads it back. Everything that turns
probabilities into labels (the per-class tables, the seed comparison, the report, INT8 agreement, the leaderboard
files, analysis.predict) decides here, so every number and every file follows one rule. An ensemble's members'
probabilities are averaged here too (`average`, with the members' `weights`), by the saved ensembles and by
analysis.predict alike.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables import atomic
from trainables.tweets import PREPROCESS_CHOICES

DECISION_FILE = "decision.json"
FORMAT = "emotion-sweep decision rule, version 1"
TASKS = {"multi_label": True, "single_label": False}
KINDS = ("encoder", "decoder_adapter")


class DecisionError(ValueError):
    """A dir without a readable decision.json, or one whose rule breaks its invariants: one line naming the file
    (and field)."""


def selected_metric(arrays: dict) -> str:
    """The metric the trial tuned its thresholds for and was selected by (macro-F1 before --metric existed)."""
    return str(arrays["metric"]) if "metric" in arrays else "macro_f1"


def average(probs, weights: list[int] | None = None) -> np.ndarray:
    """The members' (N, C) probabilities averaged with their weights (equal when None), in float32 as the trials save
    theirs: one formula for the ensembles' saved probabilities and analysis.predict's, so both decide alike."""
    return np.average(np.asarray(probs, dtype=np.float64), axis=0, weights=weights).astype(np.float32)


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


def rule_fields(arrays: dict, metric: str, method: str, members: list[str], member_arrays: list[dict],
                weights: list[int]) -> dict:
    """decision.json's rule, its first fields in file order, from the probabilities' arrays (predictions.npz
    layout): `task`, `labels`, `thresholds` with how they were chosen (multi-label), `metric`, the `members` whose
    probabilities are averaged with their `weights` and, for an ensemble, each member's own thresholds
    (`member_arrays`)."""
    multi_label = "per_class_thresholds" in arrays
    return {
        "format": FORMAT,
        "task": "multi_label" if multi_label else "single_label",
        "labels": [str(name) for name in arrays["label_names"]],
        **({"thresholds": [float(t) for t in arrays["per_class_thresholds"]],
            "global_threshold": float(arrays["global_threshold"]), "threshold_method": method} if multi_label else {}),
        "metric": metric,
        "members": members,
        "weights": weights,
        **({"member_thresholds": [[float(t) for t in member["per_class_thresholds"]] for member in member_arrays]}
           if multi_label and len(member_arrays) > 1 else {}),
    }


def write_decision(directory: Path, rule: dict) -> None:
    atomic.write_text(directory / DECISION_FILE, json.dumps(rule, indent=2) + "\n")


def read_decision(export_dir: Path) -> tuple[dict, Decision]:
    """(decision.json of an export dir, its rule), checked (check_rule): a broken field is named, not met later as
    a broadcast error or labels decided by NaN."""
    export_dir = Path(export_dir)
    path = export_dir / DECISION_FILE
    if not export_dir.is_dir():
        raise DecisionError(f"{export_dir}: not a directory (an export from: python -m analysis.export)")
    if not path.is_file():
        raise DecisionError(f"{path}: not found; {export_dir} is not an export (python -m analysis.export writes one)")
    try:
        rule = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DecisionError(f"{path}: unreadable decision rule ({type(error).__name__}: {error})") from None
    try:
        return rule, check_rule(rule)
    except ValueError as error:
        raise DecisionError(f"{path}: {error}") from None


def check_rule(rule) -> Decision:
    """The rule's own invariants, in the fields analysis.predict uses: this format, a known task and kind, unique
    label names, one threshold in [0, 1] per label (multi-label), members as dirs inside the export, and texts
    prepared by a known preprocessing with a positive max_length, and (where given) one whole-number weight >= 1 per
    member (exports before weights were written average their members equally). Raises ValueError naming the
    field."""
    if not isinstance(rule, dict):
        raise ValueError("not a decision rule (a JSON object)")
    if rule.get("format") != FORMAT:
        raise ValueError(f"format: {rule.get('format')!r}, this version reads {FORMAT!r}")
    if not isinstance(rule.get("task"), str) or rule["task"] not in TASKS:
        raise ValueError(f"task: {rule.get('task')!r} (one of: {', '.join(TASKS)})")
    labels = check_labels(rule.get("labels"))
    multi_label = TASKS[rule["task"]]
    thresholds = check_thresholds(rule.get("thresholds"), len(labels)) if multi_label else None
    check_members(rule.get("members"))
    if "weights" in rule:
        check_weights(rule["weights"], len(rule["members"]))
    check_text(rule.get("text"))
    kind = rule.get("kind", "encoder")
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} (one of: {', '.join(KINDS)})")
    if kind == "decoder_adapter" and not isinstance((rule.get("base") or {}).get("source"), str):
        raise ValueError("base.source: missing (the base model a decoder's adapters load on)")
    return Decision(labels, multi_label, thresholds)


def check_labels(labels) -> list[str]:
    if not isinstance(labels, list) or not labels or not all(isinstance(name, str) and name for name in labels):
        raise ValueError("labels: a list of label names expected")
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise ValueError(f"labels: {repeated[0]!r} appears twice (labels name classes one to one)")
    return labels


def check_thresholds(thresholds, count: int) -> np.ndarray:
    """One number in [0, 1] per label: a NaN decides nothing, a string or a missing one fails in a broadcast."""
    if not isinstance(thresholds, list) or len(thresholds) != count:
        got = f"{len(thresholds)}" if isinstance(thresholds, list) else repr(thresholds)
        raise ValueError(f"thresholds: {got} for {count} labels (one number in [0, 1] per label)")
    for i, value in enumerate(thresholds):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"thresholds[{i}]: {value!r} is not a threshold (a number in [0, 1])")
    return np.array(thresholds, dtype=np.float32)


def check_members(members) -> None:
    """Model dirs relative to the export, each once, none outside it."""
    if not isinstance(members, list) or not members:
        raise ValueError("members: a list of model dirs (relative to the export) expected")
    for i, member in enumerate(members):
        if not isinstance(member, str) or not member or Path(member).is_absolute() or ".." in Path(member).parts:
            raise ValueError(f"members[{i}]: {member!r} is not a dir inside the export")
    if len({Path(member) for member in members}) != len(members):
        raise ValueError("members: a dir appears twice")


def check_weights(weights, count: int) -> None:
    """How many times each member was picked: a zero, fraction or negative would silently reweight the average."""
    if not isinstance(weights, list) or len(weights) != count:
        got = f"{len(weights)}" if isinstance(weights, list) else repr(weights)
        raise ValueError(f"weights: {got} for {count} members (one whole number >= 1 per member)")
    for i, value in enumerate(weights):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"weights[{i}]: {value!r} is not a weight (a whole number >= 1)")


def check_text(text) -> None:
    if not isinstance(text, dict):
        raise ValueError("text: missing (how texts are prepared: preprocess, max_length)")
    if text.get("preprocess") not in PREPROCESS_CHOICES:
        raise ValueError(f"text.preprocess: {text.get('preprocess')!r} (one of: {', '.join(PREPROCESS_CHOICES)})")
    length = text.get("max_length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"text.max_length: {length!r} is not a token count (a whole number >= 1)")
