"""The analysis commands under generated damage (Hypothesis, derandomized, each command's main() run in-process):
analysis.predict on a tiny export dir (tests/helpers/exports.py) with one thing changed (a decision.json field or
the whole file; either member's weights cut, padded, emptied or deleted; either member's config.json labels, task,
positions or shape; the tokenizer), analysis.export on a tiny finished experiment with its checkpoint damaged the
same way, and the flags of predict, export and report (a dir where a file is expected and the reverse, a path under
a file or a missing dir, a device, formats, text columns, models, resample counts).

The property: each run either
- behaves exactly like the clean input: the same output, byte for byte (export: the same decision rule, labels and
  weights), or, for a change the rule allows (a threshold set to another number in [0, 1]), exactly as that change
  says (the clean probabilities, labels decided at the new thresholds); or
- ends with exit code 2 and one line on stderr naming the file, field or flag, nothing on stdout and nothing written:
  no output file, no export dir (nor a parent made for it), no report dir.
Each mutation says which outcome is right. Left out, as no check can tell them from a good input: weight bytes
altered inside a whole file, a change the rule allows that changes the texts or the members (the tweet normaliser, a
max_length that truncates these texts, one seed member dropped), and a valid resample count over 30 (it only runs
longer).

Derandomized with bounded examples, so CI sees the same cases every run (~8-12 s of calls on 2 busy cores, plus ~5 s
to build the tiny model that the other analysis tests share).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from analysis import export, predict, report
from analysis.decision import FORMAT
from tests.helpers.exports import LABELS, TEXTS

FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SAME, ERROR, THRESHOLDS = "same", "error", "thresholds"
MEMBERS = [".", "members/seed-1"]
CHECKPOINT = "tiny_00000/checkpoint_000000"
SCALARS = st.none() | st.booleans() | st.integers(-5, 500) | st.floats() | st.text(max_size=6)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)


@dataclass(frozen=True)
class Mutation:
    """One change to a copy of a clean dir, and the outcome that is right for it (SAME, ERROR or THRESHOLDS)."""
    name: str
    apply: Callable[[Path], None]
    outcome: str


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run(main, *argv) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit:  # argparse
            code = exit.code
    return Run(code, out.getvalue(), err.getvalue())


def assert_refused(result: Run, *unwritten: Path) -> None:
    assert result.code == 2, result
    assert result.out == "", result
    [line] = result.err.splitlines()
    assert "error: " in line, line
    for path in unwritten:
        assert not path.exists(), path


# --- mutations of JSON files and weights ----------------------------------------------------------------------------


def edit_json(file: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        data = json.loads((root / file).read_text())
        change(data)
        (root / file).write_text(json.dumps(data))
    return apply


def set_key(file: str, keys: tuple, value, outcome: str) -> Mutation:
    def change(data):
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return Mutation(f"{file}: {'.'.join(map(str, keys))} = {value!r}", edit_json(file, change), outcome)


def delete_key(file: str, keys: tuple, outcome: str) -> Mutation:
    def change(data):
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return Mutation(f"{file}: del {'.'.join(map(str, keys))}", edit_json(file, change), outcome)


def cut(file: str, at: float | int, json_file: bool) -> Mutation:
    """The file cut at byte `at` (a fraction: of its size), always before its end (a JSON file's: before its last
    character that is not whitespace, the rest being the same JSON)."""
    def apply(root: Path) -> None:
        data = (root / file).read_bytes()
        size = len(data.rstrip()) if json_file else len(data)
        (root / file).write_bytes(data[:int(at * size) if isinstance(at, float) else min(at, size - 1)])
    return Mutation(f"{file}: cut at {at!r}", apply, ERROR)


def file_mutations(file: str, json_file: bool) -> st.SearchStrategy[Mutation]:
    """Deleted, cut short, padded, emptied or replaced by other bytes: never the file it was, but for a JSON file
    padded with whitespace only (the same JSON)."""
    return st.one_of(
        st.just(Mutation(f"{file}: deleted", lambda root: (root / file).unlink(), ERROR)),
        st.one_of(st.integers(0, 300), st.floats(0, 1, exclude_max=True)).map(lambda at: cut(file, at, json_file)),
        st.binary(min_size=1, max_size=16).map(lambda pad: Mutation(
            f"{file}: + {pad!r}", lambda root: (root / file).write_bytes((root / file).read_bytes() + pad),
            SAME if json_file and not pad.strip(b" \t\r\n") else ERROR)),
        st.binary(max_size=40).filter(lambda data: not data.strip().startswith(b"{")).map(lambda data: Mutation(
            f"{file}: = {data!r}", lambda root: (root / file).write_bytes(data), ERROR)),
    )


# --- analysis.predict on a damaged export ---------------------------------------------------------------------------


def threshold_outcome(value) -> str:
    return THRESHOLDS if not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1 else ERROR


THRESHOLD_VALUES = st.one_of(st.floats(), st.integers(-2, 2), st.sampled_from(
    [0, 1, 0.0, 1.0, 1e-9, 1 - 1e-9, -0.0, math.nan, math.inf, True, False, None, "0.5", [0.5]]))
UNUSED = ("metric", "threshold_method", "global_threshold", "member_thresholds", "provenance", "variant")
REQUIRED = ("format", "task", "labels", "thresholds", "members", "text")
MEMBER_LISTS = [([], ERROR), (["members/seed-1", "."], SAME), ([".", "members/seed-1/"], SAME),
                ([".", "members/seed-1", "."], ERROR), ([".", "./"], ERROR), ([".", "../export"], ERROR),
                ([".", "/tmp"], ERROR), ([".", "members/seed-9"], ERROR), ([".", "members"], ERROR), ([".", 1], ERROR),
                (".", ERROR), (None, ERROR), ([".", ""], ERROR)]

WEIGHT_LISTS = [([1, 1], SAME), ([2, 2], SAME), ([0, 1], ERROR), ([1], ERROR), ([1, 1.5], ERROR), ([True, 1], ERROR),
                ([1, -1], ERROR), ("1", ERROR), (None, ERROR)]  # equal weights average as none do, bit for bit


def relabelled(labels: list) -> st.SearchStrategy[list]:
    """The label list changed: one renamed, dropped, moved or doubled, or something else entirely."""
    return st.one_of(
        st.tuples(st.integers(0, 2), st.text(max_size=8)).map(lambda iv: labels[:iv[0]] + [iv[1]] + labels[iv[0] + 1:]),
        st.integers(0, 2).map(lambda i: labels[:i] + labels[i + 1:]),
        st.sampled_from([list(order) for order in permutations(labels)][1:]), st.just(labels + labels[:1]), JSON_VALUES,
    ).filter(lambda value: value != labels)


DECISION = "decision.json"
DECISION_MUTATIONS = st.one_of(
    st.tuples(st.integers(0, 2), THRESHOLD_VALUES).map(
        lambda iv: set_key(DECISION, ("thresholds", iv[0]), iv[1], threshold_outcome(iv[1]))),
    st.one_of(st.lists(st.floats(0, 1), min_size=3, max_size=3), JSON_VALUES).map(lambda value: set_key(
        DECISION, ("thresholds",), value, THRESHOLDS if isinstance(value, list) and len(value) == 3
        and all(threshold_outcome(v) == THRESHOLDS for v in value) else ERROR)),
    relabelled(LABELS).map(lambda value: set_key(DECISION, ("labels",), value, ERROR)),
    st.one_of(st.text(max_size=12), JSON_VALUES).filter(lambda v: v != "multi_label").map(
        lambda value: set_key(DECISION, ("task",), value, ERROR)),
    st.one_of(st.text(max_size=12), JSON_VALUES).filter(lambda v: v != FORMAT).map(
        lambda value: set_key(DECISION, ("format",), value, ERROR)),
    st.sampled_from(MEMBER_LISTS).map(lambda case: set_key(DECISION, ("members",), *case)),
    st.one_of(st.text(max_size=8), JSON_VALUES).filter(lambda v: v not in ("none", "tweet")).map(
        lambda value: set_key(DECISION, ("text", "preprocess"), value, ERROR)),
    st.just(set_key(DECISION, ("text", "preprocess"), "none", SAME)),
    st.integers(16, 128).map(lambda n: set_key(DECISION, ("text", "max_length"), n, SAME)),
    st.one_of(st.integers(max_value=0), st.integers(min_value=129), st.floats(), st.booleans(), st.text(max_size=4),
              st.none()).map(lambda value: set_key(DECISION, ("text", "max_length"), value, ERROR)),
    (SCALARS | st.lists(SCALARS, max_size=3)).map(lambda value: set_key(DECISION, ("text",), value, ERROR)),
    st.sampled_from([("encoder", SAME), ("decoder_adapter", ERROR), ("decoder", ERROR), (None, ERROR)]).map(
        lambda case: set_key(DECISION, ("kind",), *case)),
    st.sampled_from(("kind",) + UNUSED).map(lambda key: delete_key(DECISION, (key,), SAME)),
    st.tuples(st.sampled_from(UNUSED), JSON_VALUES).map(lambda kv: set_key(DECISION, (kv[0],), kv[1], SAME)),
    st.sampled_from(WEIGHT_LISTS).map(lambda case: set_key(DECISION, ("weights",), *case)),
    st.tuples(st.text(min_size=1, max_size=8).filter(lambda k: k not in REQUIRED + UNUSED + ("kind", "base",
                                                                                               "weights")),
              JSON_VALUES).map(lambda kv: set_key(DECISION, (kv[0],), kv[1], SAME)),
    st.sampled_from(REQUIRED).map(lambda key: delete_key(DECISION, (key,), ERROR)),
    st.sampled_from([{"indent": None}, {"indent": 4}, {"sort_keys": True}]).map(lambda style: Mutation(
        f"{DECISION}: rewritten with {style}", lambda root: (root / DECISION).write_text(
            json.dumps(json.loads((root / DECISION).read_text()), **style)), SAME)),
    file_mutations(DECISION, json_file=True),
)


def config_mutations(member: str, positions: int = 128) -> st.SearchStrategy[Mutation]:
    """A model dir's config.json: its labels, task, positions and sizes changed, or the file damaged."""
    config = f"{member}/config.json"
    id2label = {str(i): name for i, name in enumerate(LABELS)}
    return st.one_of(
        relabelled(LABELS).map(lambda names: set_key(config, ("id2label",), dict(enumerate(names)) if isinstance(
            names, list) else names, ERROR)),
        st.just(set_key(config, ("id2label", "3"), "fear", ERROR)),
        st.just(delete_key(config, ("id2label",), ERROR)),
        st.sampled_from(list(id2label)).map(lambda key: delete_key(config, ("id2label", key), ERROR)),
        st.integers(-1, 6).map(lambda n: set_key(config, ("num_labels",), n, SAME if n == 3 else ERROR)),
        st.sampled_from([("multi_label_classification", SAME), ("single_label_classification", ERROR),
                         ("regression", ERROR), (None, SAME)]).map(lambda case: set_key(config, ("problem_type",),
                                                                                        *case)),
        st.just(delete_key(config, ("problem_type",), SAME)),
        st.sampled_from(list(permutations(range(3)))).map(
            lambda ids: set_key(config, ("label2id",), dict(zip(LABELS, ids)), SAME)),
        st.one_of(st.integers(-2, 300), st.text(max_size=3)).map(lambda n: set_key(
            config, ("max_position_embeddings",), n, SAME if n == positions else ERROR)),
        st.sampled_from([("hidden_size", 32), ("vocab_size", 5), ("num_hidden_layers", 1), ("num_hidden_layers", 3),
                         ("num_attention_heads", 3), ("model_type", "nope")]).map(
            lambda kv: set_key(config, (kv[0],), kv[1], ERROR)),
        file_mutations(config, json_file=True),
    )


