"""trainables/data.py's readers: GoEmotions (multi-hot labels, seeded subsampling), E-c, dair-ai emotion and
single-label GoEmotions from release-format fixtures (CRLF, quotes, emoji, multi-label rows), the single-label
rules, tweet normalisation, and bad input in every reader as one `file:line: field: problem` error."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.data import (EC_CASES, EMOTION6_CASES, replace_line, semeval_ec_rows, write_emotion6,
                                write_goemotions, write_semeval_ec)
from trainables.data import DATASETS, EMOTION6_LABELS, SEMEVAL_EC_LABELS, DataError, load_dataset
from trainables.tweets import normalise_tweet


def test_goemotions_loads_multi_hot_labels_with_quotes_emoji_and_masks(goemotions_dir):
    data = load_dataset("goemotions", goemotions_dir)
    assert data.multi_label and data.num_labels == 28 and data.label_names[27] == "neutral"
    assert len(data.train) == 96 and data.train.labels.shape == (96, 28)
    first = (goemotions_dir / "train.tsv").read_text().splitlines()[0].split("\t")
    assert data.train.texts[0] == first[0]
    assert sorted(np.flatnonzero(data.train.labels[0]).tolist()) == sorted(int(i) for i in first[1].split(","))
    assert any(row.sum() > 1 for row in data.train.labels)
    assert any("😂" in text or "[NAME]" in text or '"' in text for text in data.train.texts)


def test_subsample_is_seeded_and_keeps_rows_paired(goemotions_dir):
    data = load_dataset("goemotions", goemotions_dir)
    a = data.subsample(20, 10, None, seed=3)
    b = data.subsample(20, 10, None, seed=3)
    c = data.subsample(20, 10, None, seed=4)
    assert a.train.texts == b.train.texts and a.train.texts != c.train.texts
    assert len(a.train) == 20 and len(a.validation) == 10 and len(a.test) == 48
    for text, labels in zip(a.train.texts, a.train.labels):
        assert np.array_equal(labels, data.train.labels[data.train.texts.index(text)])


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


# --- Bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename, line, content, expected", [
    ("train.tsv", 3, "only text and labels\t1", "train.tsv:3: columns: expected 3"),
    ("dev.tsv", 5, "some text\t28\tid5", "dev.tsv:5: labels: '28' is not a label id in 0..27"),
    ("test.tsv", 2, "some text\t1,x\tid2", "test.tsv:2: labels: 'x'"),
    ("train.tsv", 7, "   \t1\tid7", "train.tsv:7: text: empty"),
])
def test_goemotions_bad_rows_name_file_line_and_field(tmp_path, filename, line, content, expected):
    directory = write_goemotions(tmp_path / "data")
    replace_line(directory / filename, line, content)
    with pytest.raises(DataError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_dataset("goemotions", directory)


def test_goemotions_non_utf8_and_missing_files(tmp_path):
    directory = write_goemotions(tmp_path / "data")
    (directory / "dev.tsv").write_bytes(b"good\t1\tid\nbad \xff byte\t2\tid2\n")
    with pytest.raises(DataError, match=r"dev\.tsv:2: text: not valid UTF-8"):
        load_dataset("goemotions", directory)
    (directory / "test.tsv").unlink()
    (directory / "dev.tsv").write_text("good\t1\tid\n")
    with pytest.raises(DataError, match=r"test\.tsv: file not found"):
        load_dataset("goemotions", directory)
    with pytest.raises(DataError, match="data directory not found"):
        load_dataset("goemotions", tmp_path / "nowhere")


@pytest.mark.parametrize("dataset, writer, filename, line, content, expected",
                         [("semeval_ec", write_semeval_ec, *case) for case in EC_CASES]
                         + [("emotion6", write_emotion6, *case) for case in EMOTION6_CASES])
def test_bad_input_names_file_line_and_field(tmp_path, dataset, writer, filename, line, content, expected):
    directory = writer(tmp_path / dataset)
    replace_line(directory / filename, line, content)
    with pytest.raises(DataError) as error:
        load_dataset(dataset, directory)
    assert str(error.value).startswith(f"{directory / expected.split(':')[0]}:{expected.split(':', 1)[1]}")


def test_missing_file_is_named(tmp_path):
    directory = write_emotion6(tmp_path / "e6")
    (directory / "val.txt").unlink()
    with pytest.raises(DataError, match=r"val\.txt: file not found"):
        load_dataset("emotion6", directory)
