"""Dataset repositories in their hub repo's layout (README.md YAML configs, one folder per config, Parquet files
written by `datasets` with the hub's features and split names; for E-c, the hub's Parquet export), for the hub
loaders to read offline with the same `datasets.load_dataset` call they make for the hub repo id."""
from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import yaml

from tests.helpers.data import goemotions_rows, semeval_ec_rows
from trainables.data import EMOTION6_LABELS, GOEMOTIONS_LABELS, SEMEVAL_EC_LABELS


SPLITS = ("train", "validation", "test")
EMOTION6_TEXTS = ["i feel so alone today", "im really happy with it", "i love this so much",
                  "this makes me furious", "i am scared of the dark", "wow i did not expect that"]


def write_config_readme(repo: Path, configs: dict[str, tuple[str, ...]], default: str) -> None:
    """README.md whose YAML header maps each config's splits to its Parquet files, as the hub repos do."""
    header = {"configs": [{"config_name": name,
                           "data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in splits],
                           **({"default": True} if name == default else {})}
                          for name, splits in configs.items()]}
    (repo / "README.md").write_text(f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n# Dataset card\n")


def write_split(dataset: datasets.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))


def goemotions_simplified_features(label_names=GOEMOTIONS_LABELS) -> datasets.Features:
    return datasets.Features({"text": datasets.Value("string"),
                              "labels": datasets.List(datasets.ClassLabel(names=list(label_names))),
                              "id": datasets.Value("string")})


def goemotions_raw_features() -> datasets.Features:
    """The per-rater annotations: one row per comment and rater, one 0/1 int column per emotion."""
    return datasets.Features({
        "text": datasets.Value("string"), "id": datasets.Value("string"), "author": datasets.Value("string"),
        "subreddit": datasets.Value("string"), "link_id": datasets.Value("string"),
        "parent_id": datasets.Value("string"), "created_utc": datasets.Value("float32"),
        "rater_id": datasets.Value("int32"), "example_very_unclear": datasets.Value("bool"),
        **{name: datasets.Value("int32") for name in GOEMOTIONS_LABELS}})


def write_goemotions_repo(repo: Path, sizes=(40, 16, 16), simplified_splits=SPLITS,
                          label_names=GOEMOTIONS_LABELS) -> dict[str, list]:
    """The repo's main branch: config `raw` (train only) and `simplified` (the default); returns the simplified
    rows written, by split. The raw rows carry other texts, so reading the wrong config shows."""
    rows = {split: goemotions_rows(size, seed) for seed, (split, size) in enumerate(zip(SPLITS, sizes))}
    for split in simplified_splits:
        write_split(datasets.Dataset.from_dict(
            {"text": [text for text, _, _ in rows[split]], "labels": [labels for _, labels, _ in rows[split]],
             "id": [comment_id for _, _, comment_id in rows[split]]},
            features=goemotions_simplified_features(label_names)),
            repo / "simplified" / f"{split}-00000-of-00001.parquet")
    raw = goemotions_rows(12, seed=9)
    write_split(datasets.Dataset.from_dict({
        "text": [f"raw {text}" for text, _, _ in raw], "id": [comment_id for _, _, comment_id in raw],
        "author": ["someone"] * len(raw), "subreddit": ["r"] * len(raw), "link_id": ["t3_x"] * len(raw),
        "parent_id": ["t1_y"] * len(raw), "created_utc": [1.5e9] * len(raw), "rater_id": list(range(len(raw))),
        "example_very_unclear": [False] * len(raw),
        **{name: [int(i in labels) for _, labels, _ in raw] for i, name in enumerate(GOEMOTIONS_LABELS)}},
        features=goemotions_raw_features()), repo / "raw" / "train-00000-of-00001.parquet")
    write_config_readme(repo, {"raw": ("train",), "simplified": simplified_splits}, default="simplified")
    return rows


def semeval_features(label_dtype: str = "bool", labels=SEMEVAL_EC_LABELS) -> datasets.Features:
    return datasets.Features({"ID": datasets.Value("string"), "Tweet": datasets.Value("string"),
                              **{name: datasets.Value(label_dtype) for name in labels}})


def write_semeval_export(repo: Path, sizes=(30, 12, 12), splits=SPLITS, labels=SEMEVAL_EC_LABELS,
                         label_dtype: str = "bool") -> dict[str, list]:
    """The branch refs/convert/parquet: <config>/<split>/0000.parquet for subtask5.english and for another
    config (Spanish, other IDs), so reading the wrong folder shows; returns the English rows by split."""
    rows = {split: semeval_ec_rows(size, seed) for seed, (split, size) in enumerate(zip(SPLITS, sizes))}
    for config, prefix in (("subtask5.english", ""), ("subtask5.spanish", "es-")):
        for split in splits:
            written = rows[split]
            cast = bool if label_dtype == "bool" else (str if label_dtype == "string" else int)
            write_split(datasets.Dataset.from_dict(
                {"ID": [prefix + tweet_id for tweet_id, _, _ in written], "Tweet": [text for _, text, _ in written],
                 **{name: [cast(values[i]) for _, _, values in written] for i, name in enumerate(labels)}},
                features=semeval_features(label_dtype, labels)), repo / config / split / "0000.parquet")
    return rows


def write_emotion_repo(repo: Path, label_names=EMOTION6_LABELS) -> dict[str, list]:
    """Configs `split` (train/validation/test, the default) and `unsplit` (train only, other texts)."""
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(label_names))})
    rng = np.random.default_rng(0)
    rows = {split: [(EMOTION6_TEXTS[label], int(label)) for label in rng.integers(0, 6, size=size)]
            for split, size in zip(SPLITS, (30, 12, 12))}
    for split, written in rows.items():
        write_split(datasets.Dataset.from_dict({"text": [t for t, _ in written], "label": [lb for _, lb in written]},
                                               features=features), repo / "split" / f"{split}-00000-of-00001.parquet")
    write_split(datasets.Dataset.from_dict({"text": ["unsplit row"] * 5, "label": [0] * 5}, features=features),
                repo / "unsplit" / "train-00000-of-00001.parquet")
    write_config_readme(repo, {"split": SPLITS, "unsplit": ("train",)}, default="split")
    return rows