EXPORT_MUTATIONS = st.one_of(
    DECISION_MUTATIONS,
    st.sampled_from(MEMBERS).flatmap(lambda member: file_mutations(f"{member}/model.safetensors", json_file=False)),
    st.sampled_from(MEMBERS).flatmap(config_mutations),
    st.sampled_from(["tokenizer.json", "tokenizer_config.json"]).flatmap(lambda f: file_mutations(f, json_file=True)),
)


@dataclass(frozen=True)
class Clean:
    """The clean export's output (--probabilities, JSONL) and its probabilities as predict computed them."""
    output: bytes
    probs: np.ndarray


@pytest.fixture(scope="module")
def clean_run(clean_export, tmp_path_factory) -> Clean:
    tmp = tmp_path_factory.mktemp("clean-run")
    (tmp / "in.txt").write_text("\n".join(TEXTS) + "\n")
    result = run(predict.main, clean_export, "--input", tmp / "in.txt", "--output", tmp / "out.jsonl",
                 "--probabilities")
    assert result.code == 0, result.err
    _, _, probs = predict.predict(clean_export, TEXTS)
    return Clean((tmp / "out.jsonl").read_bytes(), probs)


def thresholds_of(export_dir: Path) -> np.ndarray:
    return np.array(json.loads((export_dir / DECISION).read_text())["thresholds"], dtype=np.float32)


