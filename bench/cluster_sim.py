"""The GoEmotions sweep on a simulated GPU cluster: the old design (one Tune experiment per model, one after
another) against the new one (every model's study in one Tune experiment, sweeps/tuning.py).

    python -m bench.cluster_sim                                   # 2 nodes x 4 GPUs, ~15 minutes
    python -m bench.cluster_sim --nodes 1 --gpus-per-node 8 --max-concurrent 4 8 30
    python -m bench.cluster_sim --num-samples 2 --time-scale 400   # smoke: about a minute

The cluster is Ray's own (`ray.cluster_utils.Cluster`): --nodes nodes on this machine, each declaring
--gpus-per-node logical GPUs and enough logical CPUs that GPUs, not CPUs, bound how many trials run. Trials
never train: they sleep for simulated times and report a synthetic learning curve, so no dataset or model files
are needed. The sweep is goemotions_raw's: models distilbert, albert, mobilebert, minilm (in that order for the
old design), the real search space and trial count of the `full` budget (<= 5 epochs, 30 trials per model), TPE,
ASHA (grace 1 epoch, reduction factor 2), each trial sized by the sweep's own sizing (sweeps/plan.py size_trials)
in both designs; the new design is told the cluster's GPUs as a sweep's plan tells them.

- old: one experiment per model, Ray's OptunaSearch and ASHAScheduler, no concurrency bound (as the old code ran
  on GPU: "as many as resources allow"), as the sweep driver did before the one-experiment change.
- new: `build_tuner` and `fit` with the real StudySearcher, PerStudyASHA and trial_resources, once per
  --max-concurrent bound (default: the sweep's own, as many as the cluster holds).

bench/simulator.py simulates the same on a virtual clock, at any cluster size; this script, with real Ray, is
what it is validated against (`python -m bench.simulator --validate`).

Assumed (simulated seconds; the printout repeats them):
- A MiniLM epoch on this 2-core CPU is 43,410 rows / 95.6 examples/s + 27 s of validation, test inference and
  checkpoint (../shared/DESIGN.md). A whole GPU runs --gpu-speedup (default 60) times faster, and its throughput
  is split by share: a trial holding 0.25 of a GPU runs a quarter as fast as one holding all of it.
- Other models scale by training FLOPs per token, ~6 x non-embedding parameters: MiniLM-L6-H384 10.6M,
  MobileBERT 21.5M (its published 5.7 GFLOPs are 0.25 of BERT-base's 22.5, and BERT-base has 85M), DistilBERT
  42.5M, ALBERT-base 85M (12 layers sharing one layer's weights still compute 12 layers).
- Every trial first spends --trial-start-s (default 30) loading the model and tokenizing the data.
- val_macro_f1 rises with epochs toward a ceiling per model that falls as lr and head_lr move from the model's
  best values (invented, plausible for GoEmotions' 28 labels), higher with pos_weight=inverse_frequency, with
  noise seeded by the trial's parameters. batch_size, weight_decay and warmup_ratio do not matter.
- --time-scale simulated seconds pass per real second. Ray's own latency (placing trials, starting their
  workers) is real time on this 2-core machine and is scaled up with everything else, so a smaller scale is
  more faithful. It weighs on the old design most: Tune keeps one trial pending at a time for OptunaSearch, so
  trials start one after another, ~1 s apart here, which the scale turns into ~scale seconds each.

Measured from the trials themselves (each reports its start and the end of each epoch): makespan (first trial
start to last trial end), GPU-slot utilization (sum of GPU share x busy time / (GPUs x makespan)), trials per
model and how many ASHA stopped. Prints one markdown table (a row per run), the targets (utilization >= 90%,
one-experiment makespan <= 0.6 x old) as met or missed, and for a missed target what held the GPUs back.
Experiments go under a temp dir, removed afterwards (kept under --storage); each design gets a fresh Ray cluster
under a private temp dir.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from bench.workload import TRAIN_ROWS, NodeType, build_studies, val_macro_f1
from sweeps.experiment import BUDGETS
from sweeps.goemotions_raw import EXPERIMENT
from sweeps.studies import METRIC, MODE, RUNG_METRIC, Study
from sweeps.tuning import build_tuner, fit

CPU_EXAMPLES_PER_S = 95.6  # a MiniLM trial on this 2-core CPU (../shared/DESIGN.md)
CPU_EVAL_S_PER_EPOCH = 27.0  # validation + test inference + checkpoint per GoEmotions epoch, same CPU
# Non-embedding parameters doing the work per token (millions); training costs ~6 FLOPs per one per token.
COMPUTE_PARAMS_M = {"minilm": 10.6, "mobilebert": 21.5, "distilbert": 42.5, "albert": 85.0}
UTILIZATION_TARGET = 0.90
MAKESPAN_TARGET = 0.6  # one-experiment makespan / old makespan


@dataclass(frozen=True)
class Timing:
    """What a simulated trial sleeps, in simulated seconds, and how fast simulated time runs."""
    epoch_s: dict[str, float]
    trial_start_s: float
    time_scale: float


@dataclass(frozen=True)
class TrialRecord:
    model: str
    gpus: float
    started_at: float  # wall clock, seconds
    ended_at: float  # end of the last reported epoch
    epochs_run: int
    epochs_planned: int
    errored: bool
    trial_id: str = ""
    worker_pid: int = 0  # the Ray worker process the trial ran in
    worker_trial: int = 0  # 1: the worker's first trial (a fresh process), 2+: a reused worker


@dataclass
class Run:
    design: str
    experiments: list[list[TrialRecord]]  # the trials of each Tune experiment, in the order they ran
    wall_s: float
    max_concurrent: int | None = None
    created_at: dict[str, float] = field(default_factory=dict)  # trial id -> when Tune created it (new design)

    @property
    def records(self) -> list[TrialRecord]:
        return [record for experiment in self.experiments for record in experiment]


def epoch_seconds(gpu_speedup: float, shares: dict[str, float]) -> dict[str, float]:
    """Simulated seconds per epoch on full GoEmotions for a trial holding its model's share of a GPU."""
    minilm_cpu_epoch_s = TRAIN_ROWS / CPU_EXAMPLES_PER_S + CPU_EVAL_S_PER_EPOCH
    return {model: minilm_cpu_epoch_s * COMPUTE_PARAMS_M[model] / COMPUTE_PARAMS_M["minilm"]
            / (gpu_speedup * shares[model]) for model in shares}


