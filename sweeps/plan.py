"""The plan: everything a sweep decides before Ray starts, checked, printed and saved as sweep.json.

`make_plan` turns the flags, the cluster and the sweep file's `Experiment` into one row per study (model, or
model × variant): its GPU share and CPUs sized from the model on this cluster, its fixed values and searched
space, its trial budget and the point it starts at. Each model gets its own Optuna study with its own trial
budget (one TPE study across models would spend most trials on whichever model looks best early). Bad flags,
data files and model names end the run here with one line and exit code 2, and nothing is written.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path

from optuna.distributions import CategoricalDistribution

from sweeps.cli import LAYOUT, fail
from sweeps.cluster import Cluster, trial_size, use_gpus
from sweeps.experiment import BUDGETS, Budget, Experiment
from sweeps.tuning import JOURNAL
from trainables.data import DATASETS, DataError, EmotionData, load_dataset
from trainables.hub import hub_reachable
from trainables.models import ModelError, ResolvedModel, four_bit_problem, gpu_share, resolve_model


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
