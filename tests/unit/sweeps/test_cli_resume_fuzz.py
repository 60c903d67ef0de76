"""`--resume` under generated damage (Hypothesis, derandomized), on the experiment dir a stopped sweep leaves
(tests/helpers/experiments.py): its sweep.json cut, or a field or saved flag of it replaced by any JSON value or
removed; its journal cut, a line of it broken, dropped, repeated or given another value in a field; the experiment
resumed by another sweep file; flags given beside --resume.

The property: the resume is accepted as the clean one is (its plan prints; --dry-run, so Ray never starts) or
refused with exit code 2, one error line, no traceback and no plan; either way nothing under the storage dir
changes. Where the outcome is known it is checked too: a cut sweep.json, a journal line broken before the last,
another sweep file and a flag a resume cannot change are refused naming the file, line or flag; a journal cut
short (as a killed driver leaves it) and flags that restate the saved values or that a resume may change are
accepted.

`main` runs in this process, about 0.05 s an example (tests/unit/sweeps/test_cli_resume.py has the examples)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from sweeps import emotion6, goemotions_raw, goemotions_simplified, qlora_goemotions, semeval_ec
from sweeps.studies import JOURNAL
from tests.helpers.experiments import stopped_goemotions_raw

FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                 max_size=3), max_leaves=4)
# values another flag takes, or a count at its edges: damage the flag rules let through, for the plan to check
FLAG_LIKE = st.sampled_from([0, 1, 2, -1, 2 ** 31, 0.5, 1e-4, 1e300, "1", "", "smoke", "full", "grid", "gpu", "cpu",
                             "jaccard", "adaptive", "online", "optuna", "distilbert", "30m", [""], ["distilbert"],
                             ["x", "x"]])
VALUES = FLAG_LIKE | JSON
REMOVED = object()
# flag beside --resume -> (value, accepted): a resume applies --verbose, --no-dashboard and --restart-errored (and
# --address, left out: it joins a cluster); any other flag only when it restates the saved value
BESIDE = {
    "--verbose": [(None, True)], "--no-dashboard": [(None, True)], "--restart-errored": [(None, True)],
    "--models": [("{model}", True), ("distilbert", False)], "--data-dir": [("{data}", True), ("{data}/..", False)],
    "--budget": [("smoke", True), ("cpu", False)], "--search": [("random", True), ("grid", False)],
    "--seed": [("0", True), ("7", False)], "--metric": [("macro_f1", True), ("micro_f1", False)],
    "--wandb": [("off", True), ("offline", False)], "--time-budget": [("30m", False)],
    "--max-failures": [("2", True), ("0", False)], "--max-concurrent": [("1", False)],
    "--epochs": [("1", False)], "--device": [("auto", True), ("cpu", False)], "--allocate": [("adaptive", False)],
    "--thresholds": [("exact", True), ("optuna", False)], "--deterministic": [(None, False)],
}
OTHER_SWEEPS = [semeval_ec, goemotions_simplified, emotion6, qlora_goemotions]


@pytest.fixture(scope="module", autouse=True)
def offline():
    """A damaged data_dir or model name must not send the plan to the hub: the fuzz runs offline, as a
    firewalled node does, and RAY_ADDRESS would make `main` join a cluster."""
    import datasets
    import huggingface_hub

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, goemotions_dir, tiny_bert) -> Path:
    return stopped_goemotions_raw(tmp_path_factory.mktemp("stopped"), goemotions_dir, tiny_bert)


def files(root: Path) -> dict:
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(root.rglob("*"))}


def resume(sweep, experiment: Path, extra: list[str]) -> tuple[int, str, str]:
    """`python sweeps/<sweep>.py --resume ... --dry-run EXTRA` in this process: (exit code, stdout, stderr)."""
    argv = ["--resume", "--storage", str(experiment.parent), "--name", experiment.name, "--dry-run", *extra]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = sweep.main(sweep.EXPERIMENT, argv)
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def outcome(sweep, experiment: Path, extra: list[str]) -> str | None:
    """None if the resume was accepted, else its one error line; either way nothing was written."""
    before = files(experiment.parent)
    code, out, err = resume(sweep, experiment, extra)
    note(f"exit {code}\n{err}")
    assert "Traceback" not in err, err
    assert files(experiment.parent) == before, "a resume wrote to the storage dir"
    if code == 0:
        assert out.startswith(f"Sweep {sweep.EXPERIMENT.name}: ") and f"results in {experiment}\n" in out, out
        assert "error:" not in err, err
        event("accepted")
        return None
    assert code == 2 and out == "", (code, out, err)  # refused before its plan printed
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    event(f"refused: {errors[0].removeprefix('error: ').replace(str(experiment), '<exp>')[:50]}")
    return errors[0]


def lines_of(raw: bytes) -> list[bytes]:
    """The journal's lines as Optuna reads them (split at b"\\n" only), each with its line end."""
    return [line + b"\n" for line in raw.split(b"\n")[:-1]]