TRIALS_IN_THIS_WORKER = Counter()  # per worker process: how many trials it has started


def simulated_trial(config: dict, timing: Timing) -> None:
    """Sleeps through model loading and each epoch; reports the curve, its own wall-clock times and its worker."""
    started_at = time.time()
    TRIALS_IN_THIS_WORKER["trials"] += 1
    worker = {"worker_pid": os.getpid(), "worker_trial": TRIALS_IN_THIS_WORKER["trials"]}
    params = json.dumps({key: value for key, value in sorted(config.items()) if key != "study"}, default=str)
    noise = random.Random(hashlib.sha256(params.encode()).hexdigest())
    time.sleep(timing.trial_start_s / timing.time_scale)
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(timing.epoch_s[config["model"]] / timing.time_scale)
        score = val_macro_f1(config, epoch, noise)
        tune.report({METRIC: score, RUNG_METRIC: score, "started_at": started_at, "reported_at": time.time(),
                     **worker})


def trial_records(results, shares: dict[str, float]) -> list[TrialRecord]:
    records = []
    for result in results:
        metrics = result.metrics or {}
        model = result.config["model"]
        records.append(TrialRecord(
            model=model, gpus=shares[model], started_at=metrics.get("started_at", math.nan),
            ended_at=metrics.get("reported_at", math.nan), epochs_run=metrics.get("training_iteration", 0),
            epochs_planned=int(result.config["epochs"]), errored=result.error is not None,
            trial_id=metrics.get("trial_id", ""), worker_pid=metrics.get("worker_pid", 0),
            worker_trial=metrics.get("worker_trial", 0)))
    return records


