"""The release-format readers under generated damage (Hypothesis): each example takes one clean fixture file
of a dataset (GoEmotions labels.txt and splits, read multi-label and single-label; E-c with labels and with
labels withheld; dair-ai emotion) and applies one mutation: dropped, duplicated, swapped or joined lines and
columns, blank and whitespace-only fields, duplicated names and ids, out-of-range and non-numeric label ids,
stray separators, a BOM, CRLF or mixed line ends, non-UTF-8 bytes, truncation.

The property: loading the mutated directory either
- gives the same data as its clean equivalent, or
- raises one `DataError` whose message is one line `<the mutated file>:<line>: <field>: <problem>`, the line
  being the one the mutation broke;
never another exception, never a silently different dataset. Each mutation says which outcome is right:

- Same data as the clean file: LF <-> CRLF or mixed line ends, a leading BOM, trailing whitespace-only lines, a
  missing or added final line end (not for the GoEmotions splits, below), whitespace around a field that is
  not free text (ids, label ids and names, E-c header names: readers strip those), label ids of a GoEmotions
  row reordered or repeated, E-c columns permuted consistently in the header and every row.
- The clean rows, re-indexed: dropped or swapped data lines, a duplicated dair-ai line (the release has
  duplicates), a file cut at a line end (its first rows).
- An error on a known line: everything else. Some damage no reader can see and the strategies leave out: two
  0/1 label fields of one E-c row swapped (another valid row), a comma inside a multi-digit GoEmotions label
  id, a label id or emotion replaced by another valid one, free text padded or edited.

A file cut inside its last field must fail; in the GoEmotions splits that field is the free-form comment id,
so their last line needs its line end (a cut there would load a shorter id). labels.txt must hold the
release's 28 names in order (like the hub's class names): any dropped, swapped or changed line fails.

The second half does the same for local directories in the hub's layout (README.md configs, Parquet files),
which the hub loaders read with `datasets`.

Derandomized with a bounded number of examples, so CI sees the same cases every run (~15 s on 2 cores).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from tests.helpers.data import write_emotion6, write_goemotions, write_semeval_ec
from trainables.data import (EMOTION6_LABELS, DataError, EmotionData, Split, load_dataset, single_label)

FUZZ = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
WHITESPACE = [" ", "  ", "\u00a0", "\u3000"]  # str.strip() removes each; none is a separator
BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]
EC_FILES = {"train": "2018-E-c-En-train.txt", "test": "2018-E-c-En-test.txt"}


@dataclass(frozen=True)
class Target:
    """One file of one dataset, and what its lines hold."""
    name: str
    dataset: str  # what load_dataset gets
    filename: str
    split: str | None  # the split the file holds (None: labels.txt)
    kinds: tuple[str, ...]  # each field's kind: text, id, labels (GoEmotions ids), label (one value), name
    separator: str = "\t"
    header: int = 0  # header lines
    last_line_end: bool = False  # the last line must end with a line end (GoEmotions splits)
    labelled: bool = True  # E-c: 0/1 values, or NONE (withheld)
    options: dict = field(default_factory=dict)

    @property
    def names(self) -> bool:
        return self.kinds == ("name",)


GO_SPLIT = ("text", "labels", "id")
EC = ("id", "text", *["label"] * 11)
TARGETS = [
    Target("goemotions labels.txt", "goemotions", "labels.txt", None, ("name",)),
    Target("goemotions train.tsv", "goemotions", "train.tsv", "train", GO_SPLIT, last_line_end=True),
    Target("goemotions dev.tsv", "goemotions", "dev.tsv", "validation", GO_SPLIT, last_line_end=True),
    Target("goemotions_single (single) train.tsv", "goemotions_single", "train.tsv", "train", GO_SPLIT,
           last_line_end=True, options={"label_rule": "single"}),
    Target("goemotions_single (rarest) test.tsv", "goemotions_single", "test.tsv", "test", GO_SPLIT,
           last_line_end=True, options={"label_rule": "rarest"}),
    Target("semeval_ec train", "semeval_ec", EC_FILES["train"], "train", EC, header=1),
    Target("semeval_ec test (withheld)", "semeval_ec", EC_FILES["test"], "test", EC, header=1, labelled=False),
    Target("emotion6 train.txt", "emotion6", "train.txt", "train", ("text", "label"), separator=";"),
]


@dataclass
class Doc:
    """A text file as lines (str, or bytes where a mutation put raw bytes), each with its line end."""
    lines: list
    ends: list[str]
    bom: bool = False

    @classmethod
    def parse(cls, raw: bytes) -> "Doc":
        text = raw.decode("utf-8")
        end = "\r\n" if "\r\n" in text else "\n"
        lines = text.split(end)
        ends = [end] * len(lines)
        if lines[-1] == "":
            lines.pop(), ends.pop()
        else:
            ends[-1] = ""
        return cls(lines, ends)

    @property
    def end(self) -> str:
        return self.ends[0]

    def render(self) -> bytes:
        body = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + end.encode()
                        for line, end in zip(self.lines, self.ends))
        return ("\ufeff".encode() if self.bom else b"") + body

    def copy(self) -> "Doc":
        return Doc(list(self.lines), list(self.ends), self.bom)

    def insert(self, position: int, line) -> None:
        if position == len(self.lines) and self.ends[-1] == "":
            self.ends[-1] = self.end or "\n"
        self.lines.insert(position, line)
        self.ends.insert(position, self.end or "\n")


@dataclass(frozen=True)
class Same:
    """Loads to the clean data, with the mutated file's rows taken in this order (None: all, as they were)."""
    rows: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Fails:
    """Fails with one line naming the mutated file and this line."""
    line: int


