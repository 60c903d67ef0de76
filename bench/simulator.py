"""A sweep on a GPU cluster, simulated on a virtual clock: the product's own searcher, scheduler and trial sizes
in the loop, Ray Tune's controller and autoscaler modelled, nothing sleeping.

    python -m bench.simulator --gpus 8                                  # sequential vs one experiment, 8 GPUs
    python -m bench.simulator --gpus 64 --autoscale --boot-s 300        # from zero workers
    python -m bench.simulator --gpus 512 --design one-experiment --scale-trials
    python -m bench.simulator --models distilbert minilm qwen3-0.6b qwen2.5-7b --gpus 8
    python -m bench.simulator --validate --time-scale 1                # real Ray (bench/cluster_sim.py) vs this

bench/cluster_sim.py runs real Ray with sleeping trials; its figure moves with its time scale, because Ray's own
launch latency (~0.7-1 s per trial placement here, ../shared/DESIGN.md) is real time that the scale multiplies.
This simulator has no such latency unless told: it is an input, measured from a Ray run (`--validate`).

What runs for real (the objects the sweep itself builds, type-checked: a stand-in is a TypeError):
- `sweeps.searcher.StudySearcher`, given this simulator's virtual clock, asked `suggest(trial_id)` and told
  `on_trial_result` / `on_trial_complete` exactly as Ray's TuneController does (Ray 2.60,
  tune/execution/tune_controller.py `_process_trial_result`, `stop_trial`; tune/search/search_generator.py):
  an epoch's result goes to the scheduler first; CONTINUE passes it on to the searcher, STOP does not, and the
  trial's last result goes to `on_trial_complete`. A trial that ends by itself (fewer epochs than the scheduler's
  max_t) reports its last epoch as usual, then Tune processes its last result once more as done (the function
  trainable's RESULT_DUPLICATE) before `on_trial_complete`. Results carry what Tune's flattened results carry
  here: the metric, training_iteration, time_total_s (since the trial's trainable started), time_this_iter_s,
  done, trial_id and config/<key> for every config value. Its Optuna studies live in a journal in a temp dir.
- `sweeps.tuning.PerStudyASHA` with metric and mode set by `set_search_properties` as Tune does, fed real
  `ray.tune.experiment.Trial` objects (built with stub=True: no Ray needed, ~30 us each): on_trial_add when a
  trial is created, on_trial_result per epoch, on_trial_complete when it ends.
- The product's sizing: each study's CPUs, GPU share, custom resources (small_gpu / large_gpu) and concurrency
  bound from `trial_size_for` (one function, the sweep's sizing) on the simulated cluster's node types, and its
  studies built as sweeps/run.py `studies_of` builds them from plan rows (space from sweeps/plan.py
  `searched_space`, goemotions_raw's search space and the `full` budget).

Tune's controller, modelled (tune_controller.py `step`, `_maybe_update_trial_queue`, `_maybe_add_actors`):
- The searcher is asked for a trial while fewer than the pending-trial limit are pending (created and not yet
  running: waiting for resources, or launching). The limit is TUNE_MAX_PENDING_TRIALS_PG, which
  `sweeps.tuning.fit` sets from the cluster (`pending_limit`: as many trials as the whole cluster holds at the
  smallest share; --pending-limit overrides). Ray asks again every step
  (~0.1 s); StudySearcher's answer changes only when a trial is created or ends (its time budget is not
  simulated), so this simulator asks after every event, which is the same. Searcher.FINISHED ends the asking;
  the experiment ends when no trial is pending or running.
- A pending trial starts on the first alive node with its resources free (CPU, GPU and custom resources),
  preferring a node where an idle worker of the same size waits (reuse_actors=True, as build_tuner sets: Ray
  caches an ended trial's actor and hands it to a pending trial with the same resource request). Starting costs
  the launch latency: `reused_worker_s` on an idle worker, `fresh_worker_s` for a new worker process (placement
  group, process start, imports); a trial still waiting for a new worker when one of its size comes free takes
  that one instead (tune_controller.py `_maybe_reuse_cached_actor`), and the new one is given up. Ray frees a
  cached actor's resources when a trial of another size needs them:
  here idle workers hold no resources, and the oldest are dropped when running trials leave no room for them.
- A started trial spends `load_s` (model load, tokenization), then epochs of `epoch_s` (training at its GPU
  share plus validation, thresholds and checkpoint), reporting after each; the scheduler's STOP ends it.

The cluster: node types like cluster/cluster.yaml's (name, resources, min_workers, max_workers); the head
(CPU: 0 there) runs no trial and is left out. Static (default): every worker is up at t=0. --autoscale: the
min_workers are up at t=0 and, at every event, pending trials that fit neither on an alive node now nor on a
booting node's still unclaimed resources make the autoscaler launch nodes of the first type that holds them,
as many as that demand needs at once (Ray's autoscaler bin-packs pending resource demands onto new nodes; its
~5 s update interval and its upscaling_speed limit are not modelled), up to each type's max_workers; a node is
up `boot_s` after launch. Nodes never stop (cluster.yaml's idle_timeout_minutes is 10; a sweep's lulls are
shorter). The autoscaler only sees pending trials, so the pending-trial limit paces scaling up.

Trial times (simulated seconds; DESIGN.md = ../shared/DESIGN.md):
- Training FLOPs per token: the sweep's own estimate, trainables.models compute_profile(model)
  .train_flops_per_token(tokens per row) (6 per non-embedding parameter, a shared ALBERT layer counted per use,
  plus attention; the same 6 for QLoRA decoders).
- Tokens per epoch: GoEmotions' 43,410 training rows x 19.8 tokens (length-grouped batches, DESIGN.md) for an
  encoder; a decoder's prompt (instruction, text, label names) is taken as 100 tokens per row (assumed).
- A whole GPU trains at 125 TFLOP/s peak (NVIDIA A10 datasheet, bf16 dense; the A10G of cluster.yaml's g5
  nodes is the same chip) x 35% model FLOPs utilization = 43.75 TFLOP/s (--gpu-tflops). A trial holding a
  share of a GPU trains at that share of its throughput (as bench/cluster_sim.py assumes: co-located trials
  split the GPU).
- Per epoch besides training: validation and test inference (5,426 + 5,427 rows, forward only: a third of the
  training FLOPs per token) at the same share, plus 10 s for per-label thresholds, metrics and the checkpoint
  write (assumed; the CPU figure is 27 s for all of it with inference, DESIGN.md).
- Per trial: 20 s to load the model and read the shared tokenization (assumed), plus its bf16 weights read at
  200 MB/s from EFS (the shared HF cache of cluster.yaml; 15 GB for the 7B model).
- Launch latency: a fresh worker 15 s (DESIGN.md: a 6-trial smoke sweep took 128 s with a process per trial and
  37 s with reused workers on 2 cores, (128 - 37) / 6 = 15 s each, torch and transformers imported anew), a reused
  one 1 s (Ray's placement ~0.7-1 s per trial here, DESIGN.md). --validate measures both for its own trials.
- Learning curves: bench/workload.py's `val_macro_f1` (a per-model ceiling, falling as lr and head_lr move
  from the model's best values, with noise seeded by the trial's parameters).

Measured per run (the printed table; `SweepReport`): makespan (t=0, the sweep's start, to the last trial's
end); GPU-slot use = sum of GPU share x running time (trainable start to last epoch end; launch latency not
counted) / (the cluster's GPUs once full x makespan), so booting time counts as idle; for autoscaled runs also
the use of the GPUs that were billed (from each node's launch, booting included, to the end); the packing bound
max(longest trial, total work / GPUs) and the use it allows, and use / that; time until the cluster was full;
the makespan of these very trials scheduled offline, longest first, knowing each one's length (what no online
scheduler can do, since ASHA decides a trial's length as it runs: the gap to it is the tail of late trials ASHA
promotes); GPU-hours, the best score, and GPU-hours until a trial first reached the first design's best score;
trials per model and how many ASHA stopped; simple regret of each study's recommendation (its best COMPLETE
trial by observed value, scored by the curve without noise) against the curve's ceiling (the model's best lr
and head_lr, pos_weight inverse_frequency); the median number of the study's finished trials each of its asks
had seen. `--seeds N` repeats each design and prints medians.

Designs: `one-experiment` (the product: every study in one StudySearcher, one PerStudyASHA), `adaptive` (the
same with --allocate adaptive; `--weaker MODEL:DELTA` makes one model's curve clearly worse), `sequential` (the
old design: one experiment per model, one after another on the same cluster, each with its own searcher and
scheduler, sized and bounded as the product would run that one study; a new Tuner's start-up is not modelled) and
`one-at-a-time` (every study one trial at a time, so TPE sees every earlier result: search quality at equal
trial count).

--validate runs bench/cluster_sim.py's real-Ray one-experiment design (build_tuner and fit, sleeping trials)
on a small workload (2 nodes x 2 GPUs, 2 models x 8 trials, epochs of a few seconds, at --time-scale), measures
Ray's launch latencies from it (a fresh worker: creation to trainable start in the first wave; a reused worker:
its previous trial's last report to the next trial's start), runs this simulator with the same inputs and prints
both makespans and utilizations (bench/cluster_sim.py's own `makespan` and `utilization`, first trial start to
last trial end) and their difference against the 5% tolerance.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from bench.cluster_sim import Timing, TrialRecord, makespan, run_recorded, utilization
from bench.workload import CURVES, DECODERS, TRAIN_ROWS, NodeType, build_studies, resolved, val_macro_f1
from sweeps import cluster as sweep_cluster
from sweeps.experiment import BUDGETS
from sweeps.goemotions_raw import EXPERIMENT
from sweeps.searcher import StudySearcher
from sweeps.studies import JOURNAL, METRIC, MODE, Study
from sweeps.tuning import PerStudyASHA
from sweeps.tuning import pending_limit as sweep_pending_limit
from trainables.models import MODELS, compute_profile

GPU_PEAK_TFLOPS = 125.0  # NVIDIA A10(G), bf16 dense tensor cores
MODEL_FLOPS_UTILIZATION = 0.35
ENCODER_TOKENS_PER_ROW = 19.8  # GoEmotions, length-grouped batches (DESIGN.md)
DECODER_TOKENS_PER_ROW = 100.0  # assumed: instruction + text + label names
EVAL_ROWS = 5_426 + 5_427  # GoEmotions validation + test
EVAL_FIXED_S = 10.0  # thresholds, metrics, checkpoint write per epoch (assumed)
LOAD_FIXED_S = 20.0  # model load + shared tokenization per trial (assumed)
WEIGHTS_READ_MB_PER_S = 200.0  # EFS read of the bf16 weights
FRESH_WORKER_S = 15.0  # DESIGN.md: (128 s - 37 s) / 6 trials
REUSED_WORKER_S = 1.0  # DESIGN.md: ~0.7-1 s per trial placement
# Node types as cluster/cluster.yaml declares them (resources per node).
SMALL_NODE = {"CPU": 8.0, "GPU": 1.0, "small_gpu": 1.0}  # g5.2xlarge, 1x A10G
LARGE_NODE = {"CPU": 8.0, "GPU": 1.0, "large_gpu": 1.0}  # g6e.2xlarge, 1x L40S


class VirtualClock:
    """Simulated seconds since the sweep started; StudySearcher reads it as its wall clock."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class StudyTiming:
    """Simulated seconds a trial of one study spends loading, and per epoch at its GPU share."""
    load_s: float
    epoch_s: float