def replaced(document, path: list, value):
    """`document` (parsed JSON) with the value at `path` replaced by `value`, or removed (REMOVED)."""
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    if value is REMOVED:
        del target[last]
    else:
        target[last] = value
    return document


def damage_sweep_json(saved: Path, data) -> str | None:
    """Damage sweep.json; the start of the refusal it must get, or None if either outcome is right."""
    kind = data.draw(st.sampled_from(["cut", "field", "saved flag"]), label="sweep.json damage")
    raw = saved.read_bytes()
    if kind == "cut":
        saved.write_bytes(raw[:data.draw(st.integers(0, len(raw.rstrip()) - 1), label="cut at")])
        return f"error: {saved}:"
    sweep = json.loads(raw)
    path = [data.draw(st.sampled_from(sorted(sweep)), label="field")] if kind == "field" else [
        "args", data.draw(st.sampled_from(sorted(sweep["args"])), label="flag")]
    value = data.draw(st.just(REMOVED) | VALUES, label="value")
    saved.write_text(json.dumps(replaced(sweep, path, value)))
    return None


def damage_journal(journal: Path, data) -> str | None:
    """Damage the journal; the start of the refusal it must get, "" if it must be accepted, None if either."""
    raw = journal.read_bytes()
    lines = lines_of(raw)
    kind = data.draw(st.sampled_from(["cut", "gone", "broken line", "field", "dropped", "repeated"]),
                     label="journal damage")
    if kind == "gone":  # a sweep killed before its first trial has none; checking it must not make one
        journal.unlink()
        return ""
    if kind == "cut":  # a killed driver leaves the last line half-written
        journal.write_bytes(raw[:data.draw(st.integers(len(lines[0]) - 1, len(raw)), label="cut at")])
        return ""
    if kind == "broken line":  # before the last: Optuna skips a broken last line, which a killed driver may leave
        number = data.draw(st.integers(0, len(lines) - 2), label="line index")
        lines[number] = data.draw(st.binary(max_size=30).filter(lambda b: b"\n" not in b), label="junk") + b"\n"
        journal.write_bytes(b"".join(lines))
        return f"error: {journal}:{number + 1}: "
    number = data.draw(st.integers(0, len(lines) - 1), label="line index")
    if kind == "field":
        operation = json.loads(lines[number])
        key = data.draw(st.sampled_from(sorted(operation)), label="key")
        lines[number] = json.dumps(replaced(operation, [key], data.draw(st.just(REMOVED) | JSON, label="value")))
        lines[number] = lines[number].encode() + b"\n"
    elif kind == "dropped":
        del lines[number]
    else:
        lines.insert(number, lines[number])
    journal.write_bytes(b"".join(lines))
    return None


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_a_damaged_experiment_resumes_as_the_clean_one_or_is_one_line(stopped, data):
    with tempfile.TemporaryDirectory() as root:
        experiment = Path(root) / "exp"
        shutil.copytree(stopped, experiment)
        sweep, expected = goemotions_raw, None
        damaged = data.draw(st.sampled_from(["sweep.json", "journal", "sweep file"]), label="damaged")
        if damaged == "sweep.json":
            expected = damage_sweep_json(experiment / "sweep.json", data)
        elif damaged == "journal":
            expected = damage_journal(experiment / JOURNAL, data)
        else:
            sweep = data.draw(st.sampled_from(OTHER_SWEEPS), label="resumed by")
            expected = f"error: --resume: {experiment} is an experiment of sweeps/goemotions_raw.py on goemotions, not "
        line = outcome(sweep, experiment, [])
        if expected == "":
            assert line is None, line
        elif expected is not None:
            assert line is not None and line.startswith(expected), line


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_flags_beside_resume_are_applied_or_refused_by_name(stopped, goemotions_dir, tiny_bert, data):
    flags = data.draw(st.lists(st.sampled_from(sorted(BESIDE)), min_size=1,
                               max_size=3, unique=True), label="flags")
    extra, refused = [], []
    for flag in flags:
        value, accepted = data.draw(st.sampled_from(BESIDE[flag]), label=flag)
        extra += [flag] if value is None else [flag, value.format(model=tiny_bert, data=goemotions_dir)]
        refused += [] if accepted else [flag]
    with tempfile.TemporaryDirectory() as root:
        experiment = Path(root) / "exp"
        shutil.copytree(stopped, experiment)
        line = outcome(goemotions_raw, experiment, extra)
    if refused:
        assert line is not None and line.startswith(f"error: {refused[0]}: --resume continues "), line
    else:
        assert line is None, line