def split_fields(target: Target, line: str) -> list[str]:
    if target.separator == ";":
        text, _, label = line.rpartition(";")
        return [text, label]
    return line.split(target.separator) if not target.names else [line]


def with_fields(target: Target, doc, i: int, fields: list[str]):
    """A copy of the document with line i made of `fields`."""
    mutated = doc.copy()
    mutated.lines[i] = join_fields(target, fields)
    return mutated


def join_fields(target: Target, fields: list[str]) -> str:
    return target.separator.join(fields)


def data_line(data, target: Target, doc: Doc) -> int:
    return data.draw(st.integers(target.header, len(doc.lines) - 1), label="line index")


def rows(target: Target, doc: Doc) -> list[int]:
    return list(range(len(doc.lines) - target.header))


# --- Mutations: (data, target, clean doc) -> (mutated doc or bytes, outcome) ----------------------------------

def other_line_ends(data, target, doc):
    doc = doc.copy()
    other = "\n" if doc.end == "\r\n" else "\r\n"
    mixed = data.draw(st.booleans(), label="mixed")
    doc.ends = [(data.draw(st.sampled_from(["\n", "\r\n"])) if mixed else other) if end else ""
                for end in doc.ends]
    return doc, Same()


def bom(data, target, doc):
    doc = doc.copy()
    doc.bom = True
    return doc, Same()


def final_line_end(data, target, doc):
    doc = doc.copy()
    if doc.ends[-1]:
        doc.ends[-1] = ""
        return doc, Fails(len(doc.lines)) if target.last_line_end else Same()
    doc.ends[-1] = data.draw(st.sampled_from(["\n", "\r\n"]))
    return doc, Same()


def trailing_blank_lines(data, target, doc):
    doc = doc.copy()
    for blank in data.draw(st.lists(st.sampled_from(["", " ", "\t", " \t ", "\u00a0"]), min_size=1, max_size=3)):
        doc.insert(len(doc.lines), blank)
    doc.ends[-1] = data.draw(st.sampled_from(["", "\n", "\r\n"]))
    return doc, Same()


def blank_line_inside(data, target, doc):
    doc = doc.copy()
    position = data.draw(st.integers(0, len(doc.lines) - 1), label="position")
    doc.insert(position, data.draw(st.sampled_from(["", " ", "\t", "\u00a0 "])))
    return doc, Fails(position + 1)


def drop_line(data, target, doc):
    i = data.draw(st.integers(0, len(doc.lines) - 1), label="line index")
    mutated = doc.copy()
    del mutated.lines[i], mutated.ends[i]
    if target.names or i < target.header:
        return mutated, Fails(i + 1)
    return mutated, Same(tuple(row for row in rows(target, doc) if row != i - target.header))


