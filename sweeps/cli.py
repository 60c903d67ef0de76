"""The command line every sweep file shares: its flags, each flag's type (a bad value is one line and exit 2,
before anything starts), and `fail`, the one way a check before Ray ends the run.

`--resume` restores the saved flags of the experiment it continues (`resumed_args`), so a resumed sweep plans
exactly what it planned at its start, where the experiment is now: a copied or moved one continues in its new place.
A damaged sweep.json, an experiment of another sweep file, or a flag beside --resume that it cannot change is one line
and exit 2, like a bad flag.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

from sweeps.experiment import BUDGETS, Experiment
from trainables.data import DATASETS
from trainables.scores import METRICS
from trainables.optimizers import WORD_EMBEDDING_UPDATES

LAYOUT = "one-experiment"  # sweep.json of experiments where every study runs in one Tune experiment
# Flags a resume applies anew; Tune restores the rest (time budget, retries, W&B, the searcher) from the experiment.
RESUME_MAY_CHANGE = ("address", "no_dashboard", "verbose", "dry_run", "restart_errored")
RESUME_LOCATES = ("resume", "storage", "name")  # where the experiment is now, not where it started
# saved before these flags existed
OLDER_SWEEPS = {"device": "auto", "metric": "macro_f1", "confirm_seeds": 0, "rungs_per_epoch": 1,
                "word_embedding_updates": "dense", "dropout": "checkpoint"}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


MAX_COUNT = 2 ** 31 - 1  # counts and sizes go to numpy, torch and Ray as 32-bit ints
MAX_SEED = 2 ** 32 - 1  # numpy's RandomState (Optuna's samplers) takes seeds below 2**32


def number(kind: type, low: float, high: float, low_included: bool = True) -> Callable[[str], float | int]:
    """A flag's number: of `kind`, finite, in [low, high] (or (low, high] without `low_included`)."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value >= low if low_included else value > low):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'>=' if low_included else '>'} {low:g}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:g}")
        return value
    return parse


def positive(kind: type) -> Callable[[str], float | int]:
    return number(kind, 0, MAX_COUNT if kind is int else math.inf, low_included=False)


def gpu_share_flag(text: str) -> float:
    """--gpus-per-trial: a fraction of one GPU, or whole GPUs (what Ray can reserve); 0: trials take none."""
    share = number(float, 0, MAX_COUNT)(text)
    if share > 1 and not share.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction of one GPU (up to 1) or whole GPUs")
    return share


def dropout_flag(text: str) -> float | str:
    """--dropout: a probability in [0, 1), or `checkpoint` (the model's own)."""
    if text == "checkpoint":
        return text
    probability = number(float, 0, 1)(text)
    if probability == 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be below 1 (or 'checkpoint')")
    return probability


