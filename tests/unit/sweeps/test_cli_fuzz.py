"""The sweep CLI under generated input (Hypothesis, derandomized): every numeric flag with NaN, inf, negatives,
0, huge values and non-numbers, every path flag with a file where a directory is expected and the reverse, a
missing path, and `--models` directories with a missing or malformed config, tokenizer or weights.

The property: a value the flag's rule allows parses; any other ends the sweep with exit code 2 and one error
line, before Ray starts, with nothing written under --storage. The rules (what a trial can use):
- counts and sizes (--num-samples, --max-concurrent, --cpus-per-trial, --epochs, --batch-size, --max-length,
  --train/val/test-rows): integers 1 .. 2**31-1; --max-failures 0 .. 2**31-1; --seed 0 .. 2**32-1;
- --lr: a finite number > 0; --gpus-per-trial: finite, >= 0, a fraction of one GPU or whole GPUs;
- --time-budget: a finite duration > 0 (90s, 30m, 2h or seconds) whose end the clock can show;
- --storage: a directory, or a path whose nearest existing parent is a writable directory; --name: one path
  component; --data-dir: a directory holding the release files, each a file.

Flags are checked in-process through the sweep's own parser (argparse: `prog: error: argument --flag: ...`)
and plan (`error: ...`, run with --dry-run so a valid plan never starts Ray); two subprocess runs check the
same from the command line (the other CLI tests call `main` in-process, tests/unit/sweeps/test_cli.py).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from sweeps import goemotions_raw
from sweeps.cli import build_parser
from sweeps.goemotions_raw import EXPERIMENT
from tests.helpers.data import write_goemotions
from tests.helpers.sweeps import run_sweep
from trainables.models import ModelError, resolve_model

PROG = "sweeps/goemotions_raw.py"
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

COUNT = ("int", 1, 2 ** 31 - 1)
NUMERIC_FLAGS = {  # flag -> (kind, lowest, highest); a lowest of 0.0 for floats is excluded unless noted below
    "--num-samples": COUNT, "--max-concurrent": COUNT, "--cpus-per-trial": COUNT, "--epochs": COUNT,
    "--batch-size": COUNT, "--max-length": COUNT, "--train-rows": COUNT, "--val-rows": COUNT,
    "--test-rows": COUNT, "--max-failures": ("int", 0, 2 ** 31 - 1), "--seed": ("int", 0, 2 ** 32 - 1),
    "--lr": ("float", 0.0, math.inf), "--gpus-per-trial": ("gpus", 0.0, 2 ** 31 - 1),
    "--time-budget": ("duration", 0.0, math.inf),
}
TRICKY = ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "1e309", "-1e309", "1e-400", "0", "-0", "0.0",
          "-1", "1", "0.5", "1.5", "2", "", " ", " 3 ", "1e3", "0x10", "1_000", "١", "½", "None", "true",
          "2147483647", "2147483648", "4294967295", "4294967296", "9" * 5000, "1e20", "1e300", "-5m", "0s", "90s",
          "30m", "2h", "1e16h", "3d", "h", "s", "1\n2", "'1'"]
VALUES = st.one_of(st.sampled_from(TRICKY), st.integers(-2 ** 70, 2 ** 70).map(str), st.floats().map(repr),
                   st.text(max_size=6),
                   st.tuples(st.sampled_from(TRICKY[:20]), st.sampled_from(["s", "m", "h", ""])).map("".join))


def allowed(flag: str, text: str) -> bool:
    """The flag's rule, read from the module docstring (not from the parser's code)."""
    kind, low, high = NUMERIC_FLAGS[flag]
    try:
        if kind == "int":
            value = int(text)
            return low <= value <= high
        if kind == "duration":
            units = {"s": 1, "m": 60, "h": 3600}
            amount, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
            seconds = float(amount) * units[unit]
            if not (math.isfinite(seconds) and seconds > 0):
                return False
            time.localtime(time.time() + seconds)
            return True
        value = float(text)
    except (ValueError, OverflowError, OSError):
        return False
    if not math.isfinite(value) or value > high:
        return False
    if kind == "gpus":
        return value >= 0 and (value <= 1 or value.is_integer())
    return value > low


def parse(argv: list[str]) -> tuple[int, str]:
    """The sweep's parser on argv: (exit code, stderr); 0 when it parsed."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            build_parser(EXPERIMENT).parse_args(argv)
        except SystemExit as exit:
            return exit.code, stderr.getvalue()
    return 0, stderr.getvalue()


