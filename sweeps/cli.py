"""The command line every sweep file shares: its flags, each flag's type (a bad value is one line and exit 2,
before anything starts), and `fail`, the one way a check before Ray ends the run.

`--resume` restores the saved flags of the experiment it continues (`resumed_args`), so a resumed sweep plans
exactly what it planned at its start.
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
from trainables.metrics import METRICS

LAYOUT = "one-experiment"  # sweep.json of experiments where every study runs in one Tune experiment


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


def storage_dir(text: str) -> str:
    """--storage: a directory, or one that can be made (its nearest existing parent is a writable directory)."""
    path = Path(text).expanduser()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
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
    add("--budget", choices=tuple(BUDGETS), help="smoke | cpu | full (default full on GPUs, cpu on CPUs)")
    add("--data-dir", help="dataset files in their release format (default: load from the hub)")
    add("--storage", type=storage_dir, default="results", help="where experiment directories go (default ./results)")
    add("--name", type=experiment_name, help="experiment name (default <sweep>-<date>-<time>)")
    add("--resume", action="store_true", help="continue the experiment --name with its saved settings")
    add("--restart-errored", action="store_true", help="with --resume: start errored trials over from scratch "
                                                        "(default: continue them from their last checkpoint)")
    add("--wandb", choices=("off", "offline", "online"), default="off", help="W&B logging, one run per trial")
    add("--gpus-per-trial", type=gpu_share_flag, help="override the GPU share sized from the model")
    add("--cpus-per-trial", type=positive(int), help="override the CPUs per trial")
    add("--seed", type=number(int, 0, MAX_SEED), default=0, help="seed for subsampling, samplers and training "
                                                                  "(default 0)")
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


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags of the experiment `--resume --name` continues, as saved in its sweep.json, with the commits it
    started on (not whatever the hub's main branch points to now) and the flags a resume may set anew."""
    if not args.name:
        fail("--resume needs --name of the experiment to continue")
    saved = Path(args.storage).expanduser().resolve() / args.name / "sweep.json"
    if not saved.is_file():
        fail(f"--resume: {saved} not found (no such experiment)")
    sweep = json.loads(saved.read_text())
    if sweep.get("layout") != LAYOUT:
        fail(f"--resume: {saved}: made by an older layout (one Tune experiment per model), which this version "
             f"cannot continue; start a new --name")
    pinned = {"data_revision": sweep.get("data_revision"),
              "model_revisions": {m["name"]: m.get("revision") for m in sweep.get("models", [])}}
    keep = {**pinned, "resume": True, "restart_errored": args.restart_errored, "address": args.address,
            "no_dashboard": args.no_dashboard, "dry_run": args.dry_run, "verbose": args.verbose}
    return argparse.Namespace(**{"device": "auto", "metric": "macro_f1", "confirm_seeds": 0,  # older sweeps
                                 **sweep["args"], **keep})