def duration(text: str) -> float:
    """`90s`, `30m`, `2h` (or plain seconds) → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    amount, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(amount) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m or 2h") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive duration like 90s, 30m or 2h")
    try:  # the plan prints the clock time the budget ends at
        time.localtime(time.time() + seconds)
    except (OverflowError, OSError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is too long a duration (it ends past the calendar)") from None
    return seconds


def nearest_existing(path: Path) -> Path:
    return next(parent for parent in (path, *path.parents) if parent.exists())


def storage_dir(text: str) -> str:
    """--storage: a directory, or one that can be made (its nearest existing parent is a writable directory)."""
    existing = nearest_existing(Path(text).expanduser())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: cannot write in {existing}")
    return text


def experiment_name(text: str) -> str:
    """--name: one directory name inside --storage."""
    if not text.strip() or text in (".", "..") or "/" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory name (one path component, no '/')")
    return text


def absolute_path(text: str) -> str:
    """A path saved absolute: a resume restates it from any directory, and the plan names where it is."""
    return os.path.abspath(os.path.expanduser(text))


def check_name(args: argparse.Namespace) -> None:
    """--name against --storage, before anything prints or starts: a name longer than the filesystem's limit, or one
    a file already has, would end the sweep in a traceback once its plan had printed."""
    if args.name is None:
        return
    storage = Path(args.storage).expanduser()
    existing = nearest_existing(storage)
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(args.name)) > name_max:
        fail(f"--name: {len(os.fsencode(args.name))} bytes, longer than the {name_max} a file name may have in "
             f"{existing}")
    taken = storage / args.name
    if taken.exists() and not taken.is_dir():
        fail(f"--name {args.name}: {taken.resolve()} is a file, not an experiment directory; pick another --name")


def build_parser(experiment: Experiment) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f"sweeps/{experiment.name}.py", description=f"Sweep: {experiment.name}")
    add = parser.add_argument
    add("--models", nargs="+", help=f"aliases or local model directories (default {' '.join(experiment.models)};"
                                    f" on CPUs {' '.join(experiment.cpu_models)})")
    add("--device", choices=("auto", "gpu", "cpu"), default="auto",
        help="train on the cluster's GPUs or CPUs (default auto: GPUs when the cluster has or can start some)")
    add("--search", choices=("grid", "random", "tpe"), default="tpe", help="Optuna sampler (default tpe)")
    add("--scheduler", choices=("asha", "none"), default="asha", help="early stopping (default asha)")
    add("--allocate", choices=("even", "adaptive"), default="even",
        help="trials per model: even (each its budget), or adaptive (once every model has its startup trials, a "
             "model reliably behind the leader gives its remaining trials to the leaders; default even)")
    add("--num-samples", type=positive(int), help="trials per model (default from the budget; with a time "
                                                  "budget, a cap)")
    add("--max-concurrent", type=positive(int), help="trials at once per study (default: 1 on CPUs; on GPUs as "
                                                             "many as the cluster's GPUs hold)")
    add("--time-budget", type=duration, help="end the sweep after this wall time, e.g. 90s, 30m, 2h "
                                             "(default from the budget: 30m for cpu)")
    add("--metric", choices=METRICS, default=experiment.metric,
        help=f"what trials are selected by and thresholds tuned for (default {experiment.metric})")
    add("--confirm-seeds", type=number(int, 0, 100),
        help="after the search, re-train each model's best configuration with N further seeds (default: 3 for the "
             "cpu and full budgets, 0 for smoke)")
    add("--rungs-per-epoch", type=number(int, 1, 64),
        help="encoder trials report to ASHA this many times an epoch, inside it on a fixed validation subset "
             "(default: 4 for the cpu budget, else 1)")
    if experiment.trainable == "encoder":
        add("--word-embedding-updates", choices=WORD_EMBEDDING_UPDATES,
            help="how trials train the word-embedding matrix: dense, sparse (only the rows a batch holds) or frozen "
                 "(default: sparse for the cpu budget, else dense)")
        add("--dropout", type=dropout_flag, help="trials' dropout probability, or 'checkpoint' for the model's own "
                                                 "(default: 0 for the cpu budget, else checkpoint)")
    add("--warm-start", nargs="+", type=absolute_path, metavar="RESULTS_DIR",
        help="start each model's study with the best configurations (up to 3 each) of these earlier experiments' "
             "studies of that model, re-measured on this sweep's data (not with --search grid)")
    add("--budget", choices=tuple(BUDGETS), help="smoke | cpu | full (default full on GPUs, cpu on CPUs)")
    add("--data-dir", help="dataset files in their release format (default: load from the hub)")
    add("--storage", type=storage_dir, default="results", help="where experiment directories go (default ./results)")
    add("--name", type=experiment_name, help="experiment name (default <sweep>-<date>-<time>)")
    add("--resume", action="store_true",
        help="continue the experiment --storage/--name with its saved settings, where it is now (a copied or moved "
             "one too); beside it only --address, --no-dashboard, --verbose, --dry-run and --restart-errored may "
             "change, any other flag must restate the saved value")
    add("--restart-errored", action="store_true", help="with --resume: start errored trials over from scratch "
                                                        "(default: continue them from their last checkpoint)")
    add("--wandb", choices=("off", "offline", "online"), default="off", help="W&B logging, one run per trial")
    add("--gpus-per-trial", type=gpu_share_flag, help="override the GPU share sized from the model")
    add("--cpus-per-trial", type=positive(int), help="override the CPUs per trial")
    add("--seed", type=number(int, 0, MAX_SEED), default=0, help="seed for subsampling, samplers and training "
                                                                  "(default 0)")
    add("--deterministic", action="store_true",
        help="reproducible trials: torch's deterministic algorithms, cuBLAS's deterministic workspace, no cuDNN "
             "autotuning (slower on GPUs; an op with no deterministic version fails its trial)")
    add("--thresholds", choices=("exact", "optuna"), default="exact", help="threshold search on validation")
    add("--max-failures", type=number(int, 0, MAX_COUNT), default=2,
        help="retries of a failed trial from its checkpoint")
    add("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local one)")
    add("--dry-run", action="store_true", help="print the plan and exit")
    add("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    add("--verbose", action="store_true", help="Tune's own status tables as well as the sweep's trial lines")
    for flag, kind in (("--epochs", int), ("--lr", float), ("--batch-size", int), ("--max-length", int),
                       ("--train-rows", int), ("--val-rows", int), ("--test-rows", int)):
        add(flag, type=positive(kind), help="fix this value (overrides the budget / search space)")
    for key, choices in experiment.fixable.items():
        add(f"--{key.replace('_', '-')}", choices=choices, help=f"fix {key} (default: searched over "
                                                                f"{' | '.join(choices)})")
    for key, option in DATASETS[experiment.dataset].options.items():
        add(f"--{key.replace('_', '-')}", choices=option.choices, default=option.choices[0],
            help=f"{option.help} (default {option.choices[0]})")
    return parser


def resumed_args(experiment: Experiment, args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """The flags of the experiment `--resume --storage --name` continues, as saved in its sweep.json and checked as
    if given again, with the commits it started on (not whatever the hub's main branch points to now). It continues
    where it is now, so --storage and --name are the given ones (the saved ones name where it started). A flag
    given beside --resume is applied if RESUME_MAY_CHANGE has it, else refused unless it restates the saved value:
    silently dropping it would run a sweep other than the one asked for. --warm-start is such a flag: its
    configurations were enqueued in the journal at the start, so a resume neither redoes it nor takes others (it
    continues with the saved ones, saved_warm_starts)."""
    if not args.name:
        fail("--resume needs --name of the experiment to continue")
    saved = Path(args.storage).expanduser().resolve() / args.name / "sweep.json"
    sweep = saved_sweep(saved, experiment)
    parser = build_parser(experiment)
    defaults = {action.dest: action.default for action in parser._actions if action.default != argparse.SUPPRESS}
    values = {**defaults, **saved_flags(parser, {**OLDER_SWEEPS, **sweep["args"]}, saved),
              **pinned_revisions(sweep, saved), **saved_warm_starts(sweep, saved)}
    for dest in given_flags(experiment, argv):
        if dest not in RESUME_MAY_CHANGE + RESUME_LOCATES and getattr(args, dest) != values[dest]:
            flag = f"--{dest.replace('_', '-')}"
            fail(f"{flag}: --resume continues {saved.parent} with its saved {flag} ({shown(values[dest])}); a resume "
                 f"may change only {', '.join('--' + d.replace('_', '-') for d in RESUME_MAY_CHANGE)} (a new --name "
                 f"starts a sweep with other settings)")
    given = {dest: getattr(args, dest) for dest in RESUME_MAY_CHANGE + RESUME_LOCATES}
    return argparse.Namespace(**{**values, **given})


def saved_sweep(saved: Path, experiment: Experiment) -> dict:
    """The experiment's sweep.json, if it is one this sweep file can continue."""
    if not saved.is_file():
        fail(f"--resume: {saved} not found (no such experiment)")
    try:
        sweep = json.loads(saved.read_bytes())
    except json.JSONDecodeError as error:
        fail(f"{saved}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno}); the experiment's saved "
             f"plan is damaged")
    except ValueError as error:  # not UTF-8
        fail(f"{saved}: not valid JSON ({error}); the experiment's saved plan is damaged")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("args"), dict):
        fail(f"{saved}: args: missing; not a sweep's saved plan (an object with the flags it ran with)")
    if sweep.get("layout") != LAYOUT:
        fail(f"--resume: {saved}: made by an older layout (one Tune experiment per model), which this version "
             f"cannot continue; start a new --name")
    if not all(isinstance(sweep.get(key), str) for key in ("experiment", "dataset")):
        fail(f"{saved}: experiment, dataset: missing; not a sweep's saved plan (the sweep file and dataset it ran)")
    if (sweep["experiment"], sweep["dataset"]) != (experiment.name, experiment.dataset):
        fail(f"--resume: {saved.parent} is an experiment of sweeps/{sweep['experiment']}.py on "
             f"{sweep['dataset']}, not of sweeps/{experiment.name}.py on {experiment.dataset}; resume it with "
             f"the sweep file that started it")
    return sweep


