"""GoEmotions release-format loading: multi-hot labels, seeded subsampling, and file:line: field errors."""
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import write_goemotions
from trainables.data import DataError, load_dataset


def test_loads_multi_hot_labels_with_quotes_emoji_and_masks(goemotions_dir):
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


def corrupt(directory: Path, filename: str, line: int, new: str) -> None:
    lines = (directory / filename).read_text().splitlines()
    lines[line - 1] = new
    (directory / filename).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("filename, line, content, expected", [
    ("train.tsv", 3, "only text and labels\t1", "train.tsv:3: columns: expected 3"),
    ("dev.tsv", 5, "some text\t28\tid5", "dev.tsv:5: labels: '28' is not a label id in 0..27"),
    ("test.tsv", 2, "some text\t1,x\tid2", "test.tsv:2: labels: 'x'"),
    ("train.tsv", 7, "   \t1\tid7", "train.tsv:7: text: empty"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, filename, line, content, expected):
    directory = write_goemotions(tmp_path / "data")
    corrupt(directory, filename, line, content)
    with pytest.raises(DataError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_dataset("goemotions", directory)


def test_non_utf8_and_missing_files(tmp_path):
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
