"""Running a sweep: `main(EXPERIMENT)` is what every sweep file calls.

In order: the flags (sweeps/cli.py), the cluster, the plan (sweeps/plan.py, printed; bad input stops there with
nothing written), the experiment dir and its driver lock, on a multi-node cluster the copies of local model folders
every node loads (sweeps/shared_models.py), Ray, each trial's shared inputs, the search (one Tune experiment
holding every model's Optuna study, sweeps/tuning.py), the confirmation seeds
(sweeps/confirmation.py), the test split predicted for the checkpoints the analysis reports (`predict_reported_tests`),
and the best-per-model table (analysis/best_trials.py). A time budget counts from the start of `main`: starting Ray
and loading data are spent too.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution

from analysis.best_trials import ExperimentError, print_or_fail, read_trials, reported_runs, write_best_trials
from sweeps.cli import build_parser, check_name, fail, resumed_args
from sweeps.cluster import (Cluster, ClusterError, connected_cluster, local_cluster, unreachable,
                            private_cluster_warning)
from sweeps.confirmation import CONFIRMATIONS, run_confirmation
from sweeps.console import TrialLines, quiet_console
from sweeps.driver import INTERRUPTED, DriverLock, Interrupts, LockHeld
from sweeps.experiment import BUDGETS, Experiment
from sweeps.plan import Plan, make_plan, print_plan, searched_space
from sweeps.shared_storage import check_shared_storage
from sweeps.searcher import time_left_when_saved
from sweeps.shared_models import copy_models
from sweeps.studies import JOURNAL, open_journal, JournalError, Study
from sweeps.warm_start import enqueued
from sweeps.tuning import build_tuner, close_cut_trials, fit
from trainables import atomic
from trainables.data import DATASETS, EmotionData

REPO_ROOT = Path(__file__).resolve().parent.parent


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
            gpus=model["gpus_per_trial"], custom=model["custom_resources"], first_trial=model["first_trial"],
            warm_start=enqueued(model), epoch_tflop=model["epoch_tflop"]))
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


def sweep_callbacks(plan: Plan, studies: list[Study], started_at: float) -> list:
    """A line per trial event and a progress bar over the sweep's budget; a W&B run per trial if asked."""
    callbacks = [TrialLines(studies, started_at, plan.time_budget_s, metric=plan.fixed["metric"])]
    if plan.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        # W&B writes straight into the experiment dir, so no run is lost to a copy at trial end.
        callbacks.append(WandbLoggerCallback(project=plan.experiment, group=Path(plan.sweep_dir).name,
                                             mode=plan.wandb, dir=plan.sweep_dir))
    return callbacks


def sweep_trainable(experiment: Experiment, data: EmotionData, shared_tokens: dict):
    from ray import tune

    shared = {"shared_tokens": shared_tokens} if experiment.trainable == "encoder" else {}
    return tune.with_parameters(trainable_function(experiment.trainable), data=data, **shared)


