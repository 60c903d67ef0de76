"""Emotion datasets: one registry entry per dataset (`DATASETS`), each read from its release files (here, validated
line by line so bad input fails with `file:line: field: problem` before any trial starts) or from the hub
(trainables/hub_data.py). Every loader returns an `EmotionData` (trainables/splits.py): label names, the label
scheme, and train/validation/test splits of texts + labels (multi-hot float32 for multi-label, class ids for
single-label)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from trainables.hub_data import (PARQUET_EXPORT, HubDataset, hub_class_ids, hub_class_names, hub_data_error, hub_ids,
                                 hub_texts, load_hub_splits)
from trainables.splits import DataError, EmotionData, Split

BOM = "\ufeff"


def _read_lines(path: Path, last_field: str | None = None) -> list[str]:
    """The file's lines without line ends (LF or CRLF), less a leading BOM and trailing whitespace-only lines
    (what editors and spreadsheet exports add); a clear error for a missing file or bad UTF-8.

    Splits on newlines only: `str.splitlines` would also break a tweet at U+2028 or a form feed. With
    `last_field` (the free-text field that ends each line), the last line must end with a line end: a file cut
    short inside that field would otherwise load with a shortened value."""
    if path.is_dir():
        raise DataError(f"{path}: a directory, not a file")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: text: not valid UTF-8 (byte {raw[error.start]:#04x})") from None
    lines = text.removeprefix(BOM).split("\n")
    unterminated = lines.pop().removesuffix("\r")  # what follows the last line end: "" in a whole file
    lines = [line.removesuffix("\r") for line in lines]
    if unterminated.strip():
        lines.append(unterminated)
        if last_field:
            raise DataError(f"{path}:{len(lines)}: {last_field}: the last line has no line end (is the file cut "
                            f"short?)")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _check_names(path: Path, names: list[str], field_name: str) -> None:
    """Names, one a line (stripped), must be non-empty and unique: two outputs that mean the same emotion, or
    one that means nothing, would train silently."""
    first_seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{path}:{number}: {field_name}: empty")
        if name in first_seen:
            raise DataError(f"{path}:{number}: {field_name}: duplicate {name!r} (first on line {first_seen[name]})")
        first_seen[name] = number


# --- GoEmotions (release format: text<TAB>label ids<TAB>comment id, no header) ---------------------------

GOEMOTIONS_HUB = HubDataset("google-research-datasets/go_emotions", "simplified")


def _read_goemotions_labels(path: Path) -> list[str]:
    """labels.txt: the release's 28 names, one a line, in id order. Checked name by name, like the hub's
    class names: a dropped, swapped or cut line would silently give label ids other emotions."""
    names = [line.strip() for line in _read_lines(path)]
    if not names:
        raise DataError(f"{path}:1: label name: none (empty file)")
    _check_names(path, names, "label name")
    for number, (name, wanted) in enumerate(zip(names, GOEMOTIONS_LABELS), 1):
        if name != wanted:
            raise DataError(f"{path}:{number}: label name: {name!r}, expected {wanted!r} (the GoEmotions labels, "
                            f"in id order)")
    if len(names) != len(GOEMOTIONS_LABELS):
        number = min(len(names), len(GOEMOTIONS_LABELS)) + 1
        found = repr(names[number - 1]) if len(names) >= number else "no line"
        raise DataError(f"{path}:{number}: label name: {found}, expected {len(GOEMOTIONS_LABELS)} names "
                        f"(the GoEmotions labels, in id order)")
    return names


LABEL_ID = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() also takes '٣', and str.isdigit() '³'


def _read_goemotions_split(path: Path, num_labels: int) -> tuple[list[str], list[list[int]], list[str]]:
    texts, label_ids, ids, first_seen = [], [], [], {}
    for number, line in enumerate(_read_lines(path, last_field="comment id"), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: columns: expected 3 tab-separated fields "
                            f"(text, label ids, comment id), found {len(fields)}")
        text, labels, comment_id = fields[0], fields[1], fields[2].strip()
        if not text.strip():
            raise DataError(f"{path}:{number}: text: empty")
        row_labels = []
        for token in labels.split(","):
            if not LABEL_ID.fullmatch(token.strip()) or int(token) >= num_labels:
                raise DataError(f"{path}:{number}: labels: {token!r} is not a label id in 0..{num_labels - 1}")
            row_labels.append(int(token))
        if not comment_id:
            raise DataError(f"{path}:{number}: comment id: empty")
        if any(character.isspace() for character in comment_id):
            raise DataError(f"{path}:{number}: comment id: {comment_id!r} has whitespace in it")
        if comment_id in first_seen:
            raise DataError(f"{path}:{number}: comment id: duplicate {comment_id!r} "
                            f"(first on line {first_seen[comment_id]})")
        first_seen[comment_id] = number
        texts.append(text)
        label_ids.append(row_labels)
        ids.append(comment_id)
    if not texts:
        raise DataError(f"{path}:1: rows: none (empty file)")
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


def load_goemotions_hub(revision: str | None = None, repo: str | None = None) -> EmotionData:
    loaded, revision = load_hub_splits(GOEMOTIONS_HUB, ("text", "labels", "id"), revision, repo)
    label_names = hub_class_names(GOEMOTIONS_HUB, loaded["train"], "labels", GOEMOTIONS_LABELS)
    splits = {name: Split(hub_texts(GOEMOTIONS_HUB, name, split, "text"),
                          multi_hot(hub_class_ids(GOEMOTIONS_HUB, name, split, "labels", len(label_names)),
                                    len(label_names)),
                          hub_ids(GOEMOTIONS_HUB, name, split, "id"))
              for name, split in loaded.items()}
    return EmotionData("goemotions", label_names, multi_label=True, revision=revision, **splits)


# --- GoEmotions as a single-label task ---------------------------------------------------------------

GOEMOTIONS_LABEL_RULES = {
    "single": "keep the rows with exactly one label, drop the rest (every split)",
    "rarest": "keep every row; a row with several labels takes the one with the fewest train rows",
}


def single_label(data: EmotionData, rule: str) -> EmotionData:
    """One class id per row by `rule`; `note` says how many rows each split kept.

    "rarest" sends multi-label rows to the smaller classes, which is where macro-F1 needs examples; it is
    computed from train counts only and applied to every split the same way."""
    if rule not in GOEMOTIONS_LABEL_RULES:
        raise DataError(f"--label-rule {rule}: unknown rule (known: {', '.join(GOEMOTIONS_LABEL_RULES)})")
    train_counts = data.train.labels.sum(axis=0)
    splits, kept = {}, []
    for name in ("train", "validation", "test"):
        split = getattr(data, name)
        several = split.labels.sum(axis=1) > 1
        keep = np.flatnonzero(~several) if rule == "single" else np.arange(len(split))
        # Among a row's labels, the one with the fewest train rows (ties: the lower id).
        rarity = np.where(split.labels[keep] > 0, train_counts[None, :], np.inf)
        splits[name] = Split([split.texts[i] for i in keep], rarity.argmin(axis=1).astype(np.int64),
                             [split.ids[i] for i in keep] if split.ids else [])
        if not len(keep):
            raise DataError(f"{name} split: no rows left after --label-rule {rule}")
        kept.append(f"{name} {len(keep):,} of {len(split):,} ({int(several.sum()):,} with several labels)")
    note = f"label rule {rule} ({GOEMOTIONS_LABEL_RULES[rule]}): kept " + ", ".join(kept)
    return replace(data, name="goemotions_single", multi_label=False, note=note, **splits)


def load_goemotions_single_local(data_dir: Path, label_rule: str = "single") -> EmotionData:
    return single_label(load_goemotions_local(data_dir), label_rule)


def load_goemotions_single_hub(label_rule: str = "single", revision: str | None = None,
                               repo: str | None = None) -> EmotionData:
    return single_label(load_goemotions_hub(revision, repo), label_rule)


# --- SemEval-2018 Task 1 E-c (release format: TSV with header, CRLF, quotes are literal text) ----------

SEMEVAL_EC_HUB = HubDataset("SemEvalWorkshop/sem_eval_2018_task_1", "subtask5.english", branch=PARQUET_EXPORT)
SEMEVAL_EC_LABELS = ("anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
                     "sadness", "surprise", "trust")
SEMEVAL_EC_COLUMNS = ("ID", "Tweet", *SEMEVAL_EC_LABELS)
SEMEVAL_EC_FILES = {"train": "2018-E-c-En-train.txt", "validation": "2018-E-c-En-dev.txt",
                    "test": "2018-E-c-En-test.txt"}


def read_semeval_ec(path: Path, labelled: bool = True) -> Split:
    """One E-c file. Fields are split on tabs only (quoting off: a tweet may start with a quote character
    that belongs to the text). Labelled files carry 0/1 in every emotion column; the test file withholds
    them as NONE (labels None) or, for the released gold file, carries 0/1 too."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}:1: header: none (empty file; expected {' '.join(SEMEVAL_EC_COLUMNS)})")
    header = [column.strip() for column in lines[0].split("\t")]
    for column in header:
        if column not in SEMEVAL_EC_COLUMNS:
            raise DataError(f"{path}:1: header: {column!r} is not an E-c column "
                            f"(expected {', '.join(SEMEVAL_EC_COLUMNS)})")
    missing = [column for column in SEMEVAL_EC_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path}:1: header: missing column(s) {', '.join(missing)}")
    for i, column in enumerate(header):
        if column in header[:i]:
            raise DataError(f"{path}:1: header: column {column!r} appears twice (fields {header.index(column) + 1} "
                            f"and {i + 1})")
    position = {column: i for i, column in enumerate(header)}

    ids, texts, rows, first_seen, withheld = [], [], [], {}, None
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}:{number}: columns: expected {len(header)} tab-separated fields "
                            f"(ID, Tweet, 11 emotions), found {len(fields)}")
        tweet_id, text = fields[position["ID"]].strip(), fields[position["Tweet"]]
        if not tweet_id:
            raise DataError(f"{path}:{number}: ID: empty")
        if any(character.isspace() for character in tweet_id):
            raise DataError(f"{path}:{number}: ID: {tweet_id!r} has whitespace in it")
        if tweet_id in first_seen:
            raise DataError(f"{path}:{number}: ID: duplicate {tweet_id!r} (first on line {first_seen[tweet_id]})")
        first_seen[tweet_id] = number
        if not text.strip():
            raise DataError(f"{path}:{number}: Tweet: empty")
        values = [fields[position[name]].strip() for name in SEMEVAL_EC_LABELS]
        for name, value in zip(SEMEVAL_EC_LABELS, values):
            if value == "NONE" and labelled:
                raise DataError(f"{path}:{number}: {name}: NONE in a labelled file "
                                f"(only the test file withholds labels)")
            if value not in ("0", "1", "NONE"):
                raise DataError(f"{path}:{number}: {name}: {value!r} is not 0 or 1")
        row_withheld = values.count("NONE") == len(values)
        if "NONE" in values and not row_withheld:
            raise DataError(f"{path}:{number}: {SEMEVAL_EC_LABELS[values.index('NONE')]}: a row mixes NONE "
                            f"with 0/1 labels")
        if withheld is not None and row_withheld != withheld:
            raise DataError(f"{path}:{number}: {SEMEVAL_EC_LABELS[0]}: labels are NONE on some rows and "
                            f"0/1 on others")
        withheld = row_withheld
        ids.append(tweet_id)
        texts.append(text)
        rows.append([0.0 if row_withheld else float(value) for value in values])
    if not texts:
        raise DataError(f"{path}:2: rows: none after the header")
    labels = None if withheld else np.array(rows, dtype=np.float32)
    return Split(texts, labels, ids)


