"""What the analysis commands check before their first side effect (an output file, an export dir, a report dir),
so that a command that cannot finish says so in one line naming the flag, file or field, exits 2 and writes nothing:
its flags (`OneLineParser`, `count`), the paths it will write (`output_file`, `output_dir`, `new_dirs`) and the model
dirs it reads (`model_dir`: config.json's labels against the decision rule's, safetensors headers against the file's
size; `load_classifier`: the weights against the model its config builds). A truncated copy of a checkpoint or a
decision.json edited by hand then fails here, by name, not later in safetensors, torch or a broadcast.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError, safe_open

MAX_COUNT = 2 ** 31 - 1  # counts go to numpy and scipy as 32-bit ints
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PROBLEM_TYPES = {"multi_label_classification": True, "single_label_classification": False}


class CheckError(ValueError):
    """One line naming the flag, file or field a command cannot use."""


def one_line(error: BaseException) -> str:
    """A library's error message as one line (some span several), for a refusal that names its file first."""
    return " ".join(str(error).split()) or type(error).__name__


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (no usage block) and exits 2, like every other refusal."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def count(text: str) -> int:
    """An argparse type: a whole number 1 .. 2**31-1 (a count of resamples, repeats, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is not a count (1 .. {MAX_COUNT})")
    return value


def writable_dir(flag: str, path: Path, directory: Path) -> None:
    """`directory`, where `path` will be created, exists (or can be made) and can be written to."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckError(f"{flag} {path}: {existing} is not writable")


def output_file(flag: str, path: str | None) -> None:
    """A file the command replaces when done (atomic rename beside it): a regular file or a new name in a writable
    directory; - or None is stdout. A device or link target (/dev/stdout) would be replaced, not written to."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise CheckError(f"{flag} {path}: is a directory (name a file)")
    if target.exists() and not target.is_file():
        raise CheckError(f"{flag} {path}: not a regular file (use - for stdout)")
    if not target.absolute().parent.is_dir():
        raise CheckError(f"{flag} {path}: its directory does not exist")
    writable_dir(flag, target, target.absolute().parent)


def output_dir(flag: str, path: Path) -> None:
    """A directory the command writes into: an existing directory, or a new one under a writable directory."""
    if path.exists() and not path.is_dir():
        raise CheckError(f"{flag} {path}: exists and is not a directory")
    writable_dir(flag, path, path.absolute())


@contextmanager
def new_dirs(directory: Path) -> Iterator[Path]:
    """`directory`, made with its missing parents; the ones made here are removed again if the block fails, so a
    command that fails late leaves no empty dirs behind."""
    directory = directory.absolute()
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    except BaseException:
        if missing:
            shutil.rmtree(missing[-1], ignore_errors=True)  # the topmost dir made here, and all below it
        raise


def read_config(directory: Path) -> dict:
    path = directory / CONFIG
    if not path.is_file():
        raise CheckError(f"{path}: not found (a model dir holds its config)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckError(f"{path}: unreadable ({one_line(error)})") from None
    if not isinstance(config, dict):
        raise CheckError(f"{path}: not a model config (a JSON object)")
    return config


def config_labels(config: dict, path: Path) -> list[str]:
    """The model's label names in class order (id2label "0" .. "C-1"), checked against its num_labels."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise CheckError(f"{path}: no id2label (the model's label names)")
    keys = [str(i) for i in range(len(id2label))]
    if set(id2label) != set(keys) or not all(isinstance(name, str) for name in id2label.values()):
        raise CheckError(f"{path}: id2label must map \"0\" .. \"{len(id2label) - 1}\" to label names")
    if "num_labels" in config and config["num_labels"] != len(id2label):
        raise CheckError(f"{path}: num_labels {config['num_labels']!r} but id2label has {len(id2label)} labels")
    return [id2label[key] for key in keys]


def compare_labels(config: dict, path: Path, labels: list[str], multi_label: bool, source: str) -> None:
    """The model's labels and task agree with the rule's (`source` names where the rule's come from)."""
    names = config_labels(config, path)
    if len(names) != len(labels):
        raise CheckError(f"{path}: id2label has {len(names)} labels, {source} {len(labels)}")
    for i, (mine, theirs) in enumerate(zip(names, labels)):
        if mine != theirs:
            raise CheckError(f"{path}: id2label[\"{i}\"] is {mine!r}, {source} {theirs!r} (label order differs)")
    problem = config.get("problem_type")
    if problem is not None and PROBLEM_TYPES.get(problem) != multi_label:
        task = "multi_label" if multi_label else "single_label"
        raise CheckError(f"{path}: problem_type {problem!r}, but the decision rule is {task}")


def check_safetensors(path: Path) -> None:
    """The file's header, which safetensors checks against the file's size (every tensor's bytes present, none
    left over): a file cut short (a copy interrupted, a disk full) or padded fails here, before anything copies or
    loads it. Opening maps the file; no tensor is read."""
    if not path.is_file():
        raise CheckError(f"{path}: not found (the model's weights are missing)")
    try:
        with safe_open(path, "numpy"):
            pass
    except (SafetensorError, OSError) as error:
        raise CheckError(f"{path}: truncated or damaged ({one_line(error)})") from None


def model_dir(directory: Path, labels: list[str], multi_label: bool, source: str,
              max_length: int | None = None) -> dict:
    """A classifier dir (config.json + model.safetensors) that predicts `labels` in this order, with weights whose
    header covers the file; texts of `max_length` tokens fit its position embeddings. Returns its config."""
    if not directory.is_dir():
        raise CheckError(f"{directory}: not found (a model dir)")
    config = read_config(directory)
    compare_labels(config, directory / CONFIG, labels, multi_label, source)
    positions = config.get("max_position_embeddings")
    if max_length is not None and isinstance(positions, int) and max_length > positions:
        raise CheckError(f"{directory / CONFIG}: max_position_embeddings {positions} < text.max_length {max_length}")
    check_safetensors(directory / WEIGHTS)
    return config


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' loading report and progress bars off while a model loads: what the report would list (missing,
    left-over, mis-shaped tensors) is refused by name instead, and a refusal stays the only line on stderr."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_classifier(directory: Path):
    """The model dir as a float classifier (eval mode), refused unless its weights are exactly the model its config
    builds: from_pretrained would fill a missing tensor with random weights or drop a left-over one (a config with
    another layer count) and fail on a mis-shaped one (a head for another label count) after printing its report;
    the model would predict nonsense or the command end in a traceback."""
    import torch  # heavy imports where a model loads: the checks above answer without them
    from transformers import AutoModelForSequenceClassification

    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                directory, dtype=torch.float32, output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as error:  # transformers and huggingface_hub check a config with many kinds of exception
        raise CheckError(f"{directory / CONFIG}: no classifier loads from it ({one_line(error)})") from None
    if info["mismatched_keys"]:
        key, found, wanted = sorted(info["mismatched_keys"])[0]
        raise CheckError(f"{directory / WEIGHTS}: {key} has shape {list(found)}, {CONFIG} builds {list(wanted)}")
    for problem, keys in (("missing", info["missing_keys"]), ("left over", info["unexpected_keys"])):
        if keys:
            raise CheckError(f"{directory / WEIGHTS}: {len(keys)} tensor(s) {problem} for the model {CONFIG} builds "
                             f"(first: {sorted(keys)[0]})")
    return model.eval()
