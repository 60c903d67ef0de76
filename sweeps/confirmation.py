"""The confirmation phase: after the search, each model's best configuration trained again with further seeds
(new weight init and batch order; the same data rows and hyperparameters), as trials of the same experiment.

They run through a second Tuner in the sweep's experiment dir (same trial folders, resources, checkpoints and
callbacks; no early stopping, each seed trains all its epochs; no search, the points are given). Tune restores
the newest Tuner of a dir, so `--resume` continues whichever phase was running; the configs are fixed once, in
confirmations.json, so a resumed sweep confirms the same trials with the same seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ray import tune
from ray.tune.search import BasicVariantGenerator

from analysis.best_trials import ExperimentError, best_runs, read_trials
from sweeps.studies import METRIC, MODE, Study
from sweeps.tuning import fit, restored, run_config, trial_dirname, trial_resources
from trainables import atomic

CONFIRMATIONS = "confirmations.json"  # the confirmation trials' configs, fixed when the search ends


def confirmation_space(configs: list[dict]) -> dict:
    """A param space that holds every point: Tune checks each key a point sets against the space, and warns of a
    constant the point differs from ("Pre-set value 1 is not equal to ... seed: 3"), so a key whose value differs
    between the points (the seed) becomes a choice of those values. The points set every trial's values."""
    values: dict[str, list] = {}
    for config in configs:
        for key, value in config.items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return {key: found[0] if len(found) == 1 else tune.choice(found) for key, found in values.items()}


def build_confirmation_tuner(trainable: Callable, studies: list[Study], experiment_dir: Path, configs: list[dict],
                             *, max_failures: int, time_budget_s: float | None, callbacks: list, verbose: bool,
                             restore: bool) -> tune.Tuner:
    """The confirmation trials (`configs`, each a whole trial config with its own seed) as a second Tuner in the
    sweep's experiment dir."""
    trainable = tune.with_resources(trainable, trial_resources(studies))
    if restore:
        return restored(tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=True),
                        experiment_dir, verbose)
    return tune.Tuner(
        trainable,
        param_space=confirmation_space(configs),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=len(configs), time_budget_s=time_budget_s, reuse_actors=True,
            search_alg=BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=0),
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=run_config(experiment_dir, callbacks, max_failures, verbose))


def confirmation_configs(sweep_dir: Path, seeds: int) -> list[dict]:
    """Each model's best search trial's whole config, once per further seed (new weight init and batch order;
    the same data rows, which the sweep's own seed chose, and the same hyperparameters). One report per epoch:
    no scheduler stops a seed, so rungs inside an epoch would only cost their scoring."""
    try:
        runs, _ = best_runs(read_trials(sweep_dir))
    except ExperimentError:
        return []  # no trial finished: nothing to confirm (the analysis says so)
    configs = []
    for seeds_so_far in runs.values():
        trial_dir = Path(seeds_so_far[0].row["trial_dir"])
        config = json.loads((trial_dir / "params.json").read_text())
        configs += [{**config, "seed": int(config["seed"]) + k, "confirm_of": trial_dir.name,
                     **({"rungs_per_epoch": 1} if "rungs_per_epoch" in config else {})}
                    for k in range(1, seeds + 1)]
    return configs


def run_confirmation(sweep_dir: Path, seeds: int, studies: list[Study], trainable, *, resume: bool,
                     time_left_s: float | None, max_failures: int, callbacks: list, verbose: bool) -> None:
    """Confirm each model's best search trial with `seeds` further seeds; with `resume`, continue a confirmation
    phase a killed or interrupted driver left (Tune's newest experiment state is younger than the configs)."""
    planned = sweep_dir / CONFIRMATIONS
    if planned.is_file():
        configs = json.loads(planned.read_text())
    else:
        configs = confirmation_configs(sweep_dir, seeds)
        atomic.write_text(planned, json.dumps(configs, indent=2))
    if not configs:
        return
    states = sorted(sweep_dir.glob("experiment_state-*.json"), key=lambda path: path.stat().st_mtime)
    restore = resume and bool(states) and states[-1].stat().st_mtime > planned.stat().st_mtime
    fit(build_confirmation_tuner(trainable, studies, sweep_dir, configs, max_failures=max_failures,
                                 time_budget_s=time_left_s, callbacks=callbacks, verbose=verbose, restore=restore),
        studies)
