"""What every dataset loader returns: an `EmotionData` of train/validation/test `Split`s, or a `DataError` whose
message names the file, line and field (trainables/data.py reads the release files, trainables/hub_data.py the
hub)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    note: str = ""  # what loading did to the rows (e.g. how many rows a single-label rule kept)
    revision: str | None = None  # the hub commit the rows were read at; None: release files or a local repo

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subsample(self, train_rows: int | None, val_rows: int | None, test_rows: int | None,
                  seed: int) -> "EmotionData":
        """Seeded subsets of the labelled splits. An unlabelled test split (E-c's, predicted for a leaderboard) is
        always kept whole: a prediction file must cover every test row, whatever the budget."""
        test = self.test if self.test.labels is None else self.test.subsample(test_rows, seed + 2)
        return replace(self, train=self.train.subsample(train_rows, seed),
                       validation=self.validation.subsample(val_rows, seed + 1), test=test)