@dataclass(frozen=True)
class Latency:
    fresh_worker_s: float = FRESH_WORKER_S
    reused_worker_s: float = REUSED_WORKER_S
    # Measured (--validate): each trial's own launch latency in a Ray run, in the order Tune created the trials,
    # which the simulator's same searcher creates in the same order. Ray's latencies vary from trial to trial
    # (workers starting at once contend for the CPUs and come up one after another; a worker handed on after a
    # trial that ran to its end took 1.4 s once where 0.03 s is usual), and a median misses that.
    by_trial: tuple[tuple[float, bool], ...] = ()  # (seconds, whether Ray gave it a reused worker)
    # Measured too: how long after the trial end that made room Tune created each trial (its controller loop and
    # the searcher's ask; 0 for the first wave). Seconds on a loaded machine, nothing on an idle one.
    created_after: tuple[float, ...] = ()

    def of(self, trial_index: int, reused: bool) -> float:
        """The launch latency of the trial created `trial_index`-th (from 0) on a fresh or a reused worker: Ray's
        for that trial where it got the same kind of worker there, else the median of that kind."""
        if trial_index < len(self.by_trial) and self.by_trial[trial_index][1] == reused:
            return self.by_trial[trial_index][0]
        return self.reused_worker_s if reused else self.fresh_worker_s


