"""E-c, dair-ai emotion and single-label GoEmotions: release-format fixtures (CRLF, quotes, emoji, multi-label
rows), the single-label rules, tweet normalisation, the E-c prediction file round trip, and every bad-input
case of issue 3 as one `file:line: field: problem` line with exit code 2 and nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.predictions import write_ec_file
from tests.conftest import REPO, write_goemotions
from trainables.data import (DATASETS, EMOTION6_LABELS, SEMEVAL_EC_COLUMNS, SEMEVAL_EC_LABELS, DataError,
                             load_dataset, normalise_tweet, read_semeval_ec)

# Tweets with the quirks of the release: quotes that open or close a field, curly quotes, emoji, mentions,
# links, hashtags, HTML entities. A reader with CSV quoting on would merge or mangle these rows.
EC_TWEETS = ['"Quoted from the start', 'ends with a quote"', '""double"" quotes', "“curly” isn't ‘plain’",
             "😂😂 so funny", "@Max_Kellerman see https://t.co/x1 #LoveWins", "fish &amp; chips #happy",
             "a plain tweet", "'single quoted'", "wow ! #GOPATS 🐶"]
EMOTION6_WORDS = ["i", "feel", "im", "really", "so", "today", "didnt", "a", "bit", "when"]


def semeval_ec_rows(n: int, seed: int) -> list[tuple[str, str, list[int]]]:
    """(ID, tweet, 11 labels); each label has its own cue word; rows with none and with several labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = (rng.random(len(SEMEVAL_EC_LABELS)) < 0.2).astype(int).tolist()
        if i % 7 == 0:
            labels = [0] * len(SEMEVAL_EC_LABELS)
        words = [f"cue{c}" for c, on in enumerate(labels) if on] + [EC_TWEETS[(i + seed) % len(EC_TWEETS)]]
        rows.append((f"2018-En-{seed}{i:04d}", " ".join(words), labels))
    return rows