def duplicate_line(data, target, doc):
    n = len(doc.lines)
    i = data.draw(st.integers(0, n - 1), label="line index")
    j = data.draw(st.integers(0, n), label="copy at")
    mutated = doc.copy()
    mutated.insert(j, doc.lines[i])
    later = max(j, i if j > i else i + 1)
    if target.header and j == 0 and i != 0:
        return mutated, Fails(1)  # a data row where the header should be
    if target.dataset == "emotion6":  # no ids: the release itself has duplicate lines
        order = list(range(n))
        order.insert(j, i)
        return mutated, Same(tuple(order))
    return mutated, Fails(later + 1)


def swap_lines(data, target, doc):
    i, j = sorted(data.draw(st.lists(st.integers(0, len(doc.lines) - 1), min_size=2, max_size=2, unique=True),
                            label="lines"))
    assume(doc.lines[i] != doc.lines[j])
    mutated = doc.copy()
    mutated.lines[i], mutated.lines[j] = doc.lines[j], doc.lines[i]
    if target.names or i < target.header:
        return mutated, Fails(i + 1)
    order = rows(target, doc)
    h = target.header
    order[i - h], order[j - h] = order[j - h], order[i - h]
    return mutated, Same(tuple(order))


def join_lines(data, target, doc):
    """A lost line end: two lines run together."""
    i = data.draw(st.integers(0, len(doc.lines) - 2), label="line index")
    mutated = doc.copy()
    mutated.lines[i] += mutated.lines.pop(i + 1)
    mutated.ends.pop(i)
    return mutated, Fails(i + 1)


def truncate(data, target, doc):
    raw = doc.render()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut at byte")
    kept, rest = raw[:cut], raw[cut:]
    whole = kept.count(b"\n")  # lines kept with their line end
    if cut == 0:
        return kept, Fails(1)
    if not kept.endswith(b"\n"):
        if not (rest.startswith(b"\n") or rest.startswith(b"\r\n") or (kept.endswith(b"\r") and rest[:1] == b"\n")):
            return kept, Fails(whole + 1)  # cut inside a line
        if target.last_line_end:
            return kept, Fails(whole + 1)
        whole += 1  # a whole last line, without its line end
    if target.names:
        return kept, Fails(whole + 1)
    if whole <= target.header:
        return kept, Fails(target.header + 1)
    return kept, Same(tuple(range(whole - target.header)))


def field_of_kind(data, target, doc, kinds) -> tuple[int, list[str], int]:
    i = data_line(data, target, doc)
    fields = split_fields(target, doc.lines[i])
    choices = [f for f, kind in enumerate(target.kinds) if kind in kinds]
    assume(choices)
    return i, fields, data.draw(st.sampled_from(choices), label="field")


def blank_field(data, target, doc):
    i, fields, f = field_of_kind(data, target, doc, ("text", "id", "labels", "label", "name"))
    fields[f] = data.draw(st.sampled_from(["", *WHITESPACE]), label="blank")
    return with_fields(target, doc, i, fields), Fails(i + 1)


def padded_field(data, target, doc):
    """Whitespace around a field readers strip (not free text); E-c header names too."""
    in_header = target.header and data.draw(st.booleans(), label="in header")
    i = 0 if in_header else data_line(data, target, doc)
    fields = split_fields(target, doc.lines[i])
    choices = range(len(fields)) if in_header else [f for f, kind in enumerate(target.kinds) if kind != "text"]
    f = data.draw(st.sampled_from(list(choices)), label="field")
    pad = st.text(st.sampled_from(" \u00a0"), max_size=3)
    value = fields[f]
    if target.kinds[f] == "labels" and not in_header:
        value = ",".join(data.draw(pad) + token + data.draw(pad) for token in value.split(","))
    left, right = data.draw(pad), data.draw(pad)
    if not (left or right or value != fields[f]):
        right = " "
    fields[f] = left + value + right
    return with_fields(target, doc, i, fields), Same()


def reordered_label_ids(data, target, doc):
    i = data_line(data, target, doc)
    fields = split_fields(target, doc.lines[i])
    tokens = fields[1].split(",")
    tokens = data.draw(st.permutations(tokens)) + data.draw(st.lists(st.sampled_from(tokens), max_size=2))
    fields[1] = ",".join(tokens)
    return with_fields(target, doc, i, fields), Same()