def predict_reported_tests(sweep_dir: Path, studies: list[Study], data: EmotionData, shared_tokens: dict) -> None:
    """The test split, predicted once the search and the confirmations are over, for the checkpoints the analysis
    reports (analysis.trials.reported_runs, chosen on validation alone) that have no test predictions yet; trials
    predict validation only. Each is predicted by its trial's own code under its trial's resources
    (trainables/checkpoint_predictions.py), so the probabilities are those the trial would have computed. A CPU study's
    checkpoints are predicted here in the driver, one after another at the trial's thread count: it holds the sweep's
    rows and tokenization and has torch imported already, and no worker process has to start (bit for bit the
    trial's where the driver's CPU is of the trials' kind, as on one machine; on a CPU cluster the head's CPUs stand
    in for the workers'). A GPU study's each go to a Ray task with the trial's resources (its GPU share, CPUs and
    custom resources): the driver may have no GPU, and a GPU computes in other kernels and precisions than a CPU. A
    resumed sweep predicts only what is still missing."""
    try:
        pending = [run for run in reported_runs(read_trials(sweep_dir)) if "test_probs" not in run.arrays]
    except ExperimentError:
        return  # no trial finished an epoch: the analysis says so
    if not pending:
        return
    import ray

    from trainables.checkpoint_predictions import add_test_predictions

    print(f"Predicting the test split for the {len(pending)} checkpoint(s) the analysis reports (each model's best "
          f"trial, its confirmation seeds, the trial ensemble's members)", flush=True)
    by_name = {study.name: study for study in studies}
    checkpoints = []
    for run in pending:
        trial_dir = Path(run.row["trial_dir"])
        config = json.loads((trial_dir / "params.json").read_text())
        checkpoints.append((trial_dir / run.row["checkpoint"], config, by_name[config["study"]]))
    on_gpus = [(checkpoint, config, study) for checkpoint, config, study in checkpoints if study.gpus]
    tasks = []
    if on_gpus:  # started first: they run on the cluster while the driver predicts the CPU studies' checkpoints
        remote, data_ref, tokens_ref = ray.remote(add_test_predictions), ray.put(data), ray.put(shared_tokens)
        tasks = [remote.options(num_cpus=study.cpus, num_gpus=study.gpus, resources=study.custom).remote(
            checkpoint, config, data_ref, study.gpus, study.cpus, tokens_ref) for checkpoint, config, study in on_gpus]
    for checkpoint, config, study in checkpoints:
        if not study.gpus:
            add_test_predictions(checkpoint, config, data, 0.0, study.cpus, shared_tokens)
    ray.get(tasks)


def run_search(plan: Plan, studies: list[Study], trainable, callbacks: list, resume: bool,
               time_left_s: float | None) -> None:
    """Every study of the sweep in one Tune experiment (restored, not re-run, with --resume)."""
    tuner = build_tuner(
        trainable, studies,
        Path(plan.sweep_dir), search=plan.search, seed=plan.seed, scheduler=plan.scheduler,
        max_epochs=plan.max_epochs, max_failures=plan.args["max_failures"], time_budget_s=time_left_s,
        callbacks=callbacks, resume=resume, restart_errored=bool(plan.args.get("restart_errored")),
        confirm_seeds=plan.confirm_seeds, verbose=bool(plan.args.get("verbose")),
        capacity=plan.capacity, allocate=plan.allocate)
    fit(tuner, studies, plan.capacity)


def join_cluster(args: argparse.Namespace) -> Cluster:
    """The cluster the plan is made for: joined now when one is named (--address or RAY_ADDRESS), else this
    machine, whose private Ray starts only once the plan is checked (start_ray)."""
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        if warning := private_cluster_warning(address):
            print(warning, file=sys.stderr)
        return local_cluster()
    if problem := unreachable(address):
        fail(f"--address {address}: cannot join the Ray cluster: {problem}")
    import ray

    try:
        context = ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        fail(f"--address {address}: cannot join the Ray cluster ({str(error).splitlines()[0]})")
    print_dashboard(context)
    try:
        return connected_cluster(address)
    except ClusterError as error:  # the head's autoscaler config: unreadable, or the head did not answer
        fail(f"--address {address}: {error}")


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


def claim_experiment_dir(sweep_dir: Path, resume: bool) -> DriverLock:
    """The experiment dir's driver lock, checked before anything is written: a running driver is named first,
    whether or not this one asked to --resume; an existing dir needs --resume; a resumed journal must be one (a
    sweep killed before its first trial has none yet, and checking it must not make one)."""
    lock = DriverLock(sweep_dir)
    if sweep_dir.exists():
        try:
            lock.acquire(create=False)
        except LockHeld as error:
            fail(str(error))
        if not resume:
            fail(f"--name {sweep_dir.name}: {sweep_dir} already exists; pass --resume to continue it or a new --name")
    if resume and (sweep_dir / JOURNAL).is_file():
        try:
            open_journal(sweep_dir / JOURNAL)
        except JournalError as error:
            fail(str(error))
    return lock