def load_semeval_ec_local(data_dir: Path) -> EmotionData:
    splits = {split: read_semeval_ec(data_dir / filename, labelled=split != "test")
              for split, filename in SEMEVAL_EC_FILES.items()}
    return EmotionData("semeval_ec", list(SEMEVAL_EC_LABELS), multi_label=True, **splits)


def load_semeval_ec_hub(revision: str | None = None, repo: str | None = None) -> EmotionData:
    """E-c from the hub's Parquet export of the repo (its main branch is a loading script): the test split
    there carries the gold labels, as bool columns."""
    loaded, revision = load_hub_splits(SEMEVAL_EC_HUB, SEMEVAL_EC_COLUMNS, revision, repo)
    splits = {}
    for name, split in loaded.items():
        for label in SEMEVAL_EC_LABELS:
            dtype = getattr(split.features[label], "dtype", None)
            if dtype != "bool" and not str(dtype).startswith("int"):
                raise hub_data_error(SEMEVAL_EC_HUB, f"{name} split: column {label}: {dtype} values, not 0/1")
            if None in split[label]:
                raise hub_data_error(SEMEVAL_EC_HUB, f"{name} split: row {list(split[label]).index(None)}: "
                                                     f"{label}: empty")
        labels = np.array([list(split[label]) for label in SEMEVAL_EC_LABELS], dtype=np.float32).T
        if not np.isin(labels, (0.0, 1.0)).all():
            raise hub_data_error(SEMEVAL_EC_HUB, f"{name} split: a label column holds values other than 0/1")
        splits[name] = Split(hub_texts(SEMEVAL_EC_HUB, name, split, "Tweet"), labels,
                             hub_ids(SEMEVAL_EC_HUB, name, split, "ID"))
    return EmotionData("semeval_ec", list(SEMEVAL_EC_LABELS), multi_label=True, revision=revision, **splits)


