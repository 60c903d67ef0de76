"""Dataset files the tests write in the exact release formats (../shared/data/README.md), with their quirks:
GoEmotions TSV (quotes, emoji, [NAME] masks, multi-label ids), SemEval-2018 E-c (header, CRLF, quotes in tweets,
NONE for the withheld test labels) and dair-ai emotion (`text;label`). Every label has its own cue word, so a
few epochs of a tiny model move validation F1."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data import EMOTION6_LABELS, SEMEVAL_EC_COLUMNS, SEMEVAL_EC_LABELS


GOEMOTIONS_LABELS = ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
                     "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
                     "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
                     "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral"]
FILLER = ["the", "a", "this", "is", "so", "really", "[NAME]", "today", "\"quoted\"", "😂", "lol", "it"]


def goemotions_rows(n: int, seed: int) -> list[tuple[str, list[int], str]]:
    """Rows of (text, label ids, comment id); labels 0..5 and 27 carry cue words, a fifth are multi-label."""
    rng = np.random.default_rng(seed)
    frequent = [0, 1, 2, 3, 4, 5, 27]
    rows = []
    for i in range(n):
        labels = sorted(set(rng.choice(frequent, size=1 if rng.random() < 0.8 else 2, replace=False).tolist()))
        words = [f"cue{label}" for label in labels] + list(rng.choice(FILLER, size=rng.integers(2, 8)))
        rng.shuffle(words)
        rows.append((" ".join(words), labels, f"e{seed}x{i}"))
    return rows


def write_goemotions(directory: Path, sizes=(96, 48, 48)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS))
    for seed, (filename, size) in enumerate(zip(("train.tsv", "dev.tsv", "test.tsv"), sizes)):
        lines = [f"{text}\t{','.join(map(str, labels))}\t{cid}" for text, labels, cid in goemotions_rows(size, seed)]
        (directory / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


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


def replace_line(path: Path, line: int, new: str | bytes) -> None:
    """Swap one line of a file, keeping its line ends (CRLF stays CRLF)."""
    raw = path.read_bytes()
    end = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.split(end)
    lines[line - 1] = new if isinstance(new, bytes) else new.encode("utf-8")
    path.write_bytes(end.join(lines))


# Malformed lines for the E-c and emotion6 readers: (file, line, new content, the one-line error expected)
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
EMOTION6_CASES = [
    ("train.txt", 3, "i feel fine but there is no separator", "train.txt:3: columns: expected text;label, "
                                                               "found no ';'"),
    ("val.txt", 2, "i feel great;happy", "val.txt:2: label: 'happy' is not one of sadness, joy"),
    ("test.txt", 4, ";joy", "test.txt:4: text: empty"),
    ("train.txt", 5, b"i feel \xc3\x28 odd;joy", "train.txt:5: text: not valid UTF-8 (byte 0xc3)"),
]