# ---------------------------------------------------------------------------------------------------------------
# The workload: studies sized by the product, trial times from compute


def study_timing(alias: str, share: float, gpu_tflops: float) -> StudyTiming:
    """Load and per-epoch seconds of a trial of `alias` holding `share` of a GPU of `gpu_tflops` effective."""
    tokens_per_row = DECODER_TOKENS_PER_ROW if alias in DECODERS else ENCODER_TOKENS_PER_ROW
    flops_per_token = compute_profile(resolved(alias)).train_flops_per_token(round(tokens_per_row))
    flops_per_s = gpu_tflops * 1e12 * share
    train_s = flops_per_token * TRAIN_ROWS * tokens_per_row / flops_per_s
    eval_s = flops_per_token / 3 * EVAL_ROWS * tokens_per_row / flops_per_s + EVAL_FIXED_S
    load_s = LOAD_FIXED_S + MODELS[alias].params_m * 2 / WEIGHTS_READ_MB_PER_S
    return StudyTiming(load_s, train_s + eval_s)


def synthetic_optimum(model: str) -> float:
    """The learning curve's ceiling: the model's best lr and head_lr, pos_weight inverse_frequency."""
    return CURVES[model][0]


# ---------------------------------------------------------------------------------------------------------------
# The simulation


@dataclass
class Node:
    node_type: NodeType
    launched_at: float
    up_at: float
    free: dict[str, float]
    idle_workers: list[tuple] = field(default_factory=list)  # resource keys of cached actors, oldest first

    def fits(self, demand: dict[str, float]) -> bool:
        return all(self.free.get(key, 0.0) >= value - 1e-9 for key, value in demand.items())


@dataclass
class TrialRun:
    """One trial as the simulation saw it (seconds on the virtual clock)."""
    trial: Trial
    study: str
    config: dict
    demand: dict[str, float]
    gpus: float
    created_at: float
    noise: random.Random
    index: int  # the order the experiment created it in, from 0
    node: Node | None = None
    reused_worker: bool = False
    started_at: float | None = None  # the trainable's start, after the launch latency
    ended_at: float | None = None
    epochs_run: int = 0
    stopped_by_scheduler: bool = False
    values: list[float] = field(default_factory=list)
    time_this_iter_s: float = 0.0
    launches: int = 0

    @property
    def epochs_planned(self) -> int:
        return int(self.config["epochs"])

    @property
    def running_s(self) -> float:
        return self.ended_at - self.started_at


def demand_of(study: Study) -> dict[str, float]:
    """What Tune's placement group for a trial of this study asks (sweeps.tuning.trial_resources)."""
    return {"CPU": study.cpus, **({"GPU": study.gpus} if study.gpus else {}), **study.custom}


def resource_key(demand: dict[str, float]) -> tuple:
    return tuple(sorted(demand.items()))


def trial_noise(config: dict) -> random.Random:
    """bench/cluster_sim.py simulated_trial's noise: seeded by the trial's parameters."""
    params = json.dumps({key: value for key, value in sorted(config.items()) if key != "study"}, default=str)
    return random.Random(hashlib.sha256(params.encode()).hexdigest())


class ClusterSimulation:
    """A cluster on a virtual clock and the experiments run on it, one after another (`run_experiment`)."""

    def __init__(self, node_types: list[NodeType], timings: dict[str, StudyTiming], latency: Latency,
                 autoscale: bool, boot_s: float, clock: VirtualClock):
        self.node_types = node_types
        self.timings = timings
        self.latency = latency
        self.autoscale = autoscale
        self.boot_s = boot_s
        self.clock = clock
        self.nodes: list[Node] = []
        self.events: list[tuple] = []  # (time, sequence, kind, subject)
        self.sequence = 0
        self.records: list[TrialRun] = []
        self.seen_at_ask: dict[str, list[int]] = {}
        for node_type in node_types:
            for _ in range(node_type.max_workers if not autoscale else node_type.min_workers):
                self.nodes.append(Node(node_type, 0.0, 0.0, dict(node_type.resources)))

    @property
    def full_gpus(self) -> float:
        return sum(t.resources.get("GPU", 0.0) * t.max_workers for t in self.node_types)

    def schedule(self, at: float, kind: str, subject) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at, self.sequence, kind, subject))

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.up_at <= self.clock.now]

    def run_experiment(self, searcher: StudySearcher, scheduler: PerStudyASHA, pending_limit: int) -> None:
        """One Tune experiment from now until no trial is pending or running."""
        if type(searcher) is not StudySearcher:
            raise TypeError(f"the simulator drives sweeps.searcher.StudySearcher, not {type(searcher).__name__}")
        if type(scheduler) is not PerStudyASHA:
            raise TypeError(f"the simulator drives sweeps.tuning.PerStudyASHA, not {type(scheduler).__name__}")
        if searcher.clock is not self.clock:
            raise ValueError("the searcher must read the simulation's virtual clock (StudySearcher(clock=...))")
        Experiment(self, searcher, scheduler, pending_limit).run()