def saved_flags(parser: argparse.ArgumentParser, saved_args: dict, saved: Path) -> dict:
    """Each saved flag through its own flag's rule, as if given again: a damaged or hand-edited value is one line
    naming its field here, not a traceback in the plan or in every trial."""
    return {action.dest: saved_flag(parser, action, saved_args[action.dest], f"{saved}: args.{action.dest}")
            for action in parser._actions
            if action.dest in saved_args and action.dest not in RESUME_MAY_CHANGE + RESUME_LOCATES}


def saved_flag(parser: argparse.ArgumentParser, action: argparse.Action, value, where: str):
    flag = action.option_strings[-1]
    if action.nargs == 0:  # a switch (--deterministic): saved as true or false
        if not isinstance(value, bool):
            fail(f"{where}: {json.dumps(value)[:80]} is not a value of {flag} (true or false)")
        return value
    if value is None and action.default is None:
        return None
    many = action.nargs == "+"
    scalar = (str, int, float)
    if (not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)) if many
            else isinstance(value, bool) or not isinstance(value, scalar)):
        fail(f"{where}: {json.dumps(value)[:80]} is not a value of {flag}")
    parser.error = lambda message: fail(f"{where}: {message.removeprefix(f'argument {flag}: ')}")
    return getattr(parser.parse_args([flag, *value] if many else [f"{flag}={value}"]), action.dest)


