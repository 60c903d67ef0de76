"""The Optuna samplers each study of a sweep asks, seeded per study, and the trials a new study tries first.
StudySearcher (sweeps/searcher.py) creates them as it opens each study in the journal."""
from __future__ import annotations

import hashlib
import math

import optuna

from sweeps.studies import Study


def startup_trials(num_samples: int, cluster_part: float = 0.0) -> int:
    """TPE's random trials before it models anything: 10 (Optuna's default), a tenth of a large budget, or as many
    as the study's even part of the cluster holds at once (`cluster_part` trials), whichever is most, but never
    more than half the budget. Random trials can all run at once while guided ones wait for results, so on a big
    cluster a first wave smaller than the cluster would leave it part empty until results come in."""
    return max(1, min(max(10, num_samples // 10, math.floor(cluster_part)), num_samples // 2))


def sampler_seed(seed: int, study_name: str, trials_so_far: int) -> int:
    """Each study's sampler gets its own seed, and a resumed one a new seed (from the trials it already has):
    with the sweep's seed alone, every study's random draws were the same sequence, and a resumed study drew its
    first configurations again."""
    digest = hashlib.sha256(f"{seed}/{study_name}/{trials_so_far}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_sampler(search: str, study: Study, seed: int, trials_so_far: int = 0,
                 startup: int | None = None) -> optuna.samplers.BaseSampler:
    seed = sampler_seed(seed, study.name, trials_so_far)
    if search == "grid":
        return optuna.samplers.GridSampler(study.space, seed=seed)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running count as bad guesses, so concurrent asks spread out instead of
    # all landing on the same promising point.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                      n_startup_trials=startup or startup_trials(study.num_samples))


def enqueue_first(created: optuna.Study, study: Study, search: str) -> None:
    """A new study's first trials: the recipe's start point (tpe/random), then the --warm-start configurations.
    `ask` hands enqueued trials out first, and suggests each param of the study's distributions as the value the
    trial was enqueued with (the sampler draws any it lacks), so `trial.params`, which the Tune config is built
    from, carries them. A resumed study's journal has them already: they are not enqueued twice."""
    if study.first_trial and search != "grid":
        created.enqueue_trial(study.first_trial)
    for trial in study.warm_start:
        created.enqueue_trial(**trial)