class Experiment:
    """One Tune experiment: Tune's controller loop around the real searcher and scheduler."""

    def __init__(self, simulation: ClusterSimulation, searcher: StudySearcher, scheduler: PerStudyASHA,
                 pending_limit: int):
        self.sim = simulation
        self.searcher = searcher
        self.scheduler = scheduler
        self.pending_limit = pending_limit
        self.pending: list[TrialRun] = []  # created, waiting for resources (FIFO)
        self.launching: dict[int, TrialRun] = {}  # by id: trials whose worker is starting (PENDING to Tune)
        self.running: dict[str, TrialRun] = {}
        self.finished_asking = False
        self.searcher_waits = False  # the last ask answered None: nothing changes that until a trial ends
        self.trial_counter = len(simulation.records)
        self.created: list[TrialRun] = []  # this experiment's trials, in the order they were created
        self.creating: list[TrialRun] = []  # asked for, not yet in Tune's list (Latency.created_after)
        searcher.set_search_properties(METRIC, MODE, {})
        scheduler.set_search_properties(METRIC, MODE)

    def run(self) -> None:
        sim = self.sim
        while True:
            self.step()
            if not (self.creating or self.pending or self.launching or self.running):
                if self.finished_asking:
                    return
                raise RuntimeError("the searcher hands out no trial while none is pending or running")
            if not sim.events:
                raise RuntimeError(f"{len(self.pending)} pending trials fit on no node the cluster may have")
            at, _, kind, subject = heapq.heappop(sim.events)
            sim.clock.now = at
            getattr(self, f"on_{kind}")(subject)

    def step(self) -> None:
        """Tune's controller step: ask the searcher, start pending trials, and the autoscaler's turn."""
        self.ask_searcher()
        self.start_pending()
        if self.sim.autoscale:
            self.scale_up()

    def ask_searcher(self) -> None:
        while (not self.finished_asking and not self.searcher_waits
               and len(self.creating) + len(self.pending) + len(self.launching) < self.pending_limit):
            self.trial_counter += 1
            trial_id = f"{self.trial_counter:06d}"
            config = self.searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                self.finished_asking = True
            elif config is None:
                self.searcher_waits = True
            else:
                self.add_trial(trial_id, config)

    def add_trial(self, trial_id: str, config: dict) -> None:
        sim = self.sim
        study = self.searcher.studies[config["study"]]
        demand = demand_of(study)
        trial = Trial("simulated_trial", config=config, trial_id=trial_id, stub=True,
                      placement_group_factory=PlacementGroupFactory([demand]))
        index = len(self.created)
        delay = sim.latency.created_after[index] if index < len(sim.latency.created_after) else 0.0
        run = TrialRun(trial, study.name, config, demand, study.gpus, sim.clock.now + delay, trial_noise(config),
                       index)
        self.created.append(run)
        sim.records.append(run)
        sim.seen_at_ask.setdefault(study.name, []).append(sum(
            1 for r in sim.records if r.study == study.name and r.ended_at is not None))
        self.scheduler.on_trial_add(None, trial)
        if delay > 0:
            self.creating.append(run)
            sim.schedule(run.created_at, "trial_created", run)
        else:
            self.pending.append(run)

    def on_trial_created(self, run: TrialRun) -> None:
        self.creating.remove(run)
        self.pending.append(run)

    def start_pending(self) -> None:
        for run in list(self.pending):
            node, reused = self.place(run)
            if node is None:
                continue
            self.pending.remove(run)
            for key, value in run.demand.items():
                node.free[key] = node.free.get(key, 0.0) - value
            if reused:
                node.idle_workers.remove(resource_key(run.demand))
            self.drop_idle_workers_without_room(node)
            run.node, run.reused_worker = node, reused
            self.launching[id(run)] = run
            self.launch(run, self.sim.latency.of(run.index, reused))

    def launch(self, run: TrialRun, latency: float) -> None:
        run.launches += 1
        self.sim.schedule(self.sim.clock.now + latency, "trial_start", (run, run.launches))

    def place(self, run: TrialRun) -> tuple[Node | None, bool]:
        """An alive node with an idle worker of this size and room, else the first alive node with room."""
        fitting = [node for node in self.sim.alive() if node.fits(run.demand)]
        key = resource_key(run.demand)
        for node in fitting:
            if key in node.idle_workers:
                return node, True
        return (fitting[0], False) if fitting else (None, False)

    @staticmethod
    def drop_idle_workers_without_room(node: Node) -> None:
        """Ray kills cached actors whose resources a trial of another size needs: keep only those that fit."""
        kept, room = [], dict(node.free)
        for key in reversed(node.idle_workers):  # the newest are kept
            demand = dict(key)
            if all(room.get(k, 0.0) >= v - 1e-9 for k, v in demand.items()):
                kept.append(key)
                for k, v in demand.items():
                    room[k] -= v
        node.idle_workers = list(reversed(kept))

    def scale_up(self) -> None:
        """Launch nodes for pending trials that fit neither on an alive node now nor on a booting node's room."""
        sim = self.sim
        booting_room = [dict(node.free) for node in sim.nodes if node.up_at > sim.clock.now]
        for run in self.pending:
            if any(node.fits(run.demand) for node in sim.alive()):
                continue
            room = next((room for room in booting_room
                         if all(room.get(k, 0.0) >= v - 1e-9 for k, v in run.demand.items())), None)
            if room is None:
                node_type = next((t for t in sim.node_types
                                  if all(t.resources.get(k, 0.0) >= v - 1e-9 for k, v in run.demand.items())
                                  and sum(n.node_type is t for n in sim.nodes) < t.max_workers), None)
                if node_type is None:
                    continue
                sim.nodes.append(Node(node_type, sim.clock.now, sim.clock.now + sim.boot_s,
                                      dict(node_type.resources)))
                sim.schedule(sim.clock.now + sim.boot_s, "node_up", sim.nodes[-1])
                room = dict(node_type.resources)
                booting_room.append(room)
            for key, value in run.demand.items():
                room[key] -= value

    def on_node_up(self, node: Node) -> None:
        pass  # the next step places trials on it

    def on_trial_start(self, launch: tuple[TrialRun, int]) -> None:
        run, number = launch
        if number != run.launches:
            return  # this launch was given up for a worker that came free sooner
        del self.launching[id(run)]
        run.trial.set_status(Trial.RUNNING)
        run.started_at = self.sim.clock.now
        self.running[run.trial.trial_id] = run
        timing = self.sim.timings[run.study]
        run.time_this_iter_s = timing.load_s + timing.epoch_s
        self.sim.schedule(self.sim.clock.now + run.time_this_iter_s, "epoch_end", run)

    def result(self, run: TrialRun, done: bool) -> dict:
        """An epoch's result as Tune flattens it for the scheduler and the searcher."""
        return {METRIC: run.values[-1], "training_iteration": run.epochs_run,
                "time_total_s": self.sim.clock.now - run.started_at, "time_this_iter_s": run.time_this_iter_s,
                "done": done, "trial_id": run.trial.trial_id,
                **{f"config/{key}": value for key, value in run.config.items()}}

    def on_epoch_end(self, run: TrialRun) -> None:
        run.epochs_run += 1
        run.values.append(val_macro_f1(run.config, run.epochs_run, run.noise)
                          + self.sim.curve_shift.get(run.study, 0.0))
        result = self.result(run, done=False)
        decision = self.scheduler.on_trial_result(None, run.trial, result)
        if decision == TrialScheduler.STOP:
            run.stopped_by_scheduler = run.epochs_run < run.epochs_planned
            self.end(run, {**result, "done": True})
            return
        self.searcher.on_trial_result(run.trial.trial_id, result)
        if run.epochs_run < run.epochs_planned:
            run.time_this_iter_s = self.sim.timings[run.study].epoch_s
            self.sim.schedule(self.sim.clock.now + run.time_this_iter_s, "epoch_end", run)
            return
        # The function returned: Tune processes its last result again, as done (RESULT_DUPLICATE).
        last = {**result, "done": True}
        if self.scheduler.on_trial_result(None, run.trial, last) != TrialScheduler.STOP:
            self.searcher.on_trial_result(run.trial.trial_id, last)
        self.end(run, last)

    def end(self, run: TrialRun, last_result: dict) -> None:
        """Tune's stop_trial for a running trial: scheduler, then searcher; its worker waits for the next trial,
        unless the trial reached the scheduler's max_t: ASHA stops it as its function returns, and Ray then keeps
        no worker to reuse (seen in every such trial of the --validate runs: the next trial waited for another
        worker to free up, ~1.3 s, while resources stood free)."""
        self.scheduler.on_trial_complete(None, run.trial, last_result)
        self.searcher.on_trial_complete(run.trial.trial_id, result=last_result)
        run.trial.set_status(Trial.TERMINATED)
        run.ended_at = self.sim.clock.now
        del self.running[run.trial.trial_id]
        for key, value in run.demand.items():
            run.node.free[key] += value
        self.searcher_waits = False
        if run.epochs_run >= self.scheduler.settings["max_t"]:
            return
        waiting = next((other for other in self.launching.values()
                        if not other.reused_worker and other.demand == run.demand), None)
        if waiting is None:
            run.node.idle_workers.append(resource_key(run.demand))
            return
        # Tune hands the ended trial's worker to a trial of the same size still waiting for a new worker, and
        # gives up that new worker (tune_controller.py _maybe_reuse_cached_actor).
        for key, value in waiting.demand.items():
            waiting.node.free[key] += value
            run.node.free[key] -= value
        waiting.node, waiting.reused_worker = run.node, True
        self.launch(waiting, self.sim.latency.of(waiting.index, True))


