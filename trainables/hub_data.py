"""Datasets on the Hugging Face Hub: `datasets.load_dataset` at a pinned commit, with the columns and class
names checked against the dataset's, so a repo that changed fails in one line instead of training on other rows."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainables.splits import DataError


PARQUET_EXPORT = "refs/convert/parquet"
HUB_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class HubDataset:
    """Where a dataset lives on the Hugging Face Hub. `branch` is what the loader pins to a commit: `main`, or
    the hub's own Parquet export (PARQUET_EXPORT: one folder per config, one per split inside) for a repo whose
    main branch is a loading script, which datasets 5 refuses to run."""
    repo_id: str
    config: str
    branch: str = "main"

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.config}" + ("" if self.branch == "main" else f"@{self.branch}")


DATA_DIR_HINT = "(or pass --data-dir with the release files)"


def hub_data_error(source: HubDataset, problem: str) -> DataError:
    return DataError(f"{source}: {problem} {DATA_DIR_HINT}")


def load_hub_splits(source: HubDataset, columns: tuple[str, ...], revision: str | None,
                    repo: str | None) -> tuple[dict, str | None]:
    """The train/validation/test splits of `source` (each a `datasets.Dataset` holding `columns`) and the
    commit they were read at.

    `revision` is a commit to read (the one a sweep recorded); None reads the commit `source.branch` points to
    now, or the one the local HF cache recorded when the hub is unreachable. `repo` replaces the hub repo id
    with a local directory in the repo's layout (a mirror on disk, or a test's fixture), read by the same
    `datasets` code; a directory has no commit (None)."""
    import datasets
    import yaml

    from trainables.hub import HubError, commit_sha, one_line

    repo = repo or source.repo_id
    local = Path(repo).is_dir()
    if local:
        revision = None
    elif revision is None:
        try:
            revision = commit_sha(repo, "dataset", source.branch)
        except HubError as error:
            raise DataError(f"{error} {DATA_DIR_HINT}") from None
    where = {"data_dir": source.config} if source.branch == PARQUET_EXPORT else {"name": source.config}
    try:
        if local:
            # `datasets` caches a directory's splits by its name and config alone: a changed directory, or another
            # one with the same name, would load the rows cached from the first. So a directory is read afresh,
            # into memory, through a cache of its own that goes once read.
            with tempfile.TemporaryDirectory(prefix="hub-dir-") as cache:
                loaded = datasets.load_dataset(repo, **where, cache_dir=cache, keep_in_memory=True)
        else:
            loaded = datasets.load_dataset(repo, revision=revision, **where)
    except (OSError, ValueError, RuntimeError, TypeError, yaml.YAMLError, datasets.exceptions.DatasetsError) as error:
        # TypeError and YAMLError: what `datasets` raises for a README.md whose YAML header is malformed
        raise hub_data_error(source, one_line(error)) from None
    for split in HUB_SPLITS:
        if split not in loaded:
            raise hub_data_error(source, f"no {split} split (found: {', '.join(loaded)})")
        missing = [column for column in columns if column not in loaded[split].column_names]
        if missing:
            raise hub_data_error(source, f"{split} split: missing column(s) {', '.join(missing)} "
                                         f"(found: {', '.join(loaded[split].column_names)})")
    return {split: loaded[split] for split in HUB_SPLITS}, revision


def hub_class_names(source: HubDataset, split, column: str, expected: tuple[str, ...]) -> list[str]:
    """The class names of a ClassLabel column (or of a list of ClassLabels), checked against the dataset's."""
    feature = split.features[column]
    names = getattr(getattr(feature, "feature", feature), "names", None)
    if names is None:
        raise hub_data_error(source, f"column {column}: not class labels ({feature})")
    if len(names) != len(expected):
        raise hub_data_error(source, f"column {column}: {len(names)} classes, expected {len(expected)}")
    wrong = [f"class {i} is {found!r}, expected {wanted!r}"
             for i, (found, wanted) in enumerate(zip(names, expected)) if found != wanted]
    if wrong:
        raise hub_data_error(source, f"column {column}: {'; '.join(wrong)}")
    return names


def hub_texts(source: HubDataset, name: str, split, column: str) -> list[str]:
    """A split's text column; an empty or missing text is an error, as in the release files (rows count
    from 0, as `split[row]` does)."""
    texts = list(split[column])
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise hub_data_error(source, f"{name} split: row {row}: {column}: empty")
    return texts


def hub_ids(source: HubDataset, name: str, split, column: str) -> list[str]:
    """A split's id column: non-empty and unique, as in the release files."""
    ids, first_seen = list(split[column]), {}
    for row, value in enumerate(ids):
        if not isinstance(value, str) or not value.strip():
            raise hub_data_error(source, f"{name} split: row {row}: {column}: empty")
        if value in first_seen:
            raise hub_data_error(source, f"{name} split: row {row}: {column}: duplicate {value!r} "
                                         f"(first in row {first_seen[value]})")
        first_seen[value] = row
    return ids


def hub_class_ids(source: HubDataset, name: str, split, column: str, num_labels: int) -> list[list[int]]:
    """A ClassLabel column (or list of ClassLabels) as lists of class ids, each in range: Parquet does not
    enforce the range, and -1 would index the last class silently. A row needs at least one class."""
    rows = list(split[column])
    for row, value in enumerate(rows):
        ids = value if isinstance(value, list) else [value]
        if not ids:
            raise hub_data_error(source, f"{name} split: row {row}: {column}: none")
        for class_id in ids:
            if not isinstance(class_id, int) or not 0 <= class_id < num_labels:
                raise hub_data_error(source, f"{name} split: row {row}: {column}: {class_id!r} is not a class id "
                                             f"in 0..{num_labels - 1}")
    return [value if isinstance(value, list) else [value] for value in rows]