@pytest.mark.parametrize("flag", NUMERIC_FLAGS)
@settings(FUZZ, max_examples=80)
@given(text=VALUES)
def test_a_numeric_flag_parses_when_its_rule_allows_else_one_line(flag, text):
    code, stderr = parse([f"{flag}={text}"])
    ok = allowed(flag, text)
    event(f"{'allowed' if ok else 'refused'}")
    if ok:
        assert code == 0, f"{flag}={text!r} is allowed, but: {stderr}"
        return
    assert code == 2, f"{flag}={text!r} parsed"
    [line] = stderr.splitlines()
    assert line.startswith(f"{PROG}: error: argument {flag}: {text!r} "), line


@pytest.mark.parametrize("shape, problem", [
    ("file", "is a file, not a directory"), ("under a file", "is a file, not a directory"),
    ("directory", None), ("missing", None), ("missing parents", None),
])
def test_storage_is_a_directory_or_can_be_made_one(tmp_path, shape, problem):
    (tmp_path / "file").write_text("")
    (tmp_path / "directory").mkdir()
    storage = {"file": tmp_path / "file", "under a file": tmp_path / "file" / "runs",
               "directory": tmp_path / "directory", "missing": tmp_path / "runs",
               "missing parents": tmp_path / "a" / "b"}[shape]
    code, stderr = parse(["--storage", str(storage)])
    if problem is None:
        assert code == 0, stderr
        return
    assert code == 2
    [line] = stderr.splitlines()
    assert line.startswith(f"{PROG}: error: argument --storage: {str(storage)!r}: ") and problem in line, line


@pytest.mark.parametrize("name, ok", [("exp", True), ("exp 2", True), ("", False), (" ", False), (".", False),
                                      ("..", False), ("a/b", False), ("../up", False), ("/abs", False)])
def test_name_is_one_directory_name(name, ok):
    code, stderr = parse([f"--name={name}"])
    assert (code == 0) == ok, stderr
    if not ok:
        [line] = stderr.splitlines()
        assert line.startswith(f"{PROG}: error: argument --name: {name!r} is not a directory name"), line


# --- The plan: --data-dir and --models, in-process with --dry-run (`run_cli`, tests/unit/conftest.py) ---------