# ---------------------------------------------------------------------------------------------------------------
# Designs and the report


@dataclass
class SweepReport:
    design: str
    gpus: float
    makespan_s: float
    gpu_use: float  # GPU share x running time / (GPUs once full x makespan)
    billed_use: float  # the same over the GPU-seconds of nodes from launch (booting included) to the end
    packing_bound_s: float
    bound_use: float  # the use a perfect packing of these trials would reach
    offline_s: float  # these very trials scheduled longest first knowing every trial's length (list scheduling)
    gpu_hours: float  # GPU share x running time of every trial
    best_score: float  # the best observed value of any study (what the sweep reports as its winner)
    gpu_hours_to_best: float  # GPU-hours spent (by trial end) until a trial first reached `target` (or best_score)
    full_cluster_at_s: float | None  # when the last node came up, if the cluster ever was full
    trials: dict[str, int]
    stopped: dict[str, int]
    regret: dict[str, float | None]
    seen_per_ask: dict[str, float]
    simulated_in_s: float
    records: list[TrialRun] = field(repr=False, default_factory=list)

    @property
    def use_of_bound(self) -> float:
        return self.gpu_use / self.bound_use


def simulate(design: str, models: list[str], node_types: list[NodeType], *, num_samples: int, max_epochs: int,
             seed: int, latency: Latency = Latency(), autoscale: bool = False, boot_s: float = 300.0,
             limit: int | None = None, allocate: str = "even",
             gpu_tflops: float = GPU_PEAK_TFLOPS * MODEL_FLOPS_UTILIZATION,
             timings: dict[str, StudyTiming] | None = None, max_concurrent: int | None = None,
             curve_shift: dict[str, float] | None = None, target: float | None = None,
             trials: dict[str, int] | None = None) -> SweepReport:
    """Simulates one design of the sweep and measures it. `timings` (per model) replaces the compute model;
    `max_concurrent` the sizing's per-study bound; `trials` a model's trial count; `curve_shift` moves a model's
    learning curve (a clearly weaker model: --weaker); `target` is the score GPU-hours are counted up to
    (default: this run's best)."""
    wall_started = time.perf_counter()
    studies = [replace(study, max_concurrent=max_concurrent or study.max_concurrent)
               for study in build_studies(models, node_types, num_samples, max_epochs, seed, trials)]
    timings = timings or {s.name: study_timing(s.name, s.gpus, gpu_tflops) for s in studies}
    clock = VirtualClock()
    sim = ClusterSimulation(node_types, timings, latency, autoscale, boot_s, clock)
    sim.curve_shift = curve_shift or {}
    with tempfile.TemporaryDirectory(prefix="simulator-") as folder:
        def experiment(studies_of_experiment: list[Study], name: str) -> StudySearcher:
            """One Tune experiment as build_tuner and fit set it up: the searcher knows the cluster's capacity
            (its GPUs once full), and Tune's pending-trial limit follows from it."""
            searcher = StudySearcher(studies_of_experiment, Path(folder) / name / JOURNAL, "tpe", seed,
                                     capacity=sim.full_gpus, allocate=allocate, clock=clock)
            (Path(folder) / name).mkdir()
            sim.run_experiment(searcher, PerStudyASHA(max_t=max_epochs, journal=Path(folder) / name / JOURNAL),
                               limit or sweep_pending_limit(studies_of_experiment, sim.full_gpus))
            return searcher

        if design == "one-experiment":
            searchers = [experiment(studies, "all")]
        elif design == "sequential":
            searchers = [experiment([study], study.name) for study in studies]
        elif design == "one-at-a-time":
            searchers = [experiment([replace(study, max_concurrent=1) for study in studies], "all")]
        else:
            raise ValueError(f"unknown design {design!r}")
        best = {name: true_value_of_best(optuna_study, curve_shift or {}) for searcher in searchers
                for name, optuna_study in searcher.optuna_studies().items()}
    return measure(design, sim, best, time.perf_counter() - wall_started, target)