def main(experiment: Experiment, argv: list[str] | None = None) -> int:
    started_at = time.time()  # a time budget counts from here: starting Ray and loading data are spent too
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(experiment).parse_args(argv)
    check_name(args)
    if args.resume:
        args = resumed_args(experiment, args, argv)
    if args.metric == "jaccard" and not DATASETS[experiment.dataset].multi_label:
        fail(f"--metric jaccard: {experiment.dataset} is single-label (one emotion per text), where Jaccard is "
             f"accuracy; use macro_f1 or micro_f1")
    if args.warm_start and args.search == "grid":
        fail("--warm-start: --search grid tries every point of its grid in its own order, so it has no first trials "
             "to seed; warm-start a --search tpe or random sweep")
    if args.wandb == "online" and not os.environ.get("WANDB_API_KEY"):
        fail("--wandb online needs WANDB_API_KEY in the environment (or use --wandb offline)")

    cluster = join_cluster(args)
    plan, data = make_plan(experiment, args, cluster)
    sweep_dir = Path(plan.sweep_dir)
    lock = claim_experiment_dir(sweep_dir, args.resume)
    if args.resume and plan.time_budget_s and (left := time_left_when_saved(sweep_dir)) is not None:
        # the budget goes on where the killed or stopped run left it, as Tune's own restored time budget does
        started_at = time.time() - (plan.time_budget_s - max(0.0, left))
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
    copy_models(plan.models)  # the model folders trials on other nodes load (multi-node clusters only)
    resume = ["python", sys.argv[0], "--resume", "--name", sweep_dir.name, "--storage", args.storage]
    interrupts = Interrupts(resume + (["--address", args.address] if args.address else []))
    interrupts.install()
    if not args.resume:
        atomic.write_text(sweep_dir / "sweep.json", json.dumps({**asdict(plan), "versions": versions()}, indent=2))
    if args.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    start_ray(args)
    quiet_console(args.verbose)  # after Ray's own logging setup, which ray.init does
    time_left_s = plan.time_budget_s and max(1.0, started_at + plan.time_budget_s - time.time())
    interrupts.tuning = True
    studies = studies_of(plan, experiment)
    # tokenized once for the search, the confirmations and the test predictions
    shared_tokens = shared_tokenization(studies, data) if experiment.trainable == "encoder" else {}
    trainable = sweep_trainable(experiment, data, shared_tokens)
    # Tune appends its own default callbacks to the list it is given: each phase gets a list of its own
    callbacks = sweep_callbacks(plan, studies, started_at)
    confirming = args.resume and (sweep_dir / CONFIRMATIONS).is_file()  # the search had ended
    if not confirming:
        run_search(plan, studies, trainable, list(callbacks), args.resume, time_left_s)
        if not interrupts.interrupted:  # the search is over: a trial still RUNNING in the journal was cut short
            close_cut_trials(sweep_dir / JOURNAL)
    if plan.confirm_seeds and not interrupts.interrupted:
        time_left_s = plan.time_budget_s and started_at + plan.time_budget_s - time.time()
        if time_left_s is not None and time_left_s <= 0:
            print("warning: no time left to confirm the winners over seeds (--confirm-seeds); the analysis reports "
                  "single runs", file=sys.stderr)
        else:
            run_confirmation(sweep_dir, plan.confirm_seeds, studies, trainable, resume=confirming,
                             time_left_s=time_left_s, max_failures=plan.args["max_failures"], callbacks=list(callbacks),
                             verbose=bool(args.verbose))
    interrupts.tuning = False
    if interrupts.interrupted:  # Tune stopped and saved the experiment; finished trials are kept
        print(f"interrupted; resume with: {interrupts.resume_command}", file=sys.stderr)
        return INTERRUPTED

    def predict_and_write() -> str:
        predict_reported_tests(sweep_dir, studies, data, shared_tokens)
        return write_best_trials(sweep_dir)

    return print_or_fail(predict_and_write)