# --- dair-ai emotion, `split` config (release format: text;label, no header) -----------------------------

EMOTION6_HUB = HubDataset("dair-ai/emotion", "split")
EMOTION6_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")  # the hub's class ids 0..5
EMOTION6_FILES = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}


def read_emotion6(path: Path) -> Split:
    """One file of `text;label` lines. The release's texts hold no ';' (punctuation is stripped), so a second
    one is an error: two rows run together (a lost line end) would otherwise load as one row."""
    path = Path(path)
    texts, labels = [], []
    for number, line in enumerate(_read_lines(path), 1):
        text, separator, label = line.rpartition(";")
        if not separator:
            raise DataError(f"{path}:{number}: columns: expected text;label, found no ';'")
        if ";" in text:
            raise DataError(f"{path}:{number}: columns: expected text;label, found {line.count(';')} ';' "
                            f"(the texts hold none)")
        label = label.strip()
        if label not in EMOTION6_LABELS:
            raise DataError(f"{path}:{number}: label: {label!r} is not one of {', '.join(EMOTION6_LABELS)}")
        if not text.strip():
            raise DataError(f"{path}:{number}: text: empty")
        texts.append(text)
        labels.append(EMOTION6_LABELS.index(label))
    if not texts:
        raise DataError(f"{path}:1: rows: none (empty file)")
    return Split(texts, np.array(labels, dtype=np.int64))