class NoNoise(random.Random):
    """The learning curve without its noise: a configuration's true value, for simple regret."""

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        return mu


def true_value_of_best(study: optuna.Study, curve_shift: dict[str, float]) -> float | None:
    """Simple regret's recommended point: the study's best COMPLETE trial by its observed (noisy) value, scored by
    the curve without noise at the epochs it ran."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda trial: trial.value)
    config = {"model": study.study_name, "pos_weight": "none", **best.params}
    return val_macro_f1(config, max(best.intermediate_values), NoNoise()) + curve_shift.get(study.study_name, 0.0)


def offline_schedule_s(durations_and_shares: list[tuple[float, float]], gpus: float) -> float:
    """Makespan of list scheduling, longest trial first, knowing each trial's length (which no online searcher
    does: ASHA decides a trial's length as it runs) on a pool of `gpus` (node boundaries ignored)."""
    ends: list[tuple[float, float]] = []
    now, held, makespan = 0.0, 0.0, 0.0
    for duration, share in sorted(durations_and_shares, reverse=True):
        while held + share > gpus + 1e-9:
            now, freed = heapq.heappop(ends)
            held -= freed
        heapq.heappush(ends, (now + duration, share))
        held += share
        makespan = max(makespan, now + duration)
    return makespan


def measure(design: str, sim: ClusterSimulation, best: dict[str, float | None], wall_s: float,
            target: float | None = None) -> SweepReport:
    records = sim.records
    ran = [r for r in records if r.ended_at is not None]
    makespan = max(r.ended_at for r in ran)
    work = sum(r.gpus * r.running_s for r in ran)
    gpus = sim.full_gpus
    # no schedule beats the longest trial, nor the work of the trials one class of GPU can run (large_gpu /
    # small_gpu nodes) spread over that class's GPUs, nor all the work over all the GPUs
    by_class: dict[str, float] = {}
    for r in ran:
        gpu_class = next((key for key in r.demand if key not in ("CPU", "GPU")), "GPU")
        by_class[gpu_class] = by_class.get(gpu_class, 0.0) + r.gpus * r.running_s
    class_gpus = {name: sum(t.resources.get("GPU", 0.0) * t.max_workers for t in sim.node_types
                            if name == "GPU" or name in t.resources) for name in by_class}
    bound = max(max(r.running_s for r in ran), work / gpus,
                *(class_work / class_gpus[name] for name, class_work in by_class.items()))
    billed = sum(node.node_type.resources.get("GPU", 0.0) * (makespan - node.launched_at) for node in sim.nodes)
    full = len(sim.nodes) == sum(t.max_workers for t in sim.node_types)
    best_score = max(max(r.values) for r in ran)
    target = best_score if target is None else target
    reached = min((r.ended_at for r in ran if max(r.values) >= target - 1e-12), default=None)
    models = list(best)
    return SweepReport(
        design=design, gpus=gpus, makespan_s=makespan, gpu_use=work / (gpus * makespan),
        billed_use=work / billed, packing_bound_s=bound, bound_use=work / (gpus * bound),
        offline_s=offline_schedule_s([(r.running_s, r.gpus) for r in ran], gpus),
        gpu_hours=work / 3600, best_score=best_score,
        gpu_hours_to_best=math.nan if reached is None else sum(
            r.gpus * max(0.0, min(r.ended_at, reached) - r.started_at) for r in ran) / 3600,
        full_cluster_at_s=max(node.up_at for node in sim.nodes) if full else None,
        trials={m: sum(r.study == m for r in records) for m in models},
        stopped={m: sum(r.study == m and r.stopped_by_scheduler for r in records) for m in models},
        regret={m: None if best[m] is None else synthetic_optimum(m) + sim.curve_shift.get(m, 0.0) - best[m]
                for m in models},
        seen_per_ask={m: statistics.median(sim.seen_at_ask.get(m, [0])) for m in models},
        simulated_in_s=wall_s, records=records)