class TrialCreation(tune.Callback):
    """When each trial appeared in Tune's trial list (the end of the controller step that asked the searcher
    for it), wall clock."""

    def __init__(self):
        self.created_at: dict[str, float] = {}

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.time()
        for trial in trials:
            self.created_at.setdefault(trial.trial_id, now)


@contextmanager
def simulated_cluster(nodes: int, node_resources: dict[str, float]):
    """A fresh Ray cluster of `nodes` nodes on this machine, the driver connected; torn down after."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-cs-", dir="/tmp")  # short: Ray's socket paths live under it
    # As RAY_TMPDIR too: Cluster writes its address file (ray/ray_current_cluster) under that, not temp_dir.
    previous_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmp
    custom = {key: value for key, value in node_resources.items() if key not in ("CPU", "GPU")}
    node_args = {"num_cpus": int(node_resources["CPU"]), "num_gpus": int(node_resources.get("GPU", 0)),
                 "resources": custom, "include_dashboard": False, "temp_dir": os.path.join(ray_tmp, "ray")}
    cluster = Cluster()
    try:
        for _ in range(nodes):
            cluster.add_node(**node_args)  # the first is the head
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        if previous_tmpdir is None:
            os.environ.pop("RAY_TMPDIR")
        else:
            os.environ["RAY_TMPDIR"] = previous_tmpdir


def run_old_design(studies: list[Study], storage: Path, timing: Timing, seed: int, max_epochs: int) -> Run:
    """One experiment per model, one after another: OptunaSearch + ASHAScheduler, no concurrency bound."""
    experiments, started = [], time.perf_counter()
    for study in studies:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, study.num_samples // 2)))
        trainable = tune.with_resources(tune.with_parameters(simulated_trial, timing=timing),
                                        PlacementGroupFactory([{"CPU": study.cpus, "GPU": study.gpus,
                                                                                **study.custom}]))
        tuner = tune.Tuner(
            trainable, param_space=study.config,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode=MODE,
                search_alg=OptunaSearch(space=study.space, metric=METRIC, mode=MODE, sampler=sampler),
                scheduler=ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2),
                num_samples=study.num_samples, trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
            run_config=tune.RunConfig(name=study.name, storage_path=str(storage / "old"), verbose=1))
        experiments.append(trial_records(tuner.fit(), {study.name: study.gpus}))
    return Run("old: one experiment per model", experiments, time.perf_counter() - started)


def run_new_design(studies: list[Study], storage: Path, timing: Timing, seed: int, max_epochs: int,
                   capacity: float | None = None) -> Run:
    """Every study in one experiment, through the sweep's own build_tuner and fit, told the cluster's GPUs as a
    sweep's plan tells them (`capacity`)."""
    bound = studies[0].max_concurrent
    started = time.perf_counter()
    creation = TrialCreation()
    tuner = build_tuner(tune.with_parameters(simulated_trial, timing=timing), studies,
                        storage / f"new-{bound}", search="tpe", seed=seed, scheduler="asha", max_epochs=max_epochs,
                        max_failures=0, time_budget_s=None, callbacks=[creation], resume=False,
                        restart_errored=False, capacity=capacity)
    records = trial_records(fit(tuner, studies, capacity), {study.name: study.gpus for study in studies})
    return Run(f"new: one experiment, max concurrent {bound}/study", [records], time.perf_counter() - started,
               max_concurrent=bound, created_at=creation.created_at)


def in_simulated_seconds(run: Run, scale: float) -> tuple[list[TrialRecord], dict[str, float]]:
    """A run's trials and creation times on the simulated clock (real seconds x the time scale)."""
    records = [replace(r, started_at=r.started_at * scale, ended_at=r.ended_at * scale)
               for r in run.records if r.epochs_run]
    return records, {trial_id: at * scale for trial_id, at in run.created_at.items()}