def one_error_line(stderr: str) -> str:
    """The one `error:` line, last on stderr (earlier lines there come from library imports), no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


@pytest.mark.parametrize("shape, expected", [
    ("file", "{path}: a file, not a directory (--data-dir)"),
    ("missing", "{path}: data directory not found (--data-dir)"),
    ("without dev.tsv", "{path}/dev.tsv: file not found"),
    ("train.tsv a directory", "{path}/train.tsv: a directory, not a file"),
])
def test_data_dir_shapes_are_one_line_before_ray(run_cli, tmp_path, tiny_bert, shape, expected):
    path = tmp_path / "data"
    if shape == "file":
        path.write_text("train.tsv\n")
    elif shape != "missing":
        write_goemotions(path, sizes=(8, 4, 4))
        if shape == "without dev.tsv":
            (path / "dev.tsv").unlink()
        else:
            (path / "train.tsv").unlink()
            (path / "train.tsv").mkdir()
    storage = tmp_path / "out"
    # --dry-run: a valid plan prints and returns, so Ray never starts
    result = run_cli(goemotions_raw, "--data-dir", str(path), "--models", str(tiny_bert), "--budget", "smoke",
                     "--storage", str(storage), "--name", "exp", "--dry-run")
    assert result.returncode == 2
    assert one_error_line(result.stderr) == "error: " + expected.format(path=path)
    assert not storage.exists()


# --- --models directories ------------------------------------------------------------------------------------

MODEL_DAMAGE = {  # what is done to a copy of the tiny BERT -> whether resolving it must fail
    "config.json gone": True, "config.json a directory": True, "config.json cut": True, "config.json empty": True,
    "config.json a list": True, "config.json unknown model_type": True, "config.json hidden_size text": True,
    "config.json vocab_size below the tokenizer's": True,
    "tokenizer.json gone": True, "tokenizer.json cut": True, "tokenizer.json not json": True,
    "tokenizer.json a directory": True, "tokenizer_config.json gone": False,
    "model.safetensors gone": True, "model.safetensors cut": True, "model.safetensors empty": True,
    "model.safetensors junk after": True, "model.safetensors a directory": True,
    "model.safetensors renamed pytorch_model.bin": True, "index naming a missing shard": True,
    "an unrelated file": False,
}


def damage(model: Path, what: str, data) -> None:
    config, tokenizer, weights = model / "config.json", model / "tokenizer.json", model / "model.safetensors"
    target = {"config": config, "tokenizer.json": tokenizer, "model.safetensors": weights}
    name = next((key for key in target if what.startswith(key)), None)
    path = target.get(name)
    if what.endswith(" gone"):
        (model / what.removesuffix(" gone")).unlink()
    elif what.endswith(" a directory"):
        path.unlink()
        path.mkdir()
    elif what.endswith(" cut"):  # short of the end: a JSON file cut only in its trailing newline is whole
        raw = path.read_bytes()
        path.write_bytes(raw[:data.draw(st.integers(1, len(raw.rstrip()) - 1), label="cut at")])
    elif what.endswith(" empty"):
        path.write_bytes(b"")
    elif what == "config.json a list":
        config.write_text("[]")
    elif what.startswith("config.json"):
        values = json.loads(config.read_text())
        key, value = {"config.json unknown model_type": ("model_type", "no-such-architecture"),
                      "config.json hidden_size text": ("hidden_size", "wide"),
                      "config.json vocab_size below the tokenizer's": ("vocab_size", 3)}[what]
        values[key] = value
        config.write_text(json.dumps(values))
    elif what == "tokenizer.json not json":
        tokenizer.write_bytes(data.draw(st.binary(max_size=20), label="bytes"))
    elif what == "model.safetensors junk after":
        weights.write_bytes(weights.read_bytes() + data.draw(st.binary(min_size=1, max_size=20), label="junk"))
    elif what == "model.safetensors renamed pytorch_model.bin":
        weights.rename(model / "pytorch_model.bin")
    elif what == "index naming a missing shard":
        (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "shard-2.safetensors"}}))
        weights.unlink()
    elif what == "an unrelated file":
        (model / "README.md").write_text("# a model card\n")
    else:
        raise AssertionError(what)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_a_damaged_model_dir_is_one_line_and_a_whole_one_resolves(tiny_bert, data):
    """resolve_model is what the plan calls for each --models entry before Ray starts (hub_ok False: offline)."""
    clean = resolve_model(str(tiny_bert), hub_ok=False)
    what = data.draw(st.sampled_from(sorted(MODEL_DAMAGE)), label="damage")
    with tempfile.TemporaryDirectory() as root:
        model = Path(root) / tiny_bert.name
        shutil.copytree(tiny_bert, model)
        damage(model, what, data)
        note(f"{what}: {sorted(p.name for p in model.iterdir())}")
        try:
            resolved = resolve_model(str(model), hub_ok=False)
        except ModelError as error:
            event(f"refused: {what}")
            message = str(error)
            assert MODEL_DAMAGE[what], f"{what}: a whole model was refused: {message}"
            assert "\n" not in message and message.startswith(f"--models {model}: "), message
            return
        event(f"resolved: {what}")
        assert not MODEL_DAMAGE[what], f"{what}: resolved, but every trial would fail to load it"
        assert (resolved.name, resolved.params_m) == (clean.name, clean.params_m)


# --- From the command line: exit code 2, one line, no Ray, nothing written ------------------------------------

@pytest.mark.parametrize("extra, expected", [
    (["--lr=inf", "--storage", "{storage}"], f"{PROG}: error: argument --lr: 'inf' must be a finite number"),
    (["--models", "{model}", "--storage", "{storage}"], "error: --models {model}: no weights in the directory"),
])
def test_command_line_exits_2_with_one_line_before_ray(tmp_path, goemotions_dir, tiny_bert, extra, expected):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    (model / "model.safetensors").unlink()
    storage = tmp_path / "out"
    argv = ["--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget", "smoke", "--name", "exp",
            "--no-dashboard", *[arg.format(storage=storage, model=model) for arg in extra]]
    result = run_sweep("goemotions_raw.py", *argv, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines[-1].startswith(expected.format(model=model)), result.stderr
    assert len([line for line in lines if "error:" in line]) == 1
    output = result.stdout + result.stderr
    assert "Started a local Ray instance" not in output and "Ray dashboard" not in output  # Ray never started
    assert not result.stdout.startswith("Sweep ")  # no plan printed
    assert not storage.exists()