@settings(FUZZ, max_examples=80)
@given(mutation=EXPORT_MUTATIONS)
def test_predict_on_a_damaged_export(clean_export, clean_run, mutation):
    note(mutation.name)
    event(f"predict: {mutation.outcome}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_dir = Path(shutil.copytree(clean_export, tmp / "export"))
        mutation.apply(export_dir)
        (tmp / "in.txt").write_text("\n".join(TEXTS) + "\n")
        (tmp / "out").mkdir()
        output = tmp / "out" / "out.jsonl"
        result = run(predict.main, export_dir, "--input", tmp / "in.txt", "--output", output, "--probabilities")
        if mutation.outcome == ERROR:
            assert_refused(result, output)
            assert list((tmp / "out").iterdir()) == []
            return
        assert result.code == 0, result.err
        if mutation.outcome == SAME:
            assert output.read_bytes() == clean_run.output
            return
        decided = clean_run.probs >= thresholds_of(export_dir)
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        clean_rows = [json.loads(line) for line in clean_run.output.decode().splitlines()]
        assert [row["probabilities"] for row in rows] == [row["probabilities"] for row in clean_rows]
        assert [row["labels"] for row in rows] == [[LABELS[j] for j in np.flatnonzero(row)] for row in decided]


# --- analysis.export on a damaged checkpoint ------------------------------------------------------------------------


def without_label_names(root: Path) -> None:
    path = root / CHECKPOINT / "predictions.npz"
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files if key != "label_names"}
    np.savez(path, **arrays)