def pinned_revisions(sweep: dict, saved: Path) -> dict:
    """The hub commits of the data and of each model the experiment started on."""
    models = sweep.get("models", [])
    if not (isinstance(models, list) and all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                             and isinstance(m.get("revision"), (str, type(None))) for m in models)):
        fail(f"{saved}: models: not a list of models, each with its name and hub revision")
    if not isinstance(sweep.get("data_revision"), (str, type(None))):
        fail(f"{saved}: data_revision: {json.dumps(sweep['data_revision'])[:80]} is not a hub commit")
    return {"data_revision": sweep.get("data_revision"), "model_revisions": {m["name"]: m.get("revision")
                                                                             for m in models}}


def saved_warm_starts(sweep: dict, saved: Path) -> dict:
    """Each model's --warm-start configurations as the experiment chose them at its start: a resume reads no source
    experiment again (it may have moved, or grown), and the searcher enqueues them only in a study the journal does
    not have yet (a sweep stopped before its first trial)."""
    starts = {model["name"]: model.get("warm_start", []) for model in sweep.get("models", [])}
    for name, sources in starts.items():
        if not (isinstance(sources, list) and all(map(is_warm_source, sources))):
            fail(f"{saved}: models: {name}: warm_start: not a list of source experiments, each with the numbers, "
                 f"values and params of the trials taken from it")
    return {"warm_starts": starts}


def is_warm_source(source) -> bool:
    """A source of sweeps/warm_start.py's rows: where from, the values' dataset, metric and best, its trials."""
    return (isinstance(source, dict) and all(isinstance(source.get(key), str) for key in ("experiment", "dataset",
                                                                                          "metric"))
            and is_json_number(source.get("best")) and isinstance(source.get("trials"), list)
            and all(isinstance(trial, dict) and isinstance(trial.get("trial"), int)
                    and is_json_number(trial.get("value")) and isinstance(trial.get("params"), dict)
                    for trial in source["trials"]))


def is_json_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def given_flags(experiment: Experiment, argv: list[str]) -> list[str]:
    """The flags on the command line (their dests), without argparse's defaults."""
    parser = build_parser(experiment)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return list(vars(parser.parse_args(argv)))


def shown(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "not set" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