def run_recorded(studies: list[Study], timing: Timing, seed: int, max_epochs: int, nodes: int,
                 node_resources: dict[str, float]) -> tuple[list[TrialRecord], dict[str, float]]:
    """The one-experiment design on a fresh Ray cluster of `nodes` alike nodes: its trials and when Tune created
    each, in simulated seconds (what bench/simulator.py --validate compares with)."""
    storage = Path(tempfile.mkdtemp(prefix="cluster-sim-"))
    try:
        with simulated_cluster(nodes, node_resources):
            run = run_new_design(studies, storage, timing, seed, max_epochs, nodes * node_resources.get("GPU", 0.0))
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return in_simulated_seconds(run, timing.time_scale)


def span(records: list[TrialRecord]) -> tuple[float, float]:
    """First trial start to last epoch end (trials that never reported an epoch have no times)."""
    timed = [r for r in records if r.epochs_run]
    return min(r.started_at for r in timed), max(r.ended_at for r in timed)


def makespan(records: list[TrialRecord]) -> float:
    start, end = span(records)
    return end - start


def gpus_busy(records: list[TrialRecord], start: float, end: float) -> float:
    """GPU-seconds (wall clock) the trials held inside [start, end]."""
    return sum(r.gpus * max(0.0, min(r.ended_at, end) - max(r.started_at, start)) for r in records if r.epochs_run)


def utilization(records: list[TrialRecord], total_gpus: int) -> float:
    start, end = span(records)
    return gpus_busy(records, start, end) / (total_gpus * (end - start))


def packing_bound(records: list[TrialRecord], total_gpus: int, scale: float) -> str:
    """The shortest makespan, and so the highest utilization, these very trials could have had: no schedule
    beats their total work spread over every GPU, nor their longest trial."""
    start, end = span(records)
    work = gpus_busy(records, start, end)
    longest = max(r.ended_at - r.started_at for r in records if r.epochs_run)
    shortest = max(longest, work / total_gpus)
    return (f"packed perfectly, these trials ({work * scale:,.0f} GPU-s of work, the longest one "
            f"{longest * scale:,.0f} s) need at least {shortest * scale:,.0f} s, so at most "
            f"{work / (total_gpus * shortest):.0%} utilization")


def gpus_by_tenth(records: list[TrialRecord]) -> str:
    """GPUs held on average in each tenth of the makespan: where the idle time is."""
    start, end = span(records)
    tenth = (end - start) / 10
    return " ".join(f"{gpus_busy(records, start + i * tenth, start + (i + 1) * tenth) / tenth:.1f}" for i in range(10))


def launch_gap(run: Run) -> float:
    """Median real seconds between trial starts while GPUs were still free (each experiment's first wave, before
    any of its trials ended): Ray's own pace of placing trials and starting their workers."""
    gaps = []
    for experiment in run.experiments:
        first_end = min(r.ended_at for r in experiment if r.epochs_run)
        starts = sorted(r.started_at for r in experiment if r.epochs_run and r.started_at < first_end)
        gaps += [later - earlier for earlier, later in zip(starts, starts[1:])]
    return statistics.median(gaps) if gaps else math.nan


def per_model(records: list[TrialRecord], models: list[str], count) -> str:
    return ", ".join(f"{model} {sum(1 for r in records if r.model == model and count(r))}" for model in models)


def stopped_early(record: TrialRecord) -> bool:
    return not record.errored and record.epochs_run < record.epochs_planned