def swapped_fields(data, target, doc):
    """Two fields of different kinds trade places in one line (two E-c 0/1 fields would make a valid row)."""
    i = data_line(data, target, doc)
    fields = split_fields(target, doc.lines[i])
    a = data.draw(st.integers(0, len(fields) - 1), label="field")
    b = data.draw(st.sampled_from([f for f, kind in enumerate(target.kinds) if kind != target.kinds[a]]),
                  label="other field")
    fields[a], fields[b] = fields[b], fields[a]
    return with_fields(target, doc, i, fields), Fails(i + 1)


def permuted_columns(data, target, doc):
    """The same permutation of the columns in every line: a header maps them back, without one it cannot."""
    width = len(target.kinds)
    order = data.draw(st.permutations(range(width)), label="column order")
    assume(any(target.kinds[a] != target.kinds[b] for a, b in zip(order, range(width))) or target.header)
    mutated = doc.copy()
    mutated.lines = [join_fields(target, [split_fields(target, line)[c] for c in order]) for line in doc.lines]
    if target.header:
        return mutated, Same()
    return mutated, Fails(1)


def field_edit(edit):
    """A mutation that applies `edit(fields, f)` to one field of one line, or of every line (a whole column)."""
    def mutate(data, target, doc):
        whole_column = data.draw(st.booleans(), label="whole column")
        i = 0 if whole_column else data_line(data, target, doc)
        f = data.draw(st.integers(0, len(target.kinds) - 1), label="field")
        mutated = doc.copy()
        for n in range(len(doc.lines)) if whole_column else [i]:
            fields = split_fields(target, doc.lines[n])
            edit(fields, f)
            mutated.lines[n] = join_fields(target, fields)
        return mutated, Fails(i + 1 if not whole_column else 1)
    return mutate


dropped_field = field_edit(lambda fields, f: fields.pop(f))
dropped_field.__name__ = "dropped_field"
duplicated_field = field_edit(lambda fields, f: fields.insert(f, fields[f]))
duplicated_field.__name__ = "duplicated_field"


def stray_separator(data, target, doc):
    i = data.draw(st.integers(0, len(doc.lines) - 1), label="line index")
    line = doc.lines[i]
    mutated = doc.copy()
    if target.names:  # a name has no separator: a space or tab inside it changes it, at its ends it is stripped
        at = data.draw(st.integers(0, len(line)), label="at")
        mutated.lines[i] = line[:at] + data.draw(st.sampled_from([" ", "\t"])) + line[at:]
        return mutated, Same() if at in (0, len(line)) else Fails(i + 1)
    if target.kinds == GO_SPLIT and i >= target.header and data.draw(st.booleans(), label="comma"):
        fields = split_fields(target, line)  # a comma at a label-id boundary (inside '27' it makes 2 and 7)
        tokens = fields[1].split(",")
        k = data.draw(st.integers(0, len(tokens)), label="at token")
        tokens.insert(k, "")
        fields[1] = ",".join(tokens)
        mutated.lines[i] = join_fields(target, fields)
        return mutated, Fails(i + 1)
    at = data.draw(st.integers(0, len(line)), label="at")
    mutated.lines[i] = line[:at] + target.separator + line[at:]
    return mutated, Fails(i + 1)


def duplicated_id(data, target, doc):
    i, j = data.draw(st.lists(st.integers(target.header, len(doc.lines) - 1), min_size=2, max_size=2, unique=True),
                     label="lines")
    f = target.kinds.index("id")
    fields = split_fields(target, doc.lines[j])
    fields[f] = split_fields(target, doc.lines[i])[f]
    mutated = doc.copy()
    mutated.lines[j] = join_fields(target, fields)
    return mutated, Fails(max(i, j) + 1)


# Not ASCII digits, or out of range: int() takes '٣' and '１', str.isdigit() takes '³', 5000 digits overflow int()
GO_BAD_IDS = ["9" * 5000, "³", "٣", "１", "1.0", "1e1", "+1", "0x1", "1_0", "nan", "inf", "-0", "", " ", "28"]
EC_VALUES = ["2", "-1", "0.0", "01", "NONE", "none", "true", "", " ", "1.", "⁰", "١", "nan", "0 1", "0,1"]
FIELD_TEXT = st.text(st.characters(exclude_characters="\n\r"), max_size=6)


