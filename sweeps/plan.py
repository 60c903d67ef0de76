"""The plan: everything a sweep decides before Ray starts, checked, printed and saved as sweep.json.

`make_plan` turns the flags, the cluster and the sweep file's `Experiment` into one row per study (model, or
model × variant): its GPU share and CPUs sized from the model's training step on this cluster (`size_trials`),
its fixed values and searched space, its trial budget, the point it starts at and the configurations of earlier
sweeps it tries first (--warm-start, sweeps/warm_start.py). Each model gets its own Optuna study with its own
trial budget (one TPE study across models would spend most trials on whichever model looks best early). Bad
flags, data files, model names, --warm-start experiments and trial sizes no node can hold end the run here with one
line and exit code 2, and nothing is written.
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
from sweeps.cluster import (CUDA_CONTEXT_GB, REFERENCE_GPU_MEMORY_GB, Cluster, ClusterError, TrialSize, gpu_class,
                            share_of_gpu, trial_size, use_gpus)
from sweeps.experiment import BUDGETS, Budget, Experiment
from sweeps.shared_models import trial_source
from sweeps.studies import JOURNAL
from sweeps.warm_start import add_warm_starts, warm_start_lines
from trainables.data import DATASETS, DataError, EmotionData, load_dataset
from trainables.hub import hub_reachable
from trainables.models import (ComputeProfile, ModelError, ResolvedModel, compute_profile, four_bit_problem,
                               resolve_model)
from trainables.rungs import rung_subset_rows


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
    allocate: str  # even | adaptive: trials per model fixed, or moved to the leaders (sweeps/searcher.py)
    capacity: float  # GPUs (CPUs on CPUs) of the cluster once its autoscaler has added every node it may
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
    if args.device == "gpu" and not cluster.max_gpus and cluster.address is None:
        fail(f"--device gpu: this machine has no GPU torch can see, and the private Ray a sweep starts here never "
             f"will ({cluster.describe()}); use --device cpu, or --address a cluster with GPU nodes")
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
             "deterministic": args.deterministic, "thresholds": args.thresholds, "metric": args.metric,
             **experiment.fixed}
    for key in ("epochs", "lr", "batch_size", *experiment.fixable):
        if getattr(args, key) is not None:
            fixed[key] = getattr(args, key)
    if experiment.trainable == "encoder":
        encoder_training(fixed, args, budget)
    space = searched_space(experiment, budget, args.search, fixed)
    defaults = import_module(f"trainables.{experiment.trainable}").DEFAULTS
    rungs_per_epoch = rungs_in_an_epoch(experiment, args, budget, len(data.train),
                                        max(possible_values("batch_size", fixed, space, defaults["batch_size"])))
    if rungs_per_epoch > 1:
        fixed["rungs_per_epoch"] = rungs_per_epoch
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
    name = args.name or f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(args.storage).expanduser().resolve() / name
    model_rows, spaces = [], {}
    for model in models:
        try:
            profile = compute_profile(model)
        except ModelError as error:
            fail(str(error))
        for study in studies:
            row_name = "-".join([model.name, *map(str, study.values())])
            model_fixed = {**{key: value for key, value in experiment.per_model.get(model.name, {}).items()
                              if getattr(args, key, None) is None},  # a flag beats the sweep file's value
                           **study}
            model_space = spaces[row_name] = searched_space(experiment, budget, args.search, {**fixed, **model_fixed})
            if experiment.trainable == "decoder":
                check_decoder(model, {**fixed, **model_fixed}, model_space, on_gpu, budget_name)
            if model_fixed.get("variant") == "qlora" and (problem := four_bit_problem()):
                fail(f"--variant qlora: {problem}")
            # sized for the largest step a trial may take: the largest batch and sequence it may get
            batch_size, max_length = (max(possible_values(key, {**fixed, **model_fixed}, model_space, defaults[key]))
                                      for key in ("batch_size", "max_length"))
            try:
                size = size_trials(model, cluster, on_gpu, batch_size=batch_size, max_length=max_length,
                                   decoder=experiment.trainable == "decoder", gpus_per_trial=args.gpus_per_trial,
                                   cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
                                   fp32_activations=model_fixed.get("variant") == "qat")
            except (ClusterError, ModelError) as error:
                fail(str(error))
            model_rows.append({
                "name": row_name, **trial_source(model, cluster, sweep_dir),  # a folder: its copy on multi-node
                "revision": getattr(args, "model_revisions", {}).get(row_name, model.revision),  # a resume keeps it
                "params_m": round(model.params_m, 1), "cpus_per_trial": size.cpus, "gpus_per_trial": size.gpus,
                "custom_resources": size.custom, "max_concurrent": size.max_concurrent, "gpu_reason": size.reason,
                "epoch_tflop": epoch_tflop(profile, len(data.train), max_length),
                "note": model.note, "fixed": model_fixed, "searched": sorted(model_space),
                "num_samples": (math.prod(len(v) for v in model_space.values()) if args.search == "grid"
                                else num_samples),
                "first_trial": first_trial(experiment, model_space) if args.search != "grid" else None})
    add_warm_starts(model_rows, spaces, args)

    plan = Plan(
        experiment=experiment.name, dataset=experiment.dataset,
        data_source=str(Path(args.data_dir).resolve()) if args.data_dir else DATASETS[experiment.dataset].hub_id,
        data_revision=data.revision,
        budget=budget_name, budget_note=budget_note, cluster=cluster.describe(), device="gpu" if on_gpu else "cpu",
        models=model_rows, search=args.search,
        scheduler=args.scheduler, allocate=getattr(args, "allocate", "even"),
        capacity=cluster.max_gpus if on_gpu else cluster.max_cpus, num_samples=num_samples,
        time_budget_s=args.time_budget or budget.time_budget_s,
        confirm_seeds=budget.confirm_seeds if args.confirm_seeds is None else args.confirm_seeds,
        fixed=fixed, max_epochs=fixed.get("epochs", budget.max_epochs), searched=sorted(space),
        rows=rows,
        sweep_dir=str(sweep_dir), wandb=args.wandb, seed=args.seed, args=vars(args),
    )
    return plan, data


def epoch_tflop(profile: ComputeProfile, train_rows: int, max_length: int) -> float:
    """One epoch's training compute at full length: the plan's estimate of a study's work before any trial has
    run, which the searcher uses to start the longest work first."""
    return train_rows * max_length * profile.train_flops_per_token(max_length) / 1e12


def size_trials(model: ResolvedModel, cluster: Cluster, on_gpu: bool, *, batch_size: int, max_length: int,
                decoder: bool = False, gpus_per_trial: float | None = None, cpus_per_trial: int | None = None,
                max_concurrent: int | None = None, fp32_activations: bool = False) -> TrialSize:
    """CPUs, GPU share, custom resources and concurrency for one model's trials on this cluster, for the plan
    and for simulations of it (bench/).

    The GPU share is what the model's training step needs at `batch_size` x `max_length` (every sequence at
    full length: the bound, not the average), not its parameter count: ALBERT's 12M parameters run 12 times per
    token, so it computes like BERT-base. It is the larger of the share of a GPU's time the step keeps busy and
    the share of its memory the trial holds (full fine-tuning; `decoder`: QLoRA), of the smallest GPU the
    trial may land on where the cluster says, else of a REFERENCE_GPU_MEMORY_GB one. Its activations are
    16-bit (autocast), or twice that where the trials train in fp32: `fp32_activations` (the qat variant,
    trainables/encoder_model.py train_dtype), or a `decoder` that may land on a GPU older than Ampere
    (trainables/decoder.py decoder_dtype). `gpus_per_trial` and `cpus_per_trial` override it; either one that
    no node of the cluster can hold, or a trial whose memory no GPU of the cluster holds, is a ClusterError
    naming the flag (Ray would queue such trials forever)."""
    check_fits(cluster, on_gpu, gpus_per_trial, cpus_per_trial)
    if not on_gpu or gpus_per_trial == 0:
        return trial_size(model.params_m, 0.0, cluster, False, cpus_per_trial, max_concurrent)
    if gpus_per_trial is not None:
        return trial_size(model.params_m, gpus_per_trial, cluster, True, cpus_per_trial, max_concurrent,
                          f"--gpus-per-trial {gpus_per_trial:g}")
    profile = compute_profile(model)
    step_tflop = batch_size * max_length * profile.train_flops_per_token(max_length) / 1e12
    wanted = gpu_class(model.params_m, cluster)
    fp32_activations = fp32_activations or (decoder and cluster.pre_ampere_gpus(wanted))
    memory_gb = profile.train_memory_gb(batch_size, max_length, four_bit=decoder, lora=decoder,
                                        fp32_activations=fp32_activations)
    gpu_memory = cluster.gpu_memory_gb(wanted)
    if gpu_memory and memory_gb + CUDA_CONTEXT_GB > gpu_memory[1]:
        raise ClusterError(f"--models {model.name}: a trial needs ~{memory_gb + CUDA_CONTEXT_GB:.0f} GB of GPU "
                           f"memory at batch_size {batch_size} x max_length {max_length}, but the cluster's largest "
                           f"GPU for it has {gpu_memory[1]:g} GB; lower --batch-size / --max-length or add larger "
                           f"GPUs")
    share, reason = share_of_gpu(step_tflop, memory_gb, gpu_memory[0] if gpu_memory else REFERENCE_GPU_MEMORY_GB)
    return trial_size(model.params_m, share, cluster, True, cpus_per_trial, max_concurrent, reason)


def check_fits(cluster: Cluster, on_gpu: bool, gpus_per_trial: float | None, cpus_per_trial: int | None) -> None:
    """A --gpus-per-trial / --cpus-per-trial request that no node (alive, or a type the autoscaler may add) can
    hold is refused, naming the largest: Ray places a trial on one node, so it would wait for one forever. More
    than one GPU is refused too: a trial trains on one device (cuda:0 of those Ray grants it), so the others
    would sit reserved and idle. Trials on GPUs run on GPU nodes, so only theirs count; a cluster that shows no
    GPU node yet (--device gpu) cannot be checked."""
    if gpus_per_trial and gpus_per_trial > 1:
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g}: a trial trains on one GPU (cuda:0), so more would "
                           f"sit idle; ask for 1 or a fraction of one")
    on_gpu_nodes = on_gpu and gpus_per_trial != 0
    request = {"CPU": float(cpus_per_trial or 0), "GPU": float(gpus_per_trial or 0) if on_gpu_nodes else 0.0}
    nodes = cluster.named_nodes(gpu_only=on_gpu_nodes)
    if not nodes or any(all(node.get(key, 0.0) >= amount for key, amount in request.items()) for _, node in nodes):
        return
    name, largest = max(nodes, key=lambda named: (named[1].get("CPU", 0.0), named[1].get("GPU", 0.0)))
    flags = " ".join(f"{flag} {value:g}" for flag, value in (("--gpus-per-trial", gpus_per_trial),
                                                             ("--cpus-per-trial", cpus_per_trial)) if value)
    raise ClusterError(f"{flags}: no {'GPU node' if on_gpu_nodes else 'node'} holds such a trial (Ray places a "
                       f"trial on one node); the largest is {name} ({largest.get('CPU', 0.0):g} CPU, "
                       f"{largest.get('GPU', 0.0):g} GPU)")


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


def encoder_training(fixed: dict, args: argparse.Namespace, budget: Budget) -> None:
    """How encoder trials train their word embeddings and with what dropout, into `fixed`: --word-embedding-updates
    and --dropout, else what the sweep file fixed, else the budget's choice, else the trainable's defaults (dense,
    the checkpoint's dropout: not written)."""
    for key in ("word_embedding_updates", "dropout"):
        if getattr(args, key) is not None:
            fixed[key] = None if getattr(args, key) == "checkpoint" else getattr(args, key)
        elif key in budget.encoder_training:
            fixed.setdefault(key, budget.encoder_training[key])


def rungs_in_an_epoch(experiment: Experiment, args: argparse.Namespace, budget: Budget, train_rows: int,
                      largest_batch: int) -> int:
    """How many times an epoch reports (trainables/rungs.py): --rungs-per-epoch, else the budget's. Every epoch
    must report that many times, so an epoch needs as many batches: a flag asking more is refused, the budget's
    default shrinks to fit a small training split. Decoder trials report once per epoch."""
    asked = args.rungs_per_epoch
    if experiment.trainable != "encoder":
        if asked and asked > 1:
            fail(f"--rungs-per-epoch {asked}: {experiment.name}'s decoder trials report once per epoch")
        return 1
    batches = math.ceil(train_rows / largest_batch)
    if asked and asked > batches:
        fail(f"--rungs-per-epoch {asked}: an epoch of {train_rows} train rows at batch size {largest_batch} has "
             f"{batches} batches, too few for {asked} rungs")
    return min(asked or budget.rungs_per_epoch, batches)


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
          f"{plan.num_samples} trials per model ({plan.allocate} allocation), scheduler {plan.scheduler} per study; "
          f"all studies in one Tune experiment, up to {plan.capacity:g} {'GPU' if plan.device == 'gpu' else 'CPU'}s "
          f"of trials at once")
    rungs = int(plan.fixed.get("rungs_per_epoch", 1))
    if rungs > 1:
        subset = rung_subset_rows(len(data.validation), len(data.train), rungs)
        stops = "ASHA may stop a trial at each" if plan.scheduler == "asha" else "no scheduler stops them"
        print(f"  trials report every 1/{rungs} epoch ({stops}): "
              f"inside an epoch on a fixed {subset:,}-row validation subset, at its end on the whole split (which "
              f"alone selects thresholds, epochs and trials)")
    if plan.time_budget_s:
        ends = time.strftime("%H:%M:%S", time.localtime(started_at + plan.time_budget_s))
        split = (f"the search runs until the time left is what {plan.confirm_seeds} confirmation seeds of each "
                 f"model's best configuration so far take (priced from that trial's measured epochs), the seeds "
                 f"the rest" if plan.confirm_seeds else "all of it is search")
        print(f"  time budget {format_duration(plan.time_budget_s)}: trials stop by {ends}; {split} (the trial "
              f"count is a cap); then the analysis runs")
    if plan.confirm_seeds:
        print(f"  then each model's best configuration is trained again with {plan.confirm_seeds} further seeds "
              f"(--confirm-seeds): mean ± sd over seeds, a seed ensemble, and whether the top two differ")
    for model in plan.models:
        note = f", {model['note']}" if model["note"] else ""
        custom = "".join(f" + {value:g} {name}" for name, value in model["custom_resources"].items())
        reason = f" ({model['gpu_reason']})" if model.get("gpu_reason") else ""
        print(f"  model {model['name']}: {model['source']} ({model['params_m']}M params{note}); "
              f"{model['cpus_per_trial']:g} CPU + {model['gpus_per_trial']:g} GPU{custom} per trial, "
              f"up to {model['max_concurrent']} at once{reason}")
        if model.get("copied_from"):
            print(f"    copied from {model['copied_from']} before the first trial: other nodes cannot read this "
                  f"machine's folders, every node reads the experiment dir")
        if model.get("fixed"):
            print(f"    fixed {model['fixed']}; searched {', '.join(model['searched']) or 'nothing'}; "
                  f"{model['num_samples']} trials")
        if model.get("first_trial"):
            print(f"    first trial at {model['first_trial']}")
        for line in warm_start_lines(model, bool(plan.args.get("warm_start"))):
            print(f"    {line}")
    print(f"  W&B {plan.wandb}; results in {plan.sweep_dir}")
    print(f"  Optuna studies (one per model): optuna-dashboard {Path(plan.sweep_dir) / JOURNAL}")


def format_duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