CHECKPOINT_MUTATIONS = st.one_of(
    file_mutations(f"{CHECKPOINT}/model/model.safetensors", json_file=False),
    config_mutations(f"{CHECKPOINT}/model"),
    st.just(Mutation("predictions.npz: no label_names", without_label_names, ERROR)),
    st.just(Mutation("a stray file in the checkpoint", lambda root: (root / CHECKPOINT / "notes.txt").write_text("x"),
                     SAME)),
)


def exported(out: Path) -> tuple:
    """What an export must reproduce: its decision rule (less provenance), weights and label names."""
    rule = json.loads((out / DECISION).read_text())
    rule.pop("provenance")
    return rule, (out / "model.safetensors").read_bytes(), json.loads((out / "config.json").read_text())["id2label"]


@pytest.fixture(scope="module")
def clean_exported(clean_experiment, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("clean-exported") / "export"
    experiment = shutil.copytree(clean_experiment, out.parent / "experiment")
    assert run(export.main, experiment, "--out", out).code == 0
    return exported(out)


@settings(FUZZ, max_examples=40)
@given(mutation=CHECKPOINT_MUTATIONS)
def test_export_of_a_damaged_checkpoint(clean_experiment, clean_exported, mutation):
    note(mutation.name)
    event(f"export: {mutation.outcome}")
    with tempfile.TemporaryDirectory() as tmp:
        experiment = Path(shutil.copytree(clean_experiment, Path(tmp) / "experiment"))
        mutation.apply(experiment)
        out = Path(tmp) / "new" / "exports" / "tiny"
        result = run(export.main, experiment, "--out", out)
        if mutation.outcome == ERROR:
            assert_refused(result, Path(tmp) / "new")
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["experiment"]
        else:
            assert result.code == 0, result.err
            assert exported(out) == clean_exported


# --- the commands' flags --------------------------------------------------------------------------------------------


def write_input(path: Path, fmt: str) -> None:
    """TEXTS in `fmt` as users hand them over: text lines, a CSV with a "Text" column, an E-c TSV, JSONL."""
    if fmt == "text":
        path.write_text("\n".join(TEXTS) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(TEXTS)))
    else:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            writer.writerows([["ID", "Text" if fmt == "csv" else "Tweet", "anger"],
                              *([f"2018-En-{i}", text, "0"] for i, text in enumerate(TEXTS))])