def replaced_value(data, target, doc):
    """A label id, 0/1 value, emotion or label name replaced by generated text."""
    i, fields, f = field_of_kind(data, target, doc, ("labels", "label", "name"))
    kind, original = target.kinds[f], fields[f]
    mutated = doc.copy()
    if kind == "labels":
        tokens = original.split(",")
        k = data.draw(st.integers(0, len(tokens) - 1), label="token")
        tokens[k] = data.draw(st.one_of(st.sampled_from(GO_BAD_IDS), st.integers(28, 10 ** 40).map(str),
                                        st.integers(max_value=-1).map(str), FIELD_TEXT), label="label id")
        valid = [re.fullmatch(r"[0-9]{1,9}", t.strip()) and int(t) < 28 for t in ",".join(tokens).split(",")]
        assume(not all(valid))
        fields[f] = ",".join(tokens)
        mutated.lines[i] = join_fields(target, fields)
        return mutated, Fails(i + 1)
    value = data.draw(st.one_of(st.sampled_from(EC_VALUES if target.dataset == "semeval_ec" else
                                                [*EMOTION6_LABELS, "Joy", "happy", "", "3"]), FIELD_TEXT),
                      label="value")
    fields[f] = value
    mutated.lines[i] = join_fields(target, fields)
    if target.names:
        names = [line.strip() for line in doc.lines]
        if value.strip() == original.strip():
            return mutated, Same()
        twin = names.index(value.strip()) if value.strip() in names else i
        return mutated, Fails(max(i, twin) + 1)
    if target.separator in value:  # one more field
        return mutated, Fails(i + 1)
    if value.strip() == original.strip():
        return mutated, Same()
    if target.dataset == "semeval_ec":
        valid = ("0", "1") if target.labelled else ()  # a 0/1 among NONEs fails: the row mixes them
    else:
        valid = EMOTION6_LABELS
    assume(value.strip() not in valid)  # another valid value: a different row no reader can tell
    return mutated, Fails(i + 1)


def non_utf8(data, target, doc):
    i = data.draw(st.integers(0, len(doc.lines) - 1), label="line index")
    line = doc.lines[i]
    at = len(line[:data.draw(st.integers(0, len(line)), label="at")].encode())
    raw = line.encode()
    mutated = doc.copy()
    mutated.lines[i] = raw[:at] + data.draw(st.sampled_from(BAD_UTF8), label="bytes") + raw[at:]
    return mutated, Fails(i + 1)


def utf16(data, target, doc):
    return doc.render().decode("utf-8").encode("utf-16"), Fails(1)


MUTATIONS: list[Callable] = [
    other_line_ends, bom, final_line_end, trailing_blank_lines, blank_line_inside, drop_line, duplicate_line,
    swap_lines, join_lines, truncate, blank_field, padded_field, reordered_label_ids, swapped_fields,
    permuted_columns, dropped_field, duplicated_field, stray_separator, duplicated_id, replaced_value, non_utf8,
    utf16,
]
APPLIES: dict[Callable, Callable[[Target], bool]] = {  # the rest apply to every file
    reordered_label_ids: lambda target: target.kinds == GO_SPLIT,
    duplicated_id: lambda target: "id" in target.kinds,
    **{mutation: lambda target: not target.names
       for mutation in (swapped_fields, permuted_columns, dropped_field, duplicated_field)},
}


def mutations_for(target: Target) -> list[Callable]:
    return [mutation for mutation in MUTATIONS if APPLIES.get(mutation, lambda _: True)(target)]


# --- Clean fixtures and the oracle ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Path]:
    """Small clean directories, one per dataset (written by the same writers as the other tests)."""
    root = tmp_path_factory.mktemp("fuzz-clean")
    return {"goemotions": write_goemotions(root / "goemotions", sizes=(16, 10, 10)),
            "semeval_ec": write_semeval_ec(root / "semeval_ec", sizes=(12, 8, 8)),
            "emotion6": write_emotion6(root / "emotion6", sizes=(12, 6, 6))}


def directory_of(target: Target) -> str:
    return "goemotions" if target.dataset.startswith("goemotions") else target.dataset


