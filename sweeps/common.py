"""The command line and the plan every sweep file shares.

A sweep file declares an `Experiment` (dataset, models, search space) and calls `main(EXPERIMENT)`.
Everything is checked before Ray starts: bad flags, data files, model names and the experiment dir end the run
with one line and exit code 2, and nothing is written. Each model gets its own Optuna study with its own trial
budget (one TPE study across models would spend most trials on whichever model looks best early); all studies
run at once in one Tune experiment, `<storage>/<name>/` (sweeps/tuning.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweeps.cluster import (Cluster, ClusterError, check_shared_storage, connected_cluster, local_cluster,
                            private_cluster_warning, trial_size, use_gpus)
from sweeps.driver import INTERRUPTED, DriverLock, Interrupts, LockHeld
from sweeps.tuning import (CONFIRMATIONS, JOURNAL, JournalError, Study, build_confirmation_tuner, build_tuner,
                           close_cut_trials, fit, open_journal)
from trainables import atomic
from trainables.data import DATASETS, DataError, EmotionData, load_dataset
from trainables.hub import hub_reachable
from trainables.metrics import METRICS
from trainables.models import ModelError, ResolvedModel, four_bit_problem, gpu_share, resolve_model

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYOUT = "one-experiment"  # sweep.json of experiments where every study runs in one Tune experiment


@dataclass(frozen=True)
class Budget:
    """How much of the data and how many trials a sweep spends; explicit flags override each field."""
    train_rows: int | None
    val_rows: int | None
    test_rows: int | None
    max_epochs: int
    num_samples: int  # trials per model (a cap when there is a time budget)
    max_length: int
    time_budget_s: float | None
    confirm_seeds: int  # further seeds each model's best configuration is re-trained with after the search
    description: str


BUDGETS = {
    "smoke": Budget(64, 32, 32, 1, 2, 32, None, 0, "a few seconds per trial: tests and first tries"),
    "cpu": Budget(16000, None, None, 2, 20, 64, 30 * 60, 3, "30 minutes on a 2-core laptop, one model"),
    "full": Budget(None, None, None, 5, 30, 128, None, 3, "whole dataset on GPUs"),
}


def encoder_search_space(budget: Budget) -> dict[str, BaseDistribution]:
    """The space every encoder sweep starts from. Short CPU budgets need high learning rates and a fast head:
    250 steps at lr 5e-5 learn little beyond the label priors, so the body goes up to 3e-4 and the freshly
    initialised head up to 1e-2."""
    return {
        "lr": FloatDistribution(2e-5, 3e-4, log=True),
        "head_lr": FloatDistribution(3e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution([16, 32]),
        "weight_decay": FloatDistribution(0.0, 0.1),
        "warmup_ratio": FloatDistribution(0.0, 0.2),
        "epochs": IntDistribution(1, budget.max_epochs),
    }


@dataclass(frozen=True)
class Experiment:
    """What one sweep file declares."""
    name: str
    dataset: str
    models: tuple[str, ...]
    search_space: Callable[[Budget], dict[str, BaseDistribution]]  # for random / tpe
    grid: Callable[[Budget], dict[str, list]]  # for grid
    cpu_models: tuple[str, ...] = ("minilm",)  # default models when no GPU is found
    offline_models: tuple[str, ...] = ()  # CPU defaults when the cpu models cannot be loaded offline (no hub)
    trainable: str = "encoder"
    # what trials are selected by, ASHA and Optuna optimise and thresholds are tuned for: the benchmark's official
    # metric (SemEval-2018 E-c is ranked by Jaccard; GoEmotions and dair-ai emotion by macro-F1)
    metric: str = "macro_f1"
    fixed: dict = field(default_factory=dict)  # config values every trial gets
    fixable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # searched choices a --flag can fix
    per_model: dict[str, dict] = field(default_factory=dict)  # config values one model's trials get (decoder mode)
    param_applies: Callable[[str, dict], bool] | None = None  # whether a searched key matters, given fixed values
    # A fixable key whose values are compared, not searched: each value gets its own study per model, in
    # <model>-<value>/ (emotion6: variant), so every variant receives the same trial budget.
    study_per: str | None = None
    # tpe/random: studies that search any of these keys try this point first (the trainable's defaults for
    # the other searched keys), so the recipe's default configuration is always among the trials.
    start_at: dict = field(default_factory=dict)


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


@dataclass
class Plan:
    """Everything decided before Ray starts; printed, and saved as sweep.json in the experiment dir."""
    experiment: str
    dataset: str
    data_source: str
    data_revision: str | None  # the hub commit the rows were read at (None: --data-dir)
    budget: str
    budget_note: str
    cluster: str  # what the sweep runs on, as the plan printed it
    device: str  # gpu | cpu: where trials train
    models: list[dict]
    search: str
    scheduler: str
    num_samples: int
    time_budget_s: float | None
    confirm_seeds: int
    fixed: dict
    max_epochs: int
    searched: list[str]
    rows: dict  # rows kept per split (None: all), so analysis can read the same rows again
    sweep_dir: str
    wandb: str
    seed: int
    args: dict
    layout: str = LAYOUT


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def make_plan(experiment: Experiment, args: argparse.Namespace, cluster: Cluster) -> tuple[Plan, EmotionData]:
    on_gpu = use_gpus(args.device, cluster)
    if not on_gpu and args.gpus_per_trial:
        fail(f"--gpus-per-trial {args.gpus_per_trial:g}: trials train on CPUs (--device {args.device}, "
             f"{cluster.describe()})")
    if args.device == "gpu" and not cluster.max_gpus:
        print(f"warning: --device gpu: the cluster shows no GPU yet ({cluster.describe()}); trials wait until GPU "
              f"nodes join", file=sys.stderr)
    budget_name = args.budget or ("full" if on_gpu else "cpu")
    budget = BUDGETS[budget_name]
    budget_note = budget.description if args.budget else (
        f"{budget.description}; chosen because trials train on {'GPUs' if on_gpu else 'CPUs'}")

    names = args.models or list(experiment.models if on_gpu else experiment.cpu_models)
    needs_hub = any(not Path(n).expanduser().is_dir() for n in names)
    hub_ok = hub_reachable() if needs_hub else False
    try:
        models = [resolve_model(n, hub_ok) for n in names]
    except ModelError as error:
        if args.models or on_gpu or not experiment.offline_models:
            fail(str(error))
        try:  # the CPU default needs the hub or a cache; a model that ships with a package stands in for it
            models = [resolve_model(n, hub_ok) for n in experiment.offline_models]
        except ModelError as offline_error:
            fail(str(offline_error))
        models = [replace(m, note=f"standing in for {' '.join(names)}, which needs the hub or the local HF cache; "
                                  f"{m.note}") for m in models]
    if len({m.name for m in models}) != len(models):
        fail(f"--models {' '.join(names)}: two models share the name {models[0].name!r}")

    try:  # from the hub (or its local cache) without --data-dir; a resumed sweep reads the commit it started on
        data = load_dataset(experiment.dataset, args.data_dir, revision=getattr(args, "data_revision", None),
                            **{key: getattr(args, key) for key in DATASETS[experiment.dataset].options})
    except DataError as error:
        fail(str(error))
    rows = {"train": args.train_rows or budget.train_rows, "val": args.val_rows or budget.val_rows,
            "test": args.test_rows or budget.test_rows}
    data = data.subsample(rows["train"], rows["val"], rows["test"], args.seed)

    fixed = {"max_length": args.max_length or budget.max_length, "seed": args.seed,
             "thresholds": args.thresholds, "metric": args.metric, **experiment.fixed}
    for key in ("epochs", "lr", "batch_size", *experiment.fixable):
        if getattr(args, key) is not None:
            fixed[key] = getattr(args, key)
    space = searched_space(experiment, budget, args.search, fixed)
    if "epochs" not in space:  # the searcher tells a trial that ran all its epochs from one stopped early
        fixed.setdefault("epochs", budget.max_epochs)
    num_samples = args.num_samples or budget.num_samples
    if args.search == "grid":
        num_samples = math.prod(len(values) for values in space.values()) if space else 1

    studies = [{}]
    if experiment.study_per:
        key = experiment.study_per
        studies = [{key: value} for value in ([getattr(args, key)] if getattr(args, key) is not None
                                              else experiment.fixable[key])]
    model_rows = []
    for model in models:
        share = args.gpus_per_trial if args.gpus_per_trial is not None else gpu_share(model.params_m)
        size = trial_size(model.params_m, share, cluster, on_gpu and share > 0, args.cpus_per_trial,
                          args.max_concurrent)
        for study in studies:
            row_name = "-".join([model.name, *map(str, study.values())])
            model_fixed = {**{key: value for key, value in experiment.per_model.get(model.name, {}).items()
                              if getattr(args, key, None) is None},  # a flag beats the sweep file's value
                           **study}
            model_space = searched_space(experiment, budget, args.search, {**fixed, **model_fixed})
            if experiment.trainable == "decoder":
                check_decoder(model, {**fixed, **model_fixed}, model_space, on_gpu, budget_name)
            if model_fixed.get("variant") == "qlora" and (problem := four_bit_problem()):
                fail(f"--variant qlora: {problem}")
            model_rows.append({
                "name": row_name, "source": model.source,  # a resumed sweep keeps the commits it started on
                "revision": getattr(args, "model_revisions", {}).get(row_name, model.revision),
                "params_m": round(model.params_m, 1), "cpus_per_trial": size.cpus, "gpus_per_trial": size.gpus,
                "custom_resources": size.custom, "max_concurrent": size.max_concurrent, "note": model.note,
                "fixed": model_fixed, "searched": sorted(model_space),
                "num_samples": (math.prod(len(v) for v in model_space.values()) if args.search == "grid"
                                else num_samples),
                "first_trial": first_trial(experiment, model_space) if args.search != "grid" else None})

    name = args.name or f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(args.storage).expanduser().resolve() / name
    plan = Plan(
        experiment=experiment.name, dataset=experiment.dataset,
        data_source=str(Path(args.data_dir).resolve()) if args.data_dir else DATASETS[experiment.dataset].hub_id,
        data_revision=data.revision,
        budget=budget_name, budget_note=budget_note, cluster=cluster.describe(), device="gpu" if on_gpu else "cpu",
        models=model_rows, search=args.search,
        scheduler=args.scheduler, num_samples=num_samples,
        time_budget_s=args.time_budget or budget.time_budget_s,
        confirm_seeds=budget.confirm_seeds if args.confirm_seeds is None else args.confirm_seeds,
        fixed=fixed, max_epochs=fixed.get("epochs", budget.max_epochs), searched=sorted(space),
        rows=rows,
        sweep_dir=str(sweep_dir), wandb=args.wandb, seed=args.seed, args=vars(args),
    )
    return plan, data


def searched_space(experiment: Experiment, budget: Budget, search: str, fixed: dict) -> dict:
    """The sampler's space: the sweep's grid or distributions, less the values a flag fixed (and, for
    decoders, less the keys the fixed mode ignores)."""
    space = experiment.grid(budget) if search == "grid" else experiment.search_space(budget)
    applies = experiment.param_applies or (lambda key, values: True)
    return {key: value for key, value in space.items() if key not in fixed and applies(key, fixed)}


def first_trial(experiment: Experiment, space: dict) -> dict | None:
    """The point a study starts at (Experiment.start_at), moved inside each searched range; None if unused."""
    if not experiment.start_at.keys() & space.keys():
        return None
    start = {**import_module(f"trainables.{experiment.trainable}").DEFAULTS, **experiment.start_at}
    point = {}
    for key, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            point[key] = start[key] if start[key] in distribution.choices else distribution.choices[0]
        else:
            point[key] = min(max(start[key], distribution.low), distribution.high)
    return point


def possible_values(key: str, fixed: dict, space: dict, default) -> list:
    """Every value (or both ends of the range) a trial may get for `key`, for checks before Ray starts."""
    if key in fixed:
        return [fixed[key]]
    value = space.get(key)
    if value is None:
        return [default]
    if isinstance(value, list):
        return value
    if isinstance(value, CategoricalDistribution):
        return list(value.choices)
    return [value.low, value.high]


def check_decoder(model: ResolvedModel, fixed: dict, space: dict, on_gpu: bool, budget: str) -> None:
    """QLoRA needs 4-bit bitsandbytes, a usable tokenizer and template, r > 0; a CPU runs small models only."""
    from trainables.decoder import CPU_MAX_PARAMS_M, DEFAULTS, setup_problem

    if not on_gpu and budget == "full":
        fail("--budget full: QLoRA decoders on CPUs run the smoke or cpu budget only (the cluster has no GPU; "
             "--device gpu if its GPU nodes are still to start)")
    if not on_gpu and model.params_m > CPU_MAX_PARAMS_M:
        fail(f"--models {model.name}: {model.params_m:.0f}M params is too big for QLoRA on CPUs "
             f"(up to {CPU_MAX_PARAMS_M}M; the cluster has no GPU)")
    values = {key: possible_values(key, fixed, space, DEFAULTS[key]) for key in ("mode", "template", "lora_r")}
    problem = setup_problem(model.source, values["mode"], values["template"], values["lora_r"], model.revision)
    if problem:
        fail(f"--models {model.name}: {problem}")


def print_plan(plan: Plan, data: EmotionData, started_at: float) -> None:
    scheme = "multi-label" if data.multi_label else "single-label"
    rows = lambda split: f"{len(split):,}"  # noqa: E731
    print(f"Sweep {plan.experiment}: {plan.dataset} ({data.num_labels} labels, {scheme}) from {plan.data_source}")
    print(f"  on {plan.cluster}; trials train on {plan.device.upper()}s")
    print(f"  budget {plan.budget} ({plan.budget_note}): train {rows(data.train)} / val {rows(data.validation)} "
          f"/ test {rows(data.test)} rows, fixed {plan.fixed}")
    if data.note:
        print(f"  {data.note}")
    print(f"  search {plan.search} (Optuna, seed {plan.seed}) over {', '.join(plan.searched) or 'nothing'}; "
          f"{plan.num_samples} trials per model, scheduler {plan.scheduler} per study; all studies in one Tune "
          f"experiment")
    if plan.time_budget_s:
        ends = time.strftime("%H:%M:%S", time.localtime(started_at + plan.time_budget_s))
        print(f"  time budget {format_duration(plan.time_budget_s)}: trials stop by {ends} (the trial count is a "
              f"cap{', and the search leaves room for the confirmation seeds' if plan.confirm_seeds else ''}), "
              f"then the analysis runs")
    if plan.confirm_seeds:
        print(f"  then each model's best configuration is trained again with {plan.confirm_seeds} further seeds "
              f"(--confirm-seeds): mean ± sd over seeds, a seed ensemble, and whether the top two differ")
    for model in plan.models:
        note = f", {model['note']}" if model["note"] else ""
        custom = "".join(f" + {value:g} {name}" for name, value in model["custom_resources"].items())
        print(f"  model {model['name']}: {model['source']} ({model['params_m']}M params{note}); "
              f"{model['cpus_per_trial']:g} CPU + {model['gpus_per_trial']:g} GPU{custom} per trial, "
              f"up to {model['max_concurrent']} at once")
        if model.get("fixed"):
            print(f"    fixed {model['fixed']}; searched {', '.join(model['searched']) or 'nothing'}; "
                  f"{model['num_samples']} trials")
        if model.get("first_trial"):
            print(f"    first trial at {model['first_trial']}")
    print(f"  W&B {plan.wandb}; results in {plan.sweep_dir}")
    print(f"  Optuna studies (one per model): optuna-dashboard {Path(plan.sweep_dir) / JOURNAL}")


def format_duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def versions() -> dict:
    import ray
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(), "ray": ray.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__, "optuna": optuna.__version__,
            "git_commit": commit}


def trainable_function(kind: str):
    if kind == "encoder":
        from trainables.encoder import train_encoder
        return train_encoder
    if kind == "decoder":
        from trainables.decoder import train_decoder
        return train_decoder
    raise ValueError(f"unknown trainable {kind!r}")


def studies_of(plan: Plan, experiment: Experiment) -> list[Study]:
    """One Optuna study per plan row (model, or model x variant), each with its own budget and resources."""
    studies = []
    for model in plan.models:
        fixed = {**plan.fixed, **model["fixed"]}
        studies.append(Study(
            name=model["name"], config={**fixed, "model": model["name"], "model_source": model["source"],
                                        "model_revision": model["revision"]},
            space=searched_space(experiment, BUDGETS[plan.budget], plan.search, fixed),
            num_samples=model["num_samples"], max_concurrent=model["max_concurrent"], cpus=model["cpus_per_trial"],
            gpus=model["gpus_per_trial"], custom=model["custom_resources"], first_trial=model["first_trial"]))
    return studies


def shared_tokenization(studies: list[Study], data: EmotionData) -> dict:
    """Each split tokenized once per tokenizer and text form the sweep's trials will use (every choice of a
    searched `preprocess` or `max_length`), for every trial to read from Ray's object store instead of tokenizing
    again. A study that searches them over a range rather than choices tokenizes in its trials."""
    from trainables.encoder import DEFAULTS, tokenization_key, tokenize_splits

    shared = {}
    for study in studies:
        options = {}
        for key in ("preprocess", "max_length"):
            searched = study.distributions.get(key)
            if searched is not None and not isinstance(searched, CategoricalDistribution):
                break
            options[key] = searched.choices if searched is not None else [study.config.get(key, DEFAULTS[key])]
        else:
            for preprocess in options["preprocess"]:
                for max_length in options["max_length"]:
                    config = {**study.config, "preprocess": preprocess, "max_length": max_length}
                    if tokenization_key(config) not in shared:
                        shared[tokenization_key(config)] = tokenize_splits(data, config)
    return shared


def sweep_callbacks(plan: Plan) -> list:
    callbacks = []
    if plan.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        # W&B writes straight into the experiment dir, so no run is lost to a copy at trial end.
        callbacks.append(WandbLoggerCallback(project=plan.experiment, group=Path(plan.sweep_dir).name,
                                             mode=plan.wandb, dir=plan.sweep_dir))
    return callbacks


def sweep_trainable(experiment: Experiment, studies: list[Study], data: EmotionData):
    from ray import tune

    shared = {"shared_tokens": shared_tokenization(studies, data)} if experiment.trainable == "encoder" else {}
    return tune.with_parameters(trainable_function(experiment.trainable), data=data, **shared)


def run_experiment(plan: Plan, studies: list[Study], trainable, resume: bool, time_left_s: float | None) -> None:
    """Every study of the sweep in one Tune experiment (restored, not re-run, with --resume)."""
    started_at = time.time()
    tuner = build_tuner(
        trainable, studies,
        Path(plan.sweep_dir), search=plan.search, seed=plan.seed, scheduler=plan.scheduler,
        max_epochs=plan.max_epochs, max_failures=plan.args["max_failures"], time_budget_s=time_left_s,
        callbacks=sweep_callbacks(plan), resume=resume, restart_errored=bool(plan.args.get("restart_errored")),
        confirm_seeds=plan.confirm_seeds)
    fit(tuner, studies)
    if time_left_s and time.time() >= started_at + time_left_s:
        close_cut_trials(Path(plan.sweep_dir) / JOURNAL)


def confirmation_configs(sweep_dir: Path, seeds: int) -> list[dict]:
    """Each model's best search trial's whole config, once per further seed (new weight init and batch order;
    the same data rows, which the sweep's own seed chose, and the same hyperparameters)."""
    from analysis.best_trials import ExperimentError, best_runs, read_trials

    try:
        runs, _ = best_runs(read_trials(sweep_dir))
    except ExperimentError:
        return []  # no trial finished: nothing to confirm (the analysis says so)
    configs = []
    for seeds_so_far in runs.values():
        trial_dir = Path(seeds_so_far[0].row["trial_dir"])
        config = json.loads((trial_dir / "params.json").read_text())
        configs += [{**config, "seed": int(config["seed"]) + k, "confirm_of": trial_dir.name}
                    for k in range(1, seeds + 1)]
    return configs


def run_confirmation(plan: Plan, studies: list[Study], trainable, resume: bool, time_left_s: float | None) -> None:
    """The confirmation trials, after the search, in the same experiment dir (their own Tuner: Tune restores
    the newest one, so --resume continues whichever phase was running). The configs are fixed once, in
    confirmations.json, so a resumed sweep confirms the same trials with the same seeds."""
    sweep_dir = Path(plan.sweep_dir)
    planned = sweep_dir / CONFIRMATIONS
    if planned.is_file():
        configs = json.loads(planned.read_text())
    else:
        configs = confirmation_configs(sweep_dir, plan.confirm_seeds)
        atomic.write_text(planned, json.dumps(configs, indent=2))
    if not configs:
        return
    states = sorted(sweep_dir.glob("experiment_state-*.json"), key=lambda path: path.stat().st_mtime)
    restore = resume and bool(states) and states[-1].stat().st_mtime > planned.stat().st_mtime
    fit(build_confirmation_tuner(trainable, studies, sweep_dir, configs,
                                 max_failures=plan.args["max_failures"], time_budget_s=time_left_s,
                                 callbacks=sweep_callbacks(plan), restore=restore), studies)


def join_cluster(args: argparse.Namespace) -> Cluster:
    """The cluster the plan is made for: joined now when one is named (--address or RAY_ADDRESS), else this
    machine, whose private Ray starts only once the plan is checked (start_ray)."""
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        if warning := private_cluster_warning(address):
            print(warning, file=sys.stderr)
        return local_cluster()
    import ray

    try:
        context = ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        fail(f"--address {address}: cannot join the Ray cluster ({str(error).splitlines()[0]})")
    print_dashboard(context)
    return connected_cluster(address)


def start_ray(args: argparse.Namespace) -> None:
    """Start this machine's private Ray, unless join_cluster already joined one."""
    import ray

    # Tune's results table names a trial that the time budget or Ctrl-C left unstarted as "Failed to fetch
    # metrics"; nothing failed, and the analysis names cut trials itself.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Keeping one checkpoint per trial makes Tune save the experiment state at every checkpoint (what --resume
    # reads); Tune then warns, every few epochs, that snapshots "may become a bottleneck". They take milliseconds.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    # "local" starts a fresh cluster even when a `ray start` cluster runs on this machine; joining one is explicit.
    print_dashboard(ray.init(address="local", include_dashboard=not args.no_dashboard, dashboard_host="127.0.0.1"))


def print_dashboard(context) -> None:
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url} (localhost only; if it asks for a token, "
              f"it is in ~/.ray/auth_token)")