def predicted_labels(output: str | None, stdout: str) -> list[list[str]]:
    """The labels per text of predict's output, whichever format it wrote (JSONL on stdout, JSONL, CSV or TSV)."""
    if output in (None, "-"):
        return [json.loads(line)["labels"] for line in stdout.splitlines()]
    path = Path(output)
    if path.suffix not in (".csv", ".tsv"):
        return [json.loads(line)["labels"] for line in path.read_text().splitlines()]
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
    return [row["labels"].split(";") if row["labels"] else [] for row in rows]


OUTPUT_KINDS = ("stdout", "dash", "new.jsonl", "new.csv", "new.tsv", "new.out", "existing file", "a dir",
                "missing dir", "under a file", "a device")


def output_path(tmp: Path, kind: str) -> tuple[str | None, bool]:
    """(the --output value, whether predict can write it), the paths made under `tmp`."""
    (tmp / "file").write_text("a file")
    (tmp / "old.jsonl").write_text("old")
    return {"stdout": (None, True), "dash": ("-", True), "existing file": (str(tmp / "old.jsonl"), True),
            "a dir": (str(tmp), False), "missing dir": (str(tmp / "nowhere" / "out.jsonl"), False),
            "under a file": (str(tmp / "file" / "out.jsonl"), False), "a device": ("/dev/null", False),
            }.get(kind, (str(tmp / kind), True))


@settings(FUZZ, max_examples=80)
@given(fmt=st.sampled_from(["text", "csv", "tsv", "jsonl"]), misnamed=st.booleans(),
       given_format=st.sampled_from([None, "same", "xml", ""]),
       column=st.sampled_from([None, "right", "Texts", ""]), output_kind=st.sampled_from(OUTPUT_KINDS),
       input_kind=st.sampled_from(["file", "missing", "a dir"]))