def why_missed(run: Run, models: list[str], shares: dict[str, float], num_samples: int, total_gpus: int,
               scale: float) -> list[str]:
    """What kept GPUs idle in a one-experiment run: the per-study bound, and the tail where one study ran alone."""
    reasons = []
    start, end = span(run.records)
    per_study = min(run.max_concurrent, num_samples)
    cap = sum(per_study * shares[model] for model in models)
    if cap < total_gpus:
        reasons.append(f"{per_study} trials at once per study (bound {run.max_concurrent}, {num_samples} trials "
                       f"each) let the {len(models)} studies hold at most {cap:g} of {total_gpus} GPUs")
    finished = sorted((max(r.ended_at for r in run.records if r.model == model and r.epochs_run), model)
                      for model in models)
    (second_last_end, second_last), (_, last) = finished[-2], finished[-1]
    tail = end - second_last_end
    tail_gpus = gpus_busy(run.records, second_last_end, end) / tail if tail > 0 else 0.0
    reasons.append(f"tail: after {second_last} finished at {(second_last_end - start) * scale:,.0f} s, {last} ran "
                   f"alone for {tail * scale:,.0f} s ({tail / (end - start):.0%} of the makespan) on "
                   f"{tail_gpus:.2f} of {total_gpus} GPUs on average")
    reasons.append("studies finished at " + ", ".join(f"{model} {(model_end - start) * scale:,.0f} s"
                                                      for model_end, model in finished))
    reasons.append(packing_bound(run.records, total_gpus, scale))
    return reasons


def old_timeline(run: Run, total_gpus: int, scale: float) -> str:
    """Each experiment's span and utilization, and the time between experiments (a new Tuner starting)."""
    start = span(run.records)[0]
    spans = [(experiment[0].model, *span(experiment), utilization(experiment, total_gpus))
             for experiment in run.experiments]
    between = sum(later[1] - earlier[2] for earlier, later in zip(spans, spans[1:]))
    return ("experiments ran " + ", ".join(f"{model} {(first - start) * scale:,.0f}-{(last - start) * scale:,.0f} s"
                                           f" at {used:.0%}" for model, first, last, used in spans)
            + f"; {between * scale:,.0f} s between experiments (Ray starting the next Tuner, scaled)")