def write_semeval_ec(directory: Path, sizes=(60, 30, 24)) -> Path:
    """The three release files: header, tab-separated, CRLF; the test file withholds labels as NONE."""
    directory.mkdir(parents=True, exist_ok=True)
    for seed, (split, size) in enumerate(zip(("train", "dev", "test"), sizes)):
        lines = ["\t".join(SEMEVAL_EC_COLUMNS)]
        for tweet_id, text, labels in semeval_ec_rows(size, seed):
            values = ["NONE"] * len(labels) if split == "test" else [str(v) for v in labels]
            lines.append("\t".join([tweet_id, text, *values]))
        (directory / f"2018-E-c-En-{split}.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return directory


def write_emotion6(directory: Path, sizes=(60, 30, 30)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for seed, (filename, size) in enumerate(zip(("train.txt", "val.txt", "test.txt"), sizes)):
        rng = np.random.default_rng(seed)
        lines = []
        for i in range(size):
            label = EMOTION6_LABELS[i % len(EMOTION6_LABELS)]
            words = [f"cue{label}", *rng.choice(EMOTION6_WORDS, size=rng.integers(2, 6))]
            rng.shuffle(words)
            lines.append(f"{' '.join(words)};{label}")
        (directory / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def test_semeval_ec_reads_crlf_quotes_emoji_and_multi_label_rows(tmp_path):
    directory = write_semeval_ec(tmp_path / "ec")
    data = load_dataset("semeval_ec", directory)
    assert data.multi_label and data.label_names == list(SEMEVAL_EC_LABELS)
    assert (len(data.train), len(data.validation), len(data.test)) == (60, 30, 24)
    expected = semeval_ec_rows(60, 0)
    assert data.train.ids == [row[0] for row in expected]
    assert data.train.texts == [row[1] for row in expected]  # quotes kept verbatim, no '\r' left over
    assert np.array_equal(data.train.labels, np.array([row[2] for row in expected], dtype=np.float32))
    assert (data.train.labels.sum(axis=1) == 0).any() and (data.train.labels.sum(axis=1) > 1).any()
    assert any(text.startswith('"') for text in data.train.texts) and any("😂" in t for t in data.train.texts)
    assert data.test.labels is None and data.test.ids == [row[0] for row in semeval_ec_rows(24, 2)]


def test_semeval_ec_gold_test_file_with_labels_is_read_as_labelled(tmp_path):
    directory = write_semeval_ec(tmp_path / "ec")
    (directory / "2018-E-c-En-test.txt").write_bytes((directory / "2018-E-c-En-dev.txt").read_bytes())
    data = load_dataset("semeval_ec", directory)
    assert np.array_equal(data.test.labels, data.validation.labels)


def test_emotion6_reads_text_semicolon_label(tmp_path):
    data = load_dataset("emotion6", write_emotion6(tmp_path / "e6"))
    assert not data.multi_label and data.label_names == list(EMOTION6_LABELS)
    assert data.train.labels.dtype == np.int64 and data.train.labels[:6].tolist() == [0, 1, 2, 3, 4, 5]
    first = (tmp_path / "e6" / "train.txt").read_text().splitlines()[0]
    assert data.train.texts[0] == first.rpartition(";")[0]


@pytest.mark.parametrize("rule", ["single", "rarest"])
def test_single_label_rule_keeps_the_counts_it_reports(tmp_path, rule):
    directory = write_goemotions(tmp_path / "go")
    multi = load_dataset("goemotions", directory)
    data = load_dataset("goemotions_single", directory, label_rule=rule)
    assert not data.multi_label and data.num_labels == 28
    for name in ("train", "validation", "test"):
        source, split = getattr(multi, name), getattr(data, name)
        several = int((source.labels.sum(axis=1) > 1).sum())
        expected_rows = len(source) - several if rule == "single" else len(source)
        assert several > 0 and len(split) == expected_rows
        assert f"{name} {expected_rows:,} of {len(source):,} ({several:,} with several labels)" in data.note
        for tweet_id, label in zip(split.ids, split.labels):  # the chosen class is one of the row's labels
            assert source.labels[source.ids.index(tweet_id), label] == 1
    if rule == "rarest":  # a multi-label row takes the label with the fewest train rows
        counts = multi.train.labels.sum(axis=0)
        row = int(np.flatnonzero(multi.train.labels.sum(axis=1) > 1)[0])
        labels = np.flatnonzero(multi.train.labels[row])
        assert data.train.labels[row] == labels[np.argmin(counts[labels])]


def test_registry_entries_match_what_their_loaders_return(tmp_path):
    directories = {"goemotions": write_goemotions(tmp_path / "go"), "semeval_ec": write_semeval_ec(tmp_path / "ec"),
                   "emotion6": write_emotion6(tmp_path / "e6")}
    directories["goemotions_single"] = directories["goemotions"]
    for name, spec in DATASETS.items():
        data = load_dataset(name, directories[name])
        assert tuple(data.label_names) == spec.label_names and data.multi_label == spec.multi_label
        assert all((directories[name] / filename).is_file() for filename in spec.local_files)


def test_tweet_normalisation():
    assert normalise_tweet("@Max_Kellerman look https://t.co/x1 #LoveWins 😂") == \
        "@user look http Love Wins face with tears of joy"
    assert normalise_tweet("fish &amp; chips   #happy") == "fish & chips happy"


def test_prediction_file_round_trips_through_the_ec_reader(tmp_path):
    test = read_semeval_ec(write_semeval_ec(tmp_path / "ec") / "2018-E-c-En-test.txt", labelled=False)
    predictions = np.random.default_rng(0).random((len(test), 11)) < 0.3
    path = write_ec_file(tmp_path / "predictions" / "model.txt", test, predictions)
    assert path.read_bytes().startswith(("\t".join(SEMEVAL_EC_COLUMNS) + "\r\n").encode())
    back = read_semeval_ec(path, labelled=True)
    assert back.ids == test.ids and back.texts == test.texts
    assert np.array_equal(back.labels, predictions.astype(np.float32))


# --- Bad input ---------------------------------------------------------------------------------------------

def replace_line(path: Path, line: int, new: str | bytes) -> None:
    """Swap one line of a file, keeping its line ends (CRLF stays CRLF)."""
    raw = path.read_bytes()
    end = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.split(end)
    lines[line - 1] = new if isinstance(new, bytes) else new.encode("utf-8")
    path.write_bytes(end.join(lines))


TRAIN, DEV, TEST = "2018-E-c-En-train.txt", "2018-E-c-En-dev.txt", "2018-E-c-En-test.txt"
HEADER = "\t".join(SEMEVAL_EC_COLUMNS)
ZEROS = "\t".join(["0"] * 11)
EC_CASES = [
    (TRAIN, 1, HEADER.replace("\ttrust", ""), f"{TRAIN}:1: header: missing column(s) trust"),
    (DEV, 1, HEADER.replace("anger", "angry"), f"{DEV}:1: header: 'angry' is not an E-c column"),
    (TRAIN, 4, "2018-En-x\tjust a tweet\t0\t1", f"{TRAIN}:4: columns: expected 13 tab-separated fields"),
    (TRAIN, 5, f"2018-En-00002\tsame id as line 4\t{ZEROS}", f"{TRAIN}:5: ID: duplicate '2018-En-00002' "
                                                               f"(first on line 4)"),
    (TRAIN, 3, "2018-En-y\ta tweet\t" + "\t".join(["NONE"] * 11), f"{TRAIN}:3: anger: NONE in a labelled file"),
    (DEV, 6, f"2018-En-z\ta tweet\t{ZEROS[:-1]}2", f"{DEV}:6: trust: '2' is not 0 or 1"),
    (TEST, 3, f"2018-En-w\ta tweet\t{ZEROS}", f"{TEST}:3: anger: labels are NONE on some rows and 0/1"),
    (TEST, 2, "2018-En-u\ta tweet\tNONE\t" + ZEROS[2:], f"{TEST}:2: anger: a row mixes NONE with 0/1"),
    (TRAIN, 7, b"2018-En-v\tbad \xff byte\t" + ZEROS.encode(), f"{TRAIN}:7: text: not valid UTF-8 (byte 0xff)"),
]


@pytest.mark.parametrize("filename, line, content, expected", EC_CASES)
def test_semeval_ec_bad_input_names_file_line_and_field(tmp_path, filename, line, content, expected):
    directory = write_semeval_ec(tmp_path / "ec")
    replace_line(directory / filename, line, content)
    with pytest.raises(DataError) as error:
        load_dataset("semeval_ec", directory)
    assert str(error.value).startswith(f"{directory / expected.split(':')[0]}:{expected.split(':', 1)[1]}")


EMOTION6_CASES = [
    ("train.txt", 3, "i feel fine but there is no separator", "train.txt:3: columns: expected text;label, "
                                                               "found no ';'"),
    ("val.txt", 2, "i feel great;happy", "val.txt:2: label: 'happy' is not one of sadness, joy"),
    ("test.txt", 4, ";joy", "test.txt:4: text: empty"),
    ("train.txt", 5, b"i feel \xc3\x28 odd;joy", "train.txt:5: text: not valid UTF-8 (byte 0xc3)"),
]


@pytest.mark.parametrize("filename, line, content, expected", EMOTION6_CASES)
def test_emotion6_bad_input_names_file_line_and_field(tmp_path, filename, line, content, expected):
    directory = write_emotion6(tmp_path / "e6")
    replace_line(directory / filename, line, content)
    with pytest.raises(DataError) as error:
        load_dataset("emotion6", directory)
    assert str(error.value).startswith(f"{directory / expected.split(':')[0]}:{expected.split(':', 1)[1]}")


def test_missing_file_is_named(tmp_path):
    directory = write_emotion6(tmp_path / "e6")
    (directory / "val.txt").unlink()
    with pytest.raises(DataError, match=r"val\.txt: file not found"):
        load_dataset("emotion6", directory)


def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweeps" / script), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("script, writer, case", [
    ("semeval_ec.py", write_semeval_ec, EC_CASES[3]),  # duplicate ID
    ("semeval_ec.py", write_semeval_ec, EC_CASES[4]),  # NONE in the training file
    ("emotion6.py", write_emotion6, EMOTION6_CASES[0]),  # line without ';'
    ("emotion6.py", write_emotion6, EMOTION6_CASES[3]),  # non-UTF-8
])
def test_sweep_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_bert, script, writer, case):
    filename, line, content, expected = case
    directory = writer(tmp_path / "data")
    replace_line(directory / filename, line, content)
    storage = tmp_path / "results"
    result = run_cli(script, "--data-dir", str(directory), "--models", str(tiny_bert), "--budget", "smoke",
                     "--storage", str(storage), "--name", "bad", "--no-dashboard")
    assert result.returncode == 2 and not storage.exists()
    # One error line, last on stderr. (Other lines there come from library imports: torchao 0.18 prints
    # "Failed to load ..." when transformers sizes a local model directory.)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {directory / filename}:{expected.split(':', 1)[1]}")
    assert result.stderr.strip().splitlines()[-1] == line


def test_unknown_label_rule_is_a_one_line_flag_error(tmp_path, tiny_bert):
    result = run_cli("goemotions_simplified.py", "--data-dir", str(write_goemotions(tmp_path / "go")),
                     "--models", str(tiny_bert), "--label-rule", "first", "--storage", str(tmp_path / "r"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1  # argparse: before imports
    assert "--label-rule: invalid choice: 'first'" in result.stderr and not (tmp_path / "r").exists()
