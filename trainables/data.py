"""Emotion datasets: one registry entry per dataset, loaders for the hub and for the release files.

Every loader returns an `EmotionData`: label names, the label scheme, and train/validation/test splits of
texts + labels (multi-hot float32 for multi-label, class ids for single-label). Local files are validated
line by line so bad input fails with `file:line: field: problem` before any trial starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np


class DataError(ValueError):
    """Bad input data; the message names file:line and the field."""


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray | None  # (N, C) float32 multi-hot, or (N,) int64 class ids; None when withheld
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subsample(self, n: int | None, seed: int) -> "Split":
        """A seeded random subset of n rows (kept in their original order); all rows when n is None."""
        if n is None or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return Split(
            texts=[self.texts[i] for i in keep],
            labels=None if self.labels is None else self.labels[keep],
            ids=[self.ids[i] for i in keep] if self.ids else [],
        )


@dataclass
class EmotionData:
    name: str
    label_names: list[str]
    multi_label: bool
    train: Split
    validation: Split
    test: Split

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subsample(self, train_rows: int | None, val_rows: int | None, test_rows: int | None,
                  seed: int) -> "EmotionData":
        return replace(self, train=self.train.subsample(train_rows, seed),
                       validation=self.validation.subsample(val_rows, seed + 1),
                       test=self.test.subsample(test_rows, seed + 2))


def _read_lines(path: Path) -> list[str]:
    """The file's lines without line ends (LF or CRLF); a clear error for a missing file or bad UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: text: not valid UTF-8 (byte {raw[error.start]:#04x})") from None
    return text.splitlines()


# --- GoEmotions (release format: text<TAB>label ids<TAB>comment id, no header) ---------------------------

GOEMOTIONS_HUB = ("google-research-datasets/go_emotions", "simplified")


def _read_goemotions_labels(path: Path) -> list[str]:
    names = [line.strip() for line in _read_lines(path)]
    for number, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{path}:{number}: label name: empty")
    if not names:
        raise DataError(f"{path}: no label names")
    return names


def _read_goemotions_split(path: Path, num_labels: int) -> tuple[list[str], list[list[int]], list[str]]:
    texts, label_ids, ids = [], [], []
    for number, line in enumerate(_read_lines(path), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: columns: expected 3 tab-separated fields "
                            f"(text, label ids, comment id), found {len(fields)}")
        text, labels, comment_id = fields
        if not text.strip():
            raise DataError(f"{path}:{number}: text: empty")
        row_labels = []
        for token in labels.split(","):
            if not token.strip().isdigit() or int(token) >= num_labels:
                raise DataError(f"{path}:{number}: labels: {token!r} is not a label id in 0..{num_labels - 1}")
            row_labels.append(int(token))
        texts.append(text)
        label_ids.append(row_labels)
        ids.append(comment_id)
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts, label_ids, ids


def multi_hot(label_ids: list[list[int]], num_labels: int) -> np.ndarray:
    matrix = np.zeros((len(label_ids), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_ids):
        matrix[row, ids] = 1.0
    return matrix


def load_goemotions_local(data_dir: Path) -> EmotionData:
    label_names = _read_goemotions_labels(data_dir / "labels.txt")
    splits = {}
    for split, filename in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        texts, label_ids, ids = _read_goemotions_split(data_dir / filename, len(label_names))
        splits[split] = Split(texts, multi_hot(label_ids, len(label_names)), ids)
    return EmotionData("goemotions", label_names, multi_label=True, **splits)


def load_goemotions_hub() -> EmotionData:
    import datasets

    repo, config = GOEMOTIONS_HUB
    loaded = datasets.load_dataset(repo, config)
    label_names = loaded["train"].features["labels"].feature.names
    splits = {split: Split(list(loaded[split]["text"]),
                           multi_hot(loaded[split]["labels"], len(label_names)), list(loaded[split]["id"]))
              for split in ("train", "validation", "test")}
    return EmotionData("goemotions", label_names, multi_label=True, **splits)


# --- Registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    multi_label: bool
    hub_id: str
    local_files: tuple[str, ...]
    load_local: Callable[[Path], EmotionData]
    load_hub: Callable[[], EmotionData]


DATASETS: dict[str, DatasetSpec] = {
    "goemotions": DatasetSpec("goemotions", True, "/".join(GOEMOTIONS_HUB),
                              ("train.tsv", "dev.tsv", "test.tsv", "labels.txt"),
                              load_goemotions_local, load_goemotions_hub),
}


def load_dataset(name: str, data_dir: str | Path | None) -> EmotionData:
    """Load a registered dataset from `data_dir` (release format) or, without one, from the hub."""
    spec = DATASETS[name]
    if data_dir is None:
        return spec.load_hub()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found (--data-dir)")
    return spec.load_local(data_dir)