def report(runs: list[Run], models: list[str], shares: dict[str, float], num_samples: int, total_gpus: int,
           scale: float) -> None:
    old_makespan = makespan(runs[0].records)
    print("| design | makespan (sim) | vs old | GPU utilization | trials per model | stopped early by ASHA "
          "| errored | trial launch gap | real wall |\n|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        simulated_s = makespan(run.records) * scale
        gap = launch_gap(run)
        gap_text = ("n/a: one trial per first wave" if math.isnan(gap)
                    else f"{gap:.2f} s real = {gap * scale:.0f} s sim")
        print(f"| {run.design} | {simulated_s:,.0f} s ({simulated_s / 3600:.2f} h) "
              f"| {makespan(run.records) / old_makespan:.2f}x | {utilization(run.records, total_gpus):.1%} "
              f"| {per_model(run.records, models, lambda r: True)} "
              f"| {per_model(run.records, models, stopped_early)} "
              f"| {sum(r.errored for r in run.records)} | {gap_text} | {run.wall_s:.0f} s |")
    print("(trial launch gap: median real time between trial starts while GPUs were free, Ray's own pace, scaled "
          "up like everything else)\n")
    for run in runs:
        print(f"{run.design}: GPUs held, by tenth of the makespan: {gpus_by_tenth(run.records)}")
    print(f"{runs[0].design}: {old_timeline(runs[0], total_gpus, scale)}; "
          f"{packing_bound(runs[0].records, total_gpus, scale)}")
    for run in runs[1:]:
        used = utilization(run.records, total_gpus)
        ratio = makespan(run.records) / old_makespan
        print(f"{run.design}: utilization {used:.1%} >= {UTILIZATION_TARGET:.0%}: "
              f"{'met' if used >= UTILIZATION_TARGET else 'missed'}; makespan {ratio:.2f}x old <= "
              f"{MAKESPAN_TARGET}x: {'met' if ratio <= MAKESPAN_TARGET else 'missed'}")
        if used < UTILIZATION_TARGET or ratio > MAKESPAN_TARGET:
            for reason in why_missed(run, models, shares, num_samples, total_gpus, scale):
                print(f"  - {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENT.models), choices=sorted(COMPUTE_PARAMS_M))
    parser.add_argument("--max-concurrent", type=int, nargs="+",
                        help="per-study bounds to run the new design at, one run each (default: the sweep's own "
                             "sizing, as many as the cluster holds)")
    parser.add_argument("--num-samples", type=int, help="trials per model (default: the full budget's, 30)")
    parser.add_argument("--max-epochs", type=int, help="the most epochs a trial may train (default: the full "
                                                       "budget's, 5)")
    parser.add_argument("--gpu-speedup", type=float, default=60.0,
                        help="a whole GPU's training speed over this 2-core CPU (default 60)")
    parser.add_argument("--epoch-s", type=float,
                        help="every model's epoch, simulated seconds at its share (instead of --gpu-speedup's)")
    parser.add_argument("--trial-start-s", type=float, default=30.0, help="simulated model load per trial")
    parser.add_argument("--time-scale", type=float, default=12.0, help="simulated seconds per real second")
    parser.add_argument("--designs", nargs="+", default=["old", "new"], choices=["old", "new"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", type=Path, help="keep the experiments in a new dir under this one "
                                                     "(default: a temp dir, removed after)")
    args = parser.parse_args()
    budget = BUDGETS["full"]
    num_samples = args.num_samples or budget.num_samples
    max_epochs = args.max_epochs or budget.max_epochs
    models = args.models
    # cluster.yaml's GPU nodes: 8 CPUs and one small_gpu per GPU; trials sized by the sweep's own sizing on them.
    node_resources = {"CPU": 8.0 * args.gpus_per_node, "GPU": float(args.gpus_per_node),
                      "small_gpu": float(args.gpus_per_node)}
    node_types = [NodeType("gpu_node", node_resources, args.nodes, args.nodes)]
    sized = build_studies(models, node_types, num_samples, max_epochs, args.seed)
    shares = {study.name: study.gpus for study in sized}
    epoch_s = ({model: args.epoch_s for model in models} if args.epoch_s
               else epoch_seconds(args.gpu_speedup, shares))
    timing = Timing(epoch_s, args.trial_start_s, args.time_scale)
    total_gpus = args.nodes * args.gpus_per_node

    print(f"Simulated cluster: {args.nodes} nodes x {node_resources}; {len(models)} models x {num_samples} trials, "
          f"<= {max_epochs} epochs, TPE + ASHA; time scale {args.time_scale:g} simulated s per real s")
    print(f"  model load {args.trial_start_s:g} s per trial; epoch times (simulated)"
          + ("" if args.epoch_s else f", a whole GPU {args.gpu_speedup:g}x this CPU's 95.6 ex/s, split by share")
          + ":")
    for study in sized:
        print(f"    {study.name}: {study.cpus:g} CPU + {study.gpus:g} GPU + {study.custom} per trial, up to "
              f"{study.max_concurrent} at once, {timing.epoch_s[study.name]:.1f} s per epoch")

    if args.storage:
        args.storage.mkdir(parents=True, exist_ok=True)
    storage = Path(tempfile.mkdtemp(prefix="cluster-sim-", dir=args.storage))  # fresh: no journal to continue
    bounds = args.max_concurrent or [None]
    designs = ([(run_old_design, None)] if "old" in args.designs else []) + (
        [(run_new_design, bound) for bound in bounds] if "new" in args.designs else [])
    runs = []
    try:
        for design, bound in designs:
            studies = [replace(study, max_concurrent=bound or study.max_concurrent) for study in sized]
            with simulated_cluster(args.nodes, node_resources):
                runs.append(design(studies, storage, timing, args.seed, max_epochs) if design is run_old_design
                            else design(studies, storage, timing, args.seed, max_epochs, total_gpus))
    finally:
        if args.storage is None:
            shutil.rmtree(storage, ignore_errors=True)
        else:
            print(f"experiments kept in {storage}")
    print()
    report(runs, models, shares, num_samples, total_gpus, args.time_scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
