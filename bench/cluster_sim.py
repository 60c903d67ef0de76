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
ASHA (grace 1 epoch, reduction factor 2), one CPU and the model's gpu_share() of a GPU per trial in both designs.

- old: one experiment per model, Ray's OptunaSearch and ASHAScheduler, no concurrency bound (as the old code ran
  on GPU: "as many as resources allow"), as the sweep driver did before the one-experiment change.
- new: `build_tuner` with the real StudySearcher, PerStudyASHA and trial_resources, once per --max-concurrent
  bound (per study; default 4, the sweep's default on GPU, and 8).

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeps.experiment import BUDGETS
from sweeps.goemotions_raw import EXPERIMENT
from sweeps.tuning import METRIC, MODE, Study, build_tuner, fit
from trainables.models import MODELS, gpu_share

TRAIN_ROWS = 43_410  # GoEmotions train split, all rows (the `full` budget)
CPU_EXAMPLES_PER_S = 95.6  # a MiniLM trial on this 2-core CPU (../shared/DESIGN.md)
CPU_EVAL_S_PER_EPOCH = 27.0  # validation + test inference + checkpoint per GoEmotions epoch, same CPU
# Non-embedding parameters doing the work per token (millions); training costs ~6 FLOPs per one per token.
COMPUTE_PARAMS_M = {"minilm": 10.6, "mobilebert": 21.5, "distilbert": 42.5, "albert": 85.0}
# Best val macro-F1 each model reaches, at the body and head learning rates where it does (invented).
CURVES = {"distilbert": (0.50, 5e-5, 2e-3), "albert": (0.46, 3e-5, 1e-3), "mobilebert": (0.47, 8e-5, 3e-3),
          "minilm": (0.45, 1.5e-4, 3e-3)}
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


@dataclass
class Run:
    design: str
    experiments: list[list[TrialRecord]]  # the trials of each Tune experiment, in the order they ran
    wall_s: float
    max_concurrent: int | None = None

    @property
    def records(self) -> list[TrialRecord]:
        return [record for experiment in self.experiments for record in experiment]


def epoch_seconds(gpu_speedup: float, shares: dict[str, float]) -> dict[str, float]:
    """Simulated seconds per epoch on full GoEmotions for a trial holding its model's share of a GPU."""
    minilm_cpu_epoch_s = TRAIN_ROWS / CPU_EXAMPLES_PER_S + CPU_EVAL_S_PER_EPOCH
    return {model: minilm_cpu_epoch_s * COMPUTE_PARAMS_M[model] / COMPUTE_PARAMS_M["minilm"]
            / (gpu_speedup * shares[model]) for model in shares}


def val_macro_f1(config: dict, epoch: int, noise: random.Random) -> float:
    best, best_lr, best_head_lr = CURVES[config["model"]]
    ceiling = (best - 0.15 * math.log10(config["lr"] / best_lr) ** 2
               - 0.05 * math.log10(config["head_lr"] / best_head_lr) ** 2
               - (0.0 if config["pos_weight"] == "inverse_frequency" else 0.03))
    rate = 0.8 * (config["lr"] / best_lr) ** 0.3  # a higher learning rate gets near its ceiling sooner
    return min(1.0, max(0.0, ceiling * (1 - math.exp(-rate * epoch)) + noise.gauss(0, 0.01)))


def simulated_trial(config: dict, timing: Timing) -> None:
    """Sleeps through model loading and each epoch; reports the curve and its own wall-clock times."""
    started_at = time.time()
    params = json.dumps({key: value for key, value in sorted(config.items()) if key != "study"}, default=str)
    noise = random.Random(hashlib.sha256(params.encode()).hexdigest())
    time.sleep(timing.trial_start_s / timing.time_scale)
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(timing.epoch_s[config["model"]] / timing.time_scale)
        tune.report({METRIC: val_macro_f1(config, epoch, noise), "started_at": started_at,
                     "reported_at": time.time()})


def trial_records(results, shares: dict[str, float]) -> list[TrialRecord]:
    records = []
    for result in results:
        metrics = result.metrics or {}
        model = result.config["model"]
        records.append(TrialRecord(
            model=model, gpus=shares[model], started_at=metrics.get("started_at", math.nan),
            ended_at=metrics.get("reported_at", math.nan), epochs_run=metrics.get("training_iteration", 0),
            epochs_planned=int(result.config["epochs"]), errored=result.error is not None))
    return records


@contextmanager
def simulated_cluster(nodes: int, gpus_per_node: int, cpus_per_node: int):
    """A fresh Ray cluster of `nodes` nodes on this machine, the driver connected; torn down after."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-cs-", dir="/tmp")  # short: Ray's socket paths live under it
    # As RAY_TMPDIR too: Cluster writes its address file (ray/ray_current_cluster) under that, not temp_dir.
    previous_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmp
    node_args = {"num_cpus": cpus_per_node, "num_gpus": gpus_per_node, "include_dashboard": False,
                 "temp_dir": os.path.join(ray_tmp, "ray")}
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
                                        {"cpu": study.cpus, "gpu": study.gpus})
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


def run_new_design(studies: list[Study], storage: Path, timing: Timing, seed: int, max_epochs: int) -> Run:
    """Every study in one experiment, through the sweep's own build_tuner and fit."""
    bound = studies[0].max_concurrent
    started = time.perf_counter()
    tuner = build_tuner(tune.with_parameters(simulated_trial, timing=timing), studies,
                        storage / f"new-{bound}", search="tpe", seed=seed, scheduler="asha", max_epochs=max_epochs,
                        max_failures=0, time_budget_s=None, callbacks=[], resume=False, restart_errored=False)
    records = trial_records(fit(tuner, studies), {study.name: study.gpus for study in studies})
    return Run(f"new: one experiment, max concurrent {bound}/study", [records], time.perf_counter() - started,
               max_concurrent=bound)


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
    parser.add_argument("--cpus-per-trial", type=int, default=1)
    parser.add_argument("--max-concurrent", type=int, nargs="+", default=[4, 8],
                        help="per-study bounds to run the new design at, one run each (default 4 8; 4 is the "
                             "sweep's default on GPU)")
    parser.add_argument("--num-samples", type=int, help="trials per model (default: the full budget's, 30)")
    parser.add_argument("--gpu-speedup", type=float, default=60.0,
                        help="a whole GPU's training speed over this 2-core CPU (default 60)")
    parser.add_argument("--trial-start-s", type=float, default=30.0, help="simulated model load per trial")
    parser.add_argument("--time-scale", type=float, default=12.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", type=Path, help="keep the experiments in a new dir under this one "
                                                     "(default: a temp dir, removed after)")
    args = parser.parse_args()

    budget = BUDGETS["full"]
    num_samples = args.num_samples or budget.num_samples
    models = list(EXPERIMENT.models)
    shares = {model: gpu_share(MODELS[model].params_m) for model in models}
    timing = Timing(epoch_seconds(args.gpu_speedup, shares), args.trial_start_s, args.time_scale)
    total_gpus = args.nodes * args.gpus_per_node
    # Enough CPUs per node for as many trials as its GPUs hold at the smallest share: GPUs bind, not CPUs.
    cpus_per_node = math.ceil(args.gpus_per_node / min(shares.values())) * args.cpus_per_trial

    def studies(max_concurrent: int) -> list[Study]:
        return [Study(name=model, config={"model": model}, space=EXPERIMENT.search_space(budget),
                      num_samples=num_samples, max_concurrent=max_concurrent, cpus=args.cpus_per_trial,
                      gpus=shares[model]) for model in models]

    print(f"Simulated cluster: {args.nodes} nodes x {args.gpus_per_node} GPUs ({cpus_per_node} logical CPUs "
          f"each); {len(models)} models x {num_samples} trials, <= {budget.max_epochs} epochs, TPE + ASHA; "
          f"{args.cpus_per_trial} CPU per trial; time scale {args.time_scale:g} simulated s per real s")
    print(f"  assumed: a whole GPU trains {args.gpu_speedup:g}x faster than this CPU's 95.6 ex/s, split by share;"
          f" model load {args.trial_start_s:g} s per trial; epoch times on full GoEmotions (simulated):")
    for model in models:
        print(f"    {model}: {COMPUTE_PARAMS_M[model]}M compute params, {shares[model]} GPU per trial, "
              f"{timing.epoch_s[model]:.1f} s per epoch")

    if args.storage:
        args.storage.mkdir(parents=True, exist_ok=True)
    storage = Path(tempfile.mkdtemp(prefix="cluster-sim-", dir=args.storage))  # fresh: no journal to continue
    designs = [(run_old_design, num_samples),  # the old design has no bound: the value is unused
               *((run_new_design, bound) for bound in args.max_concurrent)]
    runs = []
    try:
        for design, max_concurrent in designs:
            with simulated_cluster(args.nodes, args.gpus_per_node, cpus_per_node):
                runs.append(design(studies(max_concurrent), storage, timing, args.seed, budget.max_epochs))
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