def take(split: Split, order: tuple[int, ...]) -> Split:
    index = list(order)
    return Split([split.texts[i] for i in index], None if split.labels is None else split.labels[index],
                 [split.ids[i] for i in index] if split.ids else [])


def expected_data(target: Target, clean_dir: Path, outcome: Same) -> EmotionData:
    """The clean directory's data, with the mutated file's rows in `outcome.rows`; the single-label rule runs
    after, as in the loader."""
    base = load_dataset(directory_of(target), clean_dir) if target.dataset == "goemotions_single" else \
        load_dataset(target.dataset, clean_dir)
    if outcome.rows is not None:
        base = replace(base, **{target.split: take(getattr(base, target.split), outcome.rows)})
    return single_label(base, target.options["label_rule"]) if target.dataset == "goemotions_single" else base


def assert_same_data(loaded: EmotionData, expected: EmotionData) -> None:
    assert (loaded.name, loaded.label_names, loaded.multi_label, loaded.note) == \
        (expected.name, expected.label_names, expected.multi_label, expected.note)
    for name in ("train", "validation", "test"):
        got, want = getattr(loaded, name), getattr(expected, name)
        assert got.texts == want.texts, name
        assert got.ids == want.ids, name
        if want.labels is None:
            assert got.labels is None, name
        else:
            assert got.labels.dtype == want.labels.dtype and np.array_equal(got.labels, want.labels), name


def check_one_line_error(message: str, path: Path, line: int) -> None:
    """`<path>:<line>: <field>: <problem>`, on one line."""
    assert "\n" not in message and "\r" not in message, repr(message)
    match = re.match(rf"{re.escape(str(path))}:(\d+): ([A-Za-z][A-Za-z0-9 ]*): \S", message)
    assert match, f"not '<file>:<line>: <field>: <problem>': {message!r}"
    assert int(match.group(1)) == line, f"expected line {line}: {message!r}"


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.name)
@FUZZ
@given(data=st.data())
def test_a_mutated_file_loads_the_same_or_fails_on_one_line(clean, tmp_path_factory, target, data):
    clean_dir = clean[directory_of(target)]
    work = tmp_path_factory.getbasetemp() / f"fuzz-{target.name.replace(' ', '-')}"
    if not work.exists():
        shutil.copytree(clean_dir, work)
    path = work / target.filename
    clean_bytes = (clean_dir / target.filename).read_bytes()
    doc = Doc.parse(clean_bytes)
    assert doc.render() == clean_bytes

    mutation = data.draw(st.sampled_from(mutations_for(target)), label="mutation")
    mutated, outcome = mutation(data, target, doc)
    raw = mutated if isinstance(mutated, bytes) else mutated.render()
    note(f"{mutation.__name__}: {raw[:4000]!r} -> {outcome}")
    event(f"{mutation.__name__}: {type(outcome).__name__}")
    path.write_bytes(raw)
    try:
        loaded = load_dataset(target.dataset, work, **target.options)
    except DataError as error:
        assert isinstance(outcome, Fails), f"{mutation.__name__}: should load as the clean file, failed: {error}"
        check_one_line_error(str(error), path, outcome.line)
        return
    finally:
        path.write_bytes(clean_bytes)
    assert isinstance(outcome, Same), f"{mutation.__name__}: loaded, but the file is broken on line {outcome.line}"
    assert_same_data(loaded, expected_data(target, clean_dir, outcome))


# --- Local hub-format directories: README.md configs and Parquet files ---------------------------------------
#
# The hub loaders read a directory in the hub repo's layout with the same `datasets.load_dataset` call as the
# hub id. Damage there either loads the clean data or fails with one `DataError` line that names the hub
# dataset; damaged rows name the split, the row (from 0, as `split[row]`) and the column. Parquet files carry
# no line numbers; their damage is the whole file (cut, emptied, junk around it, a directory in its place,
# gone) or one value written through Arrow, which does not enforce the ClassLabel range.

@dataclass(frozen=True)
class HubTarget:
    name: str
    write: Callable[[Path], object]
    load: Callable[..., EmotionData]
    parquet: str  # one split's file, {split} for its name
    text: str
    label: str  # the class column (GoEmotions: lists of ids), or one E-c 0/1 column
    id: str | None
    num_labels: int
    readme: bool  # README.md holds the configs (the E-c export has none)


