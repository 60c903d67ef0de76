"""An experiment dir as a sweep leaves it when it is stopped, built in this process without Ray, for the checks
`--resume` makes before anything starts: the sweep.json `main` writes (the plan of these flags), the Optuna journal
the searcher writes (one trial finished, one cut short after its first epoch) and Tune's tuner.pkl."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sweeps.cli import build_parser
from sweeps.cluster import local_cluster
from sweeps.experiment import Experiment
from sweeps.plan import make_plan
from sweeps.run import studies_of, versions
from sweeps.searcher import StudySearcher
from sweeps.studies import JOURNAL, METRIC
from sweeps.tuning import build_tuner


def trainable(config: dict) -> None:
    """Never called: Tune's tuner.pkl names the trainable, a restore is given it again."""


def epoch_result(config: dict, epoch: int) -> dict:
    return {"training_iteration": epoch, METRIC: 0.1 * epoch, **{f"config/{k}": v for k, v in config.items()}}


def write_experiment(experiment: Experiment, argv: list[str]) -> Path:
    """The experiment dir of `python sweeps/<experiment>.py ARGV` stopped after its first two trials."""
    args = build_parser(experiment).parse_args(argv)
    plan, _ = make_plan(experiment, args, local_cluster())
    sweep_dir = Path(plan.sweep_dir)
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({**asdict(plan), "versions": versions()}, indent=2))
    studies = studies_of(plan, experiment)
    searcher = StudySearcher(studies, sweep_dir / JOURNAL, plan.search, plan.seed)
    finished = searcher.suggest("finished")
    for epoch in range(1, int(finished.get("epochs", plan.max_epochs)) + 1):
        searcher.on_trial_result("finished", epoch_result(finished, epoch))
    searcher.on_trial_complete("finished", epoch_result(finished, epoch))
    searcher.on_trial_result("cut", epoch_result(searcher.suggest("cut"), 1))
    build_tuner(trainable, studies, sweep_dir, search=plan.search, seed=plan.seed, scheduler=plan.scheduler,
                max_epochs=plan.max_epochs, max_failures=plan.args["max_failures"], time_budget_s=plan.time_budget_s,
                callbacks=[], resume=False, restart_errored=False, confirm_seeds=plan.confirm_seeds,
                capacity=plan.capacity, allocate=plan.allocate)
    return sweep_dir


def stopped_goemotions_raw(storage: Path, data_dir: Path, model: Path) -> Path:
    """The experiment dir a stopped goemotions_raw sweep of `model` leaves under `storage`: the resume tests' start."""
    from sweeps import goemotions_raw

    return write_experiment(goemotions_raw.EXPERIMENT, [
        "--data-dir", str(data_dir), "--models", str(model), "--budget", "smoke", "--search", "random",
        "--storage", str(storage), "--name", "exp", "--no-dashboard"])