def test_predict_flags(clean_export, clean_run, fmt, misnamed, given_format, column, output_kind, input_kind):
    """The input is named .txt whatever it holds when `misnamed` (E-c's files are), and given as its real format,
    another, or none; plain text with --text-column is refused."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / ("input.txt" if misnamed or fmt == "text" else f"input.{fmt}")
        write_input(source, fmt)
        source = {"file": source, "missing": tmp / "missing.txt", "a dir": tmp}[input_kind]
        output, writable = output_path(tmp, output_kind)
        flag_format = {"same": fmt}.get(given_format, given_format)
        read_as = flag_format if flag_format is not None else predict.input_format(str(source), None)
        column_name = {"csv": "Text", "tsv": "Tweet", "jsonl": "text"}.get(fmt) if column == "right" else column
        argv = [clean_export, "--input", source] + (["--format", flag_format] if flag_format is not None else []) \
            + (["--text-column", column_name] if column_name is not None else []) \
            + (["--output", output] if output is not None else [])
        note(f"argv: {argv}")
        if read_as == "text" != fmt and column_name is None and input_kind == "file" and writable:
            return  # another format's file read as plain text, as asked: each line a text (not this property)
        expected = (read_as in predict.FORMATS and writable and input_kind == "file" and read_as == fmt
                    and column in (None, "right") and not (read_as == "text" and column_name is not None))
        event(f"predict flags: {'runs' if expected else 'refused'}")
        before = sorted(p.name for p in tmp.iterdir())
        result = run(predict.main, *argv)
        if not expected:
            assert_refused(result)
            assert sorted(p.name for p in tmp.iterdir()) == before
            assert (tmp / "old.jsonl").read_text() == "old"
            return
        assert result.code == 0, result.err
        clean = [json.loads(line)["labels"] for line in clean_run.output.decode().splitlines()]
        assert predicted_labels(output, result.out) == clean


@settings(FUZZ, max_examples=25)
@given(out_kind=st.sampled_from(["new", "default", "an export", "a foreign dir", "a file", "under a file", "empty"]),
       model=st.sampled_from([None, "tiny", "nope", ""]), single=st.booleans())
def test_export_flags(clean_experiment, clean_exported, out_kind, model, single):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        experiment = Path(shutil.copytree(clean_experiment, tmp / "experiment"))
        (tmp / "file").write_text("a file")
        (tmp / "foreign").mkdir()
        (tmp / "an-export").mkdir()
        (tmp / "an-export" / DECISION).write_text("{}")
        out = {"new": tmp / "a" / "b", "default": None, "an export": tmp / "an-export",
               "a foreign dir": tmp / "foreign", "a file": tmp / "file", "under a file": tmp / "file" / "export",
               "empty": ""}[out_kind]
        argv = [experiment] + (["--out", out] if out is not None else []) + (["--model", model] if model is not None
                                                                           else []) + (["--single"] if single else [])
        note(f"argv: {argv}")
        expected = out_kind in ("new", "default", "an export") and model in (None, "tiny")
        event(f"export flags: {'runs' if expected else 'refused'}")
        before = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
        result = run(export.main, *argv)
        if not expected:
            assert_refused(result)
            assert sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) == before
            return
        assert result.code == 0, result.err
        written = out or experiment / "export" / ("tiny-single" if single else "tiny")
        assert exported(written) == clean_exported


RESAMPLES = ["nan", "inf", "-1", "0", "-0", "1", "2", "30", "1.5", "1e3", "", " ", " 3 ", "0x10", "١", "½", "none",
             "2147483648", "-2147483649", "9" * 400, "1\n2"]


def count_allowed(text: str) -> bool:
    try:
        return 1 <= int(text) <= 2 ** 31 - 1
    except ValueError:
        return False


@settings(FUZZ, max_examples=15)
@given(resamples=st.one_of(st.sampled_from(RESAMPLES), st.integers(-10 ** 12, 30).map(str)),
       out_kind=st.sampled_from(["new", "an existing dir", "a file", "under a file"]))
def test_report_flags(clean_predictions, resamples, out_kind):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        experiment = shutil.copytree(clean_predictions, tmp / "experiment")
        (tmp / "file").write_text("a file")
        (tmp / "existing").mkdir()
        out = {"new": tmp / "a" / "report", "an existing dir": tmp / "existing", "a file": tmp / "file",
               "under a file": tmp / "file" / "report"}[out_kind]
        expected = count_allowed(resamples) and out_kind in ("new", "an existing dir")
        event(f"report flags: {'runs' if expected else 'refused'}")
        before = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
        result = run(report.main, experiment, "--out", out, f"--resamples={resamples}")
        if not expected:
            assert_refused(result)
            assert sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) == before
            return
        assert result.code == 0, result.err
        assert f"{int(resamples)} resamples of the test rows" in (out / "report.md").read_text()