def hub_targets() -> list[HubTarget]:
    from tests.helpers.hub import write_emotion_repo, write_goemotions_repo, write_semeval_export
    from trainables.data import load_emotion6_hub, load_goemotions_hub, load_semeval_ec_hub

    return [
        HubTarget("go_emotions", lambda repo: write_goemotions_repo(repo, sizes=(12, 6, 6)), load_goemotions_hub,
                  "simplified/{split}-00000-of-00001.parquet", "text", "labels", "id", 28, True),
        HubTarget("sem_eval_2018_task_1", lambda repo: write_semeval_export(repo, sizes=(10, 6, 6)),
                  load_semeval_ec_hub, "subtask5.english/{split}/0000.parquet", "Tweet", "anger", "ID", 2, False),
        HubTarget("emotion", write_emotion_repo, load_emotion6_hub, "split/{split}-00000-of-00001.parquet", "text",
                  "label", None, 6, True),
    ]


HUB_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class RowFails:
    """Fails naming this split, row and column."""
    split: str
    row: int
    column: str


@dataclass(frozen=True)
class Either:
    """Loads the clean data or fails with one line (damage to the README's YAML: what `datasets` makes of it)."""


def rewrite_rows(path: Path, change: Callable[[list[dict]], None]) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def damaged_readme(data, target: HubTarget, repo: Path):
    path = repo / "README.md"
    doc = Doc.parse(path.read_bytes())
    kind = data.draw(st.sampled_from(["drop", "duplicate", "swap", "blank", "bom", "crlf", "cut", "bad byte"]))
    i, j = (data.draw(st.integers(0, len(doc.lines) - 1)) for _ in range(2))
    if kind == "drop":
        del doc.lines[i], doc.ends[i]
    elif kind == "duplicate":
        doc.insert(j, doc.lines[i])
    elif kind == "swap":
        doc.lines[i], doc.lines[j] = doc.lines[j], doc.lines[i]
    elif kind == "blank":
        doc.insert(j, data.draw(st.sampled_from(["", "  ", "\t"])))
    elif kind == "bom":
        doc.bom = True
    elif kind == "crlf":
        doc.ends = ["\r\n"] * len(doc.ends)
    elif kind == "bad byte":
        doc.lines[i] = doc.lines[i].encode() + data.draw(st.sampled_from(BAD_UTF8))
    raw = doc.render()
    if kind == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    # A README whose YAML still reads, mapping the splits to other files (train <-> validation lines swapped), is
    # another valid repo, not damage: no reader can tell. Such cases are left out.
    assume(readme_configs(raw) in (None, readme_configs(path.read_bytes())))
    path.write_bytes(raw)
    return f"README.md {kind}", Either()


def readme_configs(raw: bytes):
    """The README's `configs` as YAML reads them; None where it does not read as a header with configs."""
    import yaml

    try:
        text = raw.decode("utf-8")
        header = yaml.safe_load(text.split("---")[1]) if text.startswith("---") else None
    except (UnicodeDecodeError, IndexError, yaml.YAMLError):
        return None
    return header.get("configs") if isinstance(header, dict) else None


def damaged_file(data, target: HubTarget, repo: Path):
    path = repo / target.parquet.format(split=data.draw(st.sampled_from(HUB_SPLITS)))
    raw = path.read_bytes()
    kind = data.draw(st.sampled_from(["cut", "junk before", "junk after", "empty", "directory", "gone"]))
    junk = data.draw(st.binary(min_size=1, max_size=16))
    if kind in ("directory", "gone"):
        path.unlink()
        if kind == "directory":
            path.mkdir()
    else:
        path.write_bytes({"cut": raw[:data.draw(st.integers(0, len(raw) - 1))], "junk before": junk + raw,
                          "junk after": raw + junk, "empty": b""}[kind])
    return f"{path.relative_to(repo)} {kind}", Fails(0)