TABLE_HEADER = ("| design | seed | GPUs | makespan | GPU use | packing bound (use it allows) | use / bound "
                "| offline longest-first | cluster full at | GPU-h | best | GPU-h to target "
                "| trials (stopped by ASHA) | simple regret | finished trials each ask saw (median) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(report: SweepReport, seed: int) -> str:
    def per_model(values: dict, fmt) -> str:
        return ", ".join(f"{model} {fmt(value)}" for model, value in values.items())

    full = "n/a" if report.full_cluster_at_s is None else f"{report.full_cluster_at_s:,.0f} s"
    trials = ", ".join(f"{m} {n} ({report.stopped[m]})" for m, n in report.trials.items())
    return (f"| {report.design} | {seed} | {report.gpus:g} | {report.makespan_s:,.0f} s | {report.gpu_use:.1%} "
            f"| {report.packing_bound_s:,.0f} s ({report.bound_use:.0%}) | {report.use_of_bound:.2f} "
            f"| {report.offline_s:,.0f} s | {full} | {report.gpu_hours:.2f} | {report.best_score:.4f} "
            f"| {report.gpu_hours_to_best:.2f} | {trials} "
            f"| {per_model(report.regret, lambda v: 'n/a' if v is None else f'{v:+.3f}')} "
            f"| {per_model(report.seen_per_ask, lambda v: f'{v:g}')} |")


def default_node_types(gpus: int, models: list[str]) -> list[NodeType]:
    """cluster.yaml's worker types: `gpus` small-GPU nodes, and a quarter as many large-GPU nodes (at least one)
    when a model above 1B params needs one."""
    types = [NodeType("gpu_small", SMALL_NODE, 0, gpus)]
    if any(MODELS[m].params_m > sweep_cluster.LARGE_MODEL_PARAMS_M for m in models):
        types.append(NodeType("gpu_large", LARGE_NODE, 0, max(1, gpus // 4)))
    return types


def model_value(cast, example: str):
    """An argparse type for MODEL:VALUE (--trials qwen2.5-7b:16, --weaker minilm:-0.08)."""
    def parse(text: str) -> tuple[str, float]:
        model, _, value = text.partition(":")
        try:
            return model, cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL:VALUE, e.g. {example}") from None
    return parse


def parse_node_type(text: str) -> NodeType:
    """name:CPU=8,GPU=1,small_gpu=1:min_workers:max_workers"""
    try:
        name, resources, min_workers, max_workers = text.split(":")
        return NodeType(name, {key: float(value) for key, value in
                               (item.split("=") for item in resources.split(","))},
                        int(min_workers), int(max_workers))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name:CPU=8,GPU=1,small_gpu=1:MIN:MAX") from None


# ---------------------------------------------------------------------------------------------------------------
# Validation against real Ray (bench/cluster_sim.py)


VALIDATION_MODELS = ["distilbert", "minilm"]  # two sizes: 0.25 and 0.125 of a GPU
VALIDATION_NODES = [NodeType("gpu_node", {"CPU": 16.0, "GPU": 2.0, "small_gpu": 2.0}, 2, 2)]
VALIDATION_EPOCH_S = {"distilbert": 4.0, "minilm": 3.0}
VALIDATION_TOLERANCE = 0.05


def measured_latency(ray_records: list, created_at: dict[str, float]) -> Latency:
    """Ray's launch latencies in one run (simulated seconds): each trial's, in the order Tune created them
    (`created_at` is in that order), from when it could start (created, and on a reused worker its previous
    trial ended) to its trainable's start; their medians, for fresh and reused workers; and how long after the
    latest trial end before it Tune created each trial (0 for the first wave)."""
    previous_end: dict[str, float] = {}
    by_worker: dict[int, list] = {}
    for record in sorted(ray_records, key=lambda r: r.started_at):
        by_worker.setdefault(record.worker_pid, []).append(record)
    for runs in by_worker.values():
        for earlier, later in zip(runs, runs[1:]):
            previous_end[later.trial_id] = earlier.ended_at
    by_id = {record.trial_id: record for record in ray_records}
    latency = {trial_id: by_id[trial_id].started_at - max(at, previous_end.get(trial_id, at))
               for trial_id, at in created_at.items() if trial_id in by_id}
    fresh = [value for trial_id, value in latency.items() if trial_id not in previous_end]
    reused = [value for trial_id, value in latency.items() if trial_id in previous_end]
    ends = sorted(record.ended_at for record in ray_records)
    created_after = tuple(at - max((end for end in ends if end <= at), default=at) for at in created_at.values())
    return Latency(statistics.median(fresh), statistics.median(reused) if reused else REUSED_WORKER_S,
                   tuple((latency[trial_id], trial_id in previous_end) if trial_id in latency else (math.nan, None)
                         for trial_id in created_at), created_after)  # (nan, None): it never started


def prediction(latency: Latency, timings: dict[str, StudyTiming], models: list[str], node_types: list[NodeType],
               num_samples: int, max_epochs: int, seed: int, max_concurrent: int | None = None) -> SweepReport:
    """The simulator's one-experiment run of a static cluster with Ray's measured latencies and given times."""
    return simulate("one-experiment", models, node_types, num_samples=num_samples, max_epochs=max_epochs,
                    seed=seed, latency=latency, timings=timings, max_concurrent=max_concurrent)


def cluster_sim_records(report: SweepReport) -> list:
    """The simulated trials as bench/cluster_sim.py records its Ray trials."""
    return [TrialRecord(r.study, r.gpus, r.started_at, r.ended_at, r.epochs_run, r.epochs_planned, False)
            for r in report.records if r.ended_at is not None]


def compare(ray_records: list, report: SweepReport, gpus: float) -> list[str]:
    """Ray's measurement and the simulator's prediction, by bench/cluster_sim.py's own measures."""
    predicted = cluster_sim_records(report)
    lines = []
    for name, measure_of in (("makespan", makespan), ("utilization", lambda rs: utilization(rs, gpus))):
        real, simulated = measure_of(ray_records), measure_of(predicted)
        difference = simulated / real - 1
        verdict = "within" if abs(difference) <= VALIDATION_TOLERANCE else "outside"
        lines.append(f"{name}: Ray {real:,.3f}, simulator {simulated:,.3f} ({difference:+.1%}, {verdict} "
                     f"{VALIDATION_TOLERANCE:.0%})")
    lines.append(f"trials: Ray {len(ray_records)}, simulator {len(predicted)}; stopped early: Ray "
                 f"{sum(r.epochs_run < r.epochs_planned for r in ray_records)}, simulator "
                 f"{sum(r.epochs_run < r.epochs_planned for r in predicted)}")
    return lines


def validate(time_scale: float, num_samples: int, max_epochs: int, seed: int, load_s: float) -> list[str]:
    """bench/cluster_sim.py's real-Ray run of the one-experiment design on the small workload, then the
    simulator with the same inputs and Ray's measured launch latencies."""
    studies = build_studies(VALIDATION_MODELS, VALIDATION_NODES, num_samples, max_epochs, seed)
    timing = Timing(VALIDATION_EPOCH_S, load_s, time_scale)
    node = VALIDATION_NODES[0]
    ray_records, created_at = run_recorded(studies, timing, seed, max_epochs, node.max_workers,
                                           node.resources)
    latency = measured_latency(ray_records, created_at)
    timings = {model: StudyTiming(load_s, VALIDATION_EPOCH_S[model]) for model in VALIDATION_MODELS}
    report = prediction(latency, timings, VALIDATION_MODELS, VALIDATION_NODES, num_samples, max_epochs, seed)
    gpus = node.resources["GPU"] * node.max_workers
    return ([f"time scale {time_scale:g}: Ray's launch latency (simulated s) fresh worker "
             f"{latency.fresh_worker_s:.2f}, reused worker {latency.reused_worker_s:.2f}"]
            + compare(ray_records, report, gpus))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", nargs="+", default=["sequential", "one-experiment"],
                        choices=["sequential", "one-experiment", "adaptive", "one-at-a-time"],
                        help="adaptive: one-experiment with --allocate adaptive (default: sequential one-experiment)")
    parser.add_argument("--gpus", type=int, default=8, help="small-GPU nodes (1 GPU each, cluster.yaml's gpu_small)")
    parser.add_argument("--node-type", type=parse_node_type, action="append",
                        help="name:CPU=8,GPU=1,small_gpu=1:MIN:MAX (repeatable; replaces --gpus)")
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENT.models), choices=sorted(CURVES))
    parser.add_argument("--trials-per-model", type=int, default=BUDGETS["full"].num_samples)
    parser.add_argument("--trials", type=model_value(int, "qwen2.5-7b:16"), action="append",
                        help="MODEL:N gives MODEL N trials (not scaled), e.g. qwen2.5-7b:16; repeatable")
    parser.add_argument("--scale-trials", action="store_true",
                        help="trials per model x (GPUs / 8): the same trials per GPU as 30 on 8 GPUs")
    parser.add_argument("--max-epochs", type=int, default=BUDGETS["full"].max_epochs)
    parser.add_argument("--pending-limit", type=int, help="TUNE_MAX_PENDING_TRIALS_PG (default: as fit sets it)")
    parser.add_argument("--allocate", choices=("even", "adaptive"), default="even", help="as the sweep's flag")
    parser.add_argument("--autoscale", action="store_true", help="start from min_workers (0) and scale up")
    parser.add_argument("--boot-s", type=float, default=300.0, help="seconds from a node's launch to it being up")
    parser.add_argument("--fresh-worker-s", type=float, default=FRESH_WORKER_S)
    parser.add_argument("--reused-worker-s", type=float, default=REUSED_WORKER_S)
    parser.add_argument("--gpu-tflops", type=float, default=GPU_PEAK_TFLOPS * MODEL_FLOPS_UTILIZATION,
                        help="a whole GPU's effective training TFLOP/s")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1, help="runs per design, seeds --seed, --seed + 1, ...")
    parser.add_argument("--weaker", type=model_value(float, "minilm:-0.08"), action="append",
                        help="MODEL:DELTA moves MODEL's learning curve by DELTA (e.g. minilm:-0.08: a clearly weaker "
                             "model, for --design adaptive); repeatable")
    parser.add_argument("--validate", action="store_true",
                        help="real Ray (bench/cluster_sim.py) against the simulator on the small workload")
    parser.add_argument("--time-scale", type=float, nargs="+", default=[1.0, 2.0], help="with --validate")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per study created, per run

    if args.validate:
        for scale in args.time_scale:
            for line in validate(scale, num_samples=8, max_epochs=3, seed=args.seed, load_s=2.0):
                print(line)
        return 0
    node_types = args.node_type or default_node_types(args.gpus, args.models)
    gpus = sum(t.resources.get("GPU", 0.0) * t.max_workers for t in node_types)
    num_samples = args.trials_per_model * max(1, round(gpus / 8)) if args.scale_trials else args.trials_per_model
    latency = Latency(args.fresh_worker_s, args.reused_worker_s)
    trials = dict(args.trials or [])
    studies = build_studies(args.models, node_types, num_samples, args.max_epochs, args.seed, trials)
    shift = dict(args.weaker or [])
    print(f"{gpus:g} GPUs ({', '.join(f'{t.max_workers}x {t.name} {t.resources}' for t in node_types)}), "
          f"{'autoscaled from min_workers, boot ' + format(args.boot_s, 'g') + ' s' if args.autoscale else 'static'};"
          f" {num_samples} trials per model{''.join(f' ({m}: {n})' for m, n in trials.items())}, "
          f"<= {args.max_epochs} epochs, TPE + PerStudyASHA; launch "
          f"{latency.fresh_worker_s:g} s fresh / {latency.reused_worker_s:g} s reused worker"
          + "".join(f"; {model}'s curve {delta:+g}" for model, delta in shift.items()))
    for study in studies:
        timing = study_timing(study.name, study.gpus, args.gpu_tflops)
        print(f"  {study.name}: {study.cpus:g} CPU + {study.gpus:g} GPU {study.custom} per trial, up to "
              f"{study.max_concurrent} at once; load {timing.load_s:.0f} s, epoch {timing.epoch_s:.0f} s")
    print(TABLE_HEADER)
    reports: dict[str, list[SweepReport]] = {}
    target = None  # GPU-hours are counted up to the first design's best score, in every design
    for design in args.design:
        design_name, allocate = (("one-experiment", "adaptive") if design == "adaptive" else (design, args.allocate))
        for seed in range(args.seed, args.seed + args.seeds):
            report = simulate(design_name, args.models, node_types, num_samples=num_samples,
                              max_epochs=args.max_epochs, seed=seed, latency=latency, autoscale=args.autoscale,
                              boot_s=args.boot_s, limit=args.pending_limit, allocate=allocate,
                              gpu_tflops=args.gpu_tflops, curve_shift=shift, trials=trials,
                              target=target[seed] if target else None)
            report.design = design
            reports.setdefault(design, []).append(report)
            print(table_row(report, seed), flush=True)
        target = target or {seed: r.best_score for seed, r in zip(range(args.seed, args.seed + args.seeds),
                                                                   reports[design])}
    print()
    for design, runs in reports.items():
        regrets = [value for run in runs for value in run.regret.values() if value is not None]
        print(f"{design}: median over {len(runs)} seed(s) - use / bound "
              f"{statistics.median(r.use_of_bound for r in runs):.2f}, "
              f"makespan {statistics.median(r.makespan_s for r in runs):,.0f} s, GPU-h "
              f"{statistics.median(r.gpu_hours for r in runs):.2f}, GPU-h to {args.design[0]}'s best "
              f"{statistics.median(r.gpu_hours_to_best for r in runs):.2f}, simple regret "
              f"{statistics.median(regrets):+.4f} (all studies), simulated in "
              f"{sum(r.simulated_in_s for r in runs):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