def main(experiment: Experiment, argv: list[str] | None = None) -> int:
    started_at = time.time()  # a time budget counts from here: starting Ray and loading data are spent too
    args = build_parser(experiment).parse_args(argv)
    if args.resume:
        if not args.name:
            fail("--resume needs --name of the experiment to continue")
        saved = Path(args.storage).expanduser().resolve() / args.name / "sweep.json"
        if not saved.is_file():
            fail(f"--resume: {saved} not found (no such experiment)")
        sweep = json.loads(saved.read_text())
        if sweep.get("layout") != LAYOUT:
            fail(f"--resume: {saved}: made by an older layout (one Tune experiment per model), which this version "
                 f"cannot continue; start a new --name")
        # the commits the sweep started on, not whatever the hub's main branch points to now
        pinned = {"data_revision": sweep.get("data_revision"),
                  "model_revisions": {m["name"]: m.get("revision") for m in sweep.get("models", [])}}
        keep = {**pinned, "resume": True, "restart_errored": args.restart_errored, "address": args.address,
                "no_dashboard": args.no_dashboard, "dry_run": args.dry_run}
        args = argparse.Namespace(**{"device": "auto", "metric": "macro_f1", "confirm_seeds": 0,  # older sweeps
                                      **sweep["args"], **keep})
    if args.metric == "jaccard" and not DATASETS[experiment.dataset].multi_label:
        fail(f"--metric jaccard: {experiment.dataset} is single-label (one emotion per text), where Jaccard is "
             f"accuracy; use macro_f1 or micro_f1")
    if args.wandb == "online" and not os.environ.get("WANDB_API_KEY"):
        fail("--wandb online needs WANDB_API_KEY in the environment (or use --wandb offline)")

    cluster = join_cluster(args)
    plan, data = make_plan(experiment, args, cluster)
    sweep_dir = Path(plan.sweep_dir)
    lock = DriverLock(sweep_dir)
    if sweep_dir.exists():
        try:  # a running driver is named first, whether or not this one asked to --resume
            lock.acquire(create=False)
        except LockHeld as error:
            fail(str(error))
        if not args.resume:
            fail(f"--name {sweep_dir.name}: {sweep_dir} already exists; pass --resume to continue it or a new "
                 f"--name")
    if args.resume:
        try:
            open_journal(sweep_dir / JOURNAL)
        except JournalError as error:
            fail(str(error))
    print_plan(plan, data, started_at)
    try:
        check_shared_storage(Path(args.storage).expanduser().resolve(), cluster)
    except ClusterError as error:
        fail(str(error))
    if args.dry_run:
        return 0

    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock.fd is not None or lock.acquire(create=True)
    except LockHeld as error:  # another driver started on the same new --name at the same moment
        fail(str(error))
    resume = ["python", sys.argv[0], "--resume", "--name", sweep_dir.name, "--storage", args.storage]
    interrupts = Interrupts(resume + (["--address", args.address] if args.address else []))
    interrupts.install()
    if not args.resume:
        atomic.write_text(sweep_dir / "sweep.json", json.dumps({**asdict(plan), "versions": versions()}, indent=2))
    if args.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    start_ray(args)
    time_left_s = plan.time_budget_s and max(1.0, started_at + plan.time_budget_s - time.time())
    interrupts.tuning = True
    studies = studies_of(plan, experiment)
    trainable = sweep_trainable(experiment, studies, data)  # tokenizes once for the search and the confirmations
    confirming = args.resume and (sweep_dir / CONFIRMATIONS).is_file()  # the search had ended
    if not confirming:
        run_experiment(plan, studies, trainable, args.resume, time_left_s)
    if plan.confirm_seeds and not interrupts.interrupted:
        time_left_s = plan.time_budget_s and started_at + plan.time_budget_s - time.time()
        if time_left_s is not None and time_left_s <= 0:
            print("warning: no time left to confirm the winners over seeds (--confirm-seeds); the analysis reports "
                  "single runs", file=sys.stderr)
        else:
            run_confirmation(plan, studies, trainable, confirming, time_left_s)
    interrupts.tuning = False
    if interrupts.interrupted:  # Tune stopped and saved the experiment; finished trials are kept
        print(f"interrupted; resume with: {interrupts.resume_command}", file=sys.stderr)
        return INTERRUPTED

    from analysis.best_trials import print_or_fail, write_best_trials

    return print_or_fail(lambda: write_best_trials(sweep_dir))