def damaged_row(data, target: HubTarget, repo: Path):
    split = data.draw(st.sampled_from(HUB_SPLITS))
    path = repo / target.parquet.format(split=split)
    size = pq.read_metadata(path).num_rows
    row = data.draw(st.integers(0, size - 1))
    kinds = ["blank text", "null text", "null label"]
    kinds += ["blank id", "null id", "duplicate id"] if target.id else []
    kinds += ["class id out of range"] if target.num_labels > 2 else []  # E-c: bool columns hold 0/1 only
    kinds += ["no labels"] if target.label == "labels" else []
    kind = data.draw(st.sampled_from(kinds))
    bad_id = data.draw(st.sampled_from([target.num_labels, target.num_labels + 1, -1, 2 ** 40]))
    other = data.draw(st.integers(0, size - 2))
    other += other >= row
    reported, column = row, target.text

    def change(rows):
        nonlocal reported, column
        if kind in ("blank text", "null text"):
            rows[row][target.text] = data.draw(st.sampled_from(["", " ", "\u3000"])) if kind == "blank text" else None
        elif kind in ("blank id", "null id", "duplicate id"):
            column = target.id
            rows[row][target.id] = {"blank id": "  ", "null id": None, "duplicate id": rows[other][target.id]}[kind]
            reported = max(row, other) if kind == "duplicate id" else row
        else:
            column = target.label
            value = {"null label": None, "no labels": [], "class id out of range": bad_id}[kind]
            if target.label == "labels" and kind == "class id out of range":
                value = [*rows[row]["labels"], bad_id]
            rows[row][target.label] = value

    rewrite_rows(path, change)
    return f"{split} row {row}: {kind}", RowFails(split, reported, column)


def reordered_row(data, target: HubTarget, repo: Path):
    """Benign: a GoEmotions row's class ids reordered or repeated, or another split's rows untouched."""
    split = data.draw(st.sampled_from(HUB_SPLITS))
    path = repo / target.parquet.format(split=split)
    if target.label != "labels":
        return f"{split}: rewritten as is", Same()
    row = data.draw(st.integers(0, 5))
    order = data.draw(st.randoms(use_true_random=False))

    def change(rows):
        ids = list(rows[row]["labels"])
        order.shuffle(ids)
        rows[row]["labels"] = ids + ids[:1]

    rewrite_rows(path, change)
    return f"{split} row {row}: class ids reordered", Same()


HUB_MUTATIONS = [damaged_readme, damaged_file, damaged_row, reordered_row]


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory):
    """One clean repo per hub dataset and a `datasets` cache of this module's own."""
    import datasets

    root = tmp_path_factory.mktemp("fuzz-hub")
    cache, datasets.config.HF_DATASETS_CACHE = datasets.config.HF_DATASETS_CACHE, str(root / "datasets-cache")
    datasets.disable_progress_bars()
    repos = {}
    for target in hub_targets():
        target.write(root / "clean" / target.name)
        repos[target.name] = (target, root / "clean" / target.name, target.load(repo=str(root / "clean" / target.name)))
    yield root, repos
    datasets.enable_progress_bars()
    datasets.config.HF_DATASETS_CACHE = cache


@pytest.mark.parametrize("name", ["go_emotions", "sem_eval_2018_task_1", "emotion"])
@settings(derandomize=True, max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_hub_format_directory_loads_the_same_or_fails_on_one_line(hub_repos, name, data):
    root, repos = hub_repos
    target, clean_repo, clean_data = repos[name]
    mutations = [m for m in HUB_MUTATIONS if target.readme or m is not damaged_readme]
    mutation = data.draw(st.sampled_from(mutations), label="mutation")
    repo = Path(tempfile.mkdtemp(dir=root)) / name
    shutil.copytree(clean_repo, repo)
    try:
        what, outcome = mutation(data, target, repo)
        note(f"{what} -> {outcome}")
        event(f"{mutation.__name__}: {type(outcome).__name__}")
        try:
            loaded = target.load(repo=str(repo))
        except DataError as error:
            message = str(error)
            assert not isinstance(outcome, Same), f"{what}: should load as the clean repo, failed: {message}"
            assert "\n" not in message and "\r" not in message, repr(message)
            assert message.endswith("(or pass --data-dir with the release files)"), message
            if isinstance(outcome, RowFails):
                assert f": {outcome.split} split: row {outcome.row}: {outcome.column}: " in message, message
            return
        assert isinstance(outcome, (Same, Either)), f"{what}: loaded, but the repo is damaged"
        assert_same_data(loaded, clean_data)
    finally:
        shutil.rmtree(repo.parent)