def load_emotion6_local(data_dir: Path) -> EmotionData:
    splits = {split: read_emotion6(data_dir / filename) for split, filename in EMOTION6_FILES.items()}
    return EmotionData("emotion6", list(EMOTION6_LABELS), multi_label=False, **splits)


def load_emotion6_hub(revision: str | None = None, repo: str | None = None) -> EmotionData:
    loaded, revision = load_hub_splits(EMOTION6_HUB, ("text", "label"), revision, repo)
    label_names = hub_class_names(EMOTION6_HUB, loaded["train"], "label", EMOTION6_LABELS)
    splits = {name: Split(hub_texts(EMOTION6_HUB, name, split, "text"),
                          np.array([ids[0] for ids in hub_class_ids(EMOTION6_HUB, name, split, "label",
                                                                    len(label_names))], dtype=np.int64))
              for name, split in loaded.items()}
    return EmotionData("emotion6", label_names, multi_label=False, revision=revision, **splits)


# --- Registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataOption:
    """A loader option the sweep exposes as `--<name>` (first choice is the default)."""
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label_names: tuple[str, ...]
    multi_label: bool
    hub_id: str  # where the hub loader reads (str of its HubDataset)
    local_files: tuple[str, ...]  # what --data-dir must hold
    load_local: Callable[..., EmotionData]  # (data_dir, **options)
    load_hub: Callable[..., EmotionData]  # (revision=commit or None, **options)
    options: dict[str, DataOption] = field(default_factory=dict)


GOEMOTIONS_FILES = ("train.tsv", "dev.tsv", "test.tsv", "labels.txt")
GOEMOTIONS_LABELS = ("admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
                     "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
                     "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
                     "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral")

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("goemotions", GOEMOTIONS_LABELS, True, str(GOEMOTIONS_HUB), GOEMOTIONS_FILES,
                load_goemotions_local, load_goemotions_hub),
    DatasetSpec("goemotions_single", GOEMOTIONS_LABELS, False, str(GOEMOTIONS_HUB), GOEMOTIONS_FILES,
                load_goemotions_single_local, load_goemotions_single_hub,
                {"label_rule": DataOption(tuple(GOEMOTIONS_LABEL_RULES), "; ".join(
                    f"{rule}: {meaning}" for rule, meaning in GOEMOTIONS_LABEL_RULES.items()))}),
    DatasetSpec("semeval_ec", SEMEVAL_EC_LABELS, True, str(SEMEVAL_EC_HUB),
                tuple(SEMEVAL_EC_FILES.values()), load_semeval_ec_local, load_semeval_ec_hub),
    DatasetSpec("emotion6", EMOTION6_LABELS, False, str(EMOTION6_HUB), tuple(EMOTION6_FILES.values()),
                load_emotion6_local, load_emotion6_hub),
)}


def load_dataset(name: str, data_dir: str | Path | None, revision: str | None = None,
                 **options: str) -> EmotionData:
    """Load a registered dataset from `data_dir` (release format) or, without one, from the hub at `revision`
    (a commit; None: the latest, and the returned data's `revision` says which commit that was)."""
    spec = DATASETS[name]
    if data_dir is None:
        return spec.load_hub(revision=revision, **options)
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: a file, not a directory (--data-dir)")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found (--data-dir)")
    return spec.load_local(data_dir, **options)


def load_sweep_data(sweep: dict) -> EmotionData:
    """The validation and test rows exactly as a sweep's trials saw them (all training rows), from its
    sweep.json: dataset, source (and the hub commit it was read at), options, rows kept per split and seed.
    Analysis uses it to predict again."""
    args = sweep["args"]
    options = {key: args[key] for key in DATASETS[sweep["dataset"]].options}
    data = load_dataset(sweep["dataset"], sweep["data_source"] if args.get("data_dir") else None,
                        revision=sweep.get("data_revision"), **options)
    return data.subsample(None, sweep["rows"]["val"], sweep["rows"]["test"], sweep["seed"])
