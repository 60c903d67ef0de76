"""One sweep = one Tune experiment: a searcher holding one Optuna study per model (sweeps/searcher.py), ASHA per
study, and resources sized from each trial's model.

Ray does not support several Tune experiments at once on one cluster (ray#30091), and running them one after
another leaves GPUs idle at the tail of every model's study. So every study runs inside one experiment, and
the two pieces Ray offers only for a single study are written for many: `StudySearcher` (sweeps/searcher.py)
asks each model's Optuna study for trials and tells it how each ended, and `PerStudyASHA` (here) runs one ASHA
per study, so a rung never compares one model with another.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.logger import CSVLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.stopper import Stopper

from sweeps.searcher import StudySearcher
from sweeps.studies import JOURNAL, METRIC, MODE, RUNG_METRIC, Study, open_journal, tell

class PerStudyASHA(FIFOScheduler):
    """ASHA for each study on its own: rungs compare a trial only with trials of the same study.

    Its time unit is the rung (Tune's training_iteration): with `rungs_per_epoch` > 1 a trial reports a
    validation-subset score every fraction of an epoch, so with grace_period 1 the first cut comes a fraction of an
    epoch in, and max_t is the epochs x rungs_per_epoch.

    Tune keeps no scheduler state across a resume (the restored Tuner holds the scheduler as it was built), so
    each study's rungs start from the journal: every trial's epoch values there are recorded at the rungs they
    reached, under its Tune trial id. A resumed sweep prunes as the killed one would have, and a trial Tune
    resumes is not recorded twice."""

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: float = 2, journal: Path | None = None):
        super().__init__()
        self.settings = {"max_t": max_t, "grace_period": grace_period, "reduction_factor": reduction_factor}
        self.journal = journal
        self.per_study: dict[str, ASHAScheduler] = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def asha(self, trial) -> ASHAScheduler:
        name = trial.config["study"]
        if name not in self.per_study:
            self.per_study[name] = ASHAScheduler(metric=self._metric, mode=self._mode, **self.settings)
            self.record_journal_rungs(name, self.per_study[name])
        return self.per_study[name]

    def record_journal_rungs(self, name: str, asha: ASHAScheduler) -> None:
        if self.journal is None or not self.journal.is_file():
            return
        storage = open_journal(self.journal)
        if name not in optuna.get_all_study_names(storage):
            return
        sign = 1.0 if self._mode == "max" else -1.0
        for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            trial_id = trial.user_attrs.get("tune_trial_id", f"journal-{trial.number}")
            for bracket in asha._brackets:
                for milestone, recorded in bracket._rungs:
                    if int(milestone) in trial.intermediate_values:
                        recorded[trial_id] = sign * trial.intermediate_values[int(milestone)]

    def on_trial_add(self, tune_controller, trial) -> None:
        self.asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.asha(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self.asha(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.asha(trial)._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "\n".join(f"{name}: {asha.debug_string()}" for name, asha in self.per_study.items())


class SearchEnd(Stopper):
    """Ends the search phase at StudySearcher.search_deadline: when the time budget left is what the confirmation
    seeds of each model's best configuration so far take. Tune asks at every step of its loop, so the trials still
    running stop there (keeping the epochs they finished; close_cut_trials tells the journal), and the seeds get
    the rest of the budget."""

    def __init__(self, searcher: StudySearcher):
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # no single trial is stopped for itself: stop_all ends the phase

    def stop_all(self) -> bool:
        deadline = self.searcher.search_deadline()
        if deadline is None or self.searcher.clock() < deadline:
            return False
        self.searcher.say_search_ends()
        return True


def close_cut_trials(journal: Path) -> None:
    """Tell the trials a time budget cut short: Tune ends them without telling the searcher. PRUNED with the
    epochs they reported (FAIL if none), as if the scheduler had stopped them."""
    storage = open_journal(journal)
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tell(study, frozen._trial_id, TrialState.PRUNED if frozen.intermediate_values else TrialState.FAIL)


def trial_resources(studies: list[Study]) -> Callable[[dict], PlacementGroupFactory]:
    """Tune sizes each trial from its config: the CPUs and GPU share of the trial's model."""
    sizes = {study.name: {"CPU": study.cpus, **({"GPU": study.gpus} if study.gpus else {}), **study.custom}
             for study in studies}
    return lambda config: PlacementGroupFactory([sizes[config["study"]]])


def trial_dirname(trial) -> str:
    """`<study>_<trial id>`, for the trial's folder and its row in Tune's table and the dashboard: Tune's default
    folder name packs the whole config in, and its default row name does not say which model a trial trains."""
    return f"{trial.config['study']}_{trial.trial_id}"


class EpochProgressCSV(CSVLoggerCallback):
    """Tune's progress.csv, one row per epoch as before rungs inside epochs: Tune takes its columns from a trial's
    first result, and with rungs that is a rung's, which has none of the epoch's validation columns (they would
    all be dropped). The rungs are in result.json and the journal. Passing it keeps Tune from adding its own."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if METRIC in result:
            super().log_trial_result(iteration, trial, result)


def run_config(experiment_dir: Path, callbacks: list, max_failures: int, verbose: bool) -> tune.RunConfig:
    """Where the experiment lives, what it keeps and how often a crashed trial is retried (search and
    confirmation phases alike). One checkpoint per trial: its best epoch, plus the latest while it runs. Tune's
    own status tables only with --verbose: the sweep prints a line per trial event instead (sweeps/console.py)."""
    return tune.RunConfig(
        name=experiment_dir.name, storage_path=str(experiment_dir.parent), callbacks=[*callbacks, EpochProgressCSV()],
        verbose=1 if verbose else 0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                checkpoint_score_order="max"),
        failure_config=tune.FailureConfig(max_failures=max_failures))


def pending_limit(studies: list[Study], capacity: float | None) -> int:
    """How many trials Tune may keep waiting for resources: as many as the whole cluster (once the autoscaler
    has added every node it may) holds at the studies' smallest share, so a `ray up` cluster starting from zero
    workers sees its whole demand at once and boots every node in one cycle. Tune's default for a custom
    searcher is one pending trial in all, which starts trials one at a time and shows the autoscaler one trial's
    demand. The searcher's own bounds keep asks from running far ahead of what can start."""
    if capacity is None:
        return len(studies)
    return max(len(studies), math.ceil(capacity / min(study.units for study in studies) - 1e-9))


def fit(tuner: tune.Tuner, studies: list[Study], capacity: float | None = None):
    """tuner.fit() with Tune's pending-trial limit set from the cluster (pending_limit); a value the user set in
    TUNE_MAX_PENDING_TRIALS_PG wins."""
    variable, before = "TUNE_MAX_PENDING_TRIALS_PG", os.environ.get("TUNE_MAX_PENDING_TRIALS_PG")
    os.environ[variable] = before or str(pending_limit(studies, capacity))
    try:
        return tuner.fit()
    finally:
        if before is None:
            del os.environ[variable]


def restored(tuner: tune.Tuner, experiment_dir: Path, verbose: bool) -> tune.Tuner:
    """A restored Tuner, writing where the experiment is now and as verbose as this resume asks. Tune moves its own
    paths to the dir it restores from (a copied or moved experiment continues there), but the searcher, scheduler
    and W&B callback come back from tuner.pkl with the paths they were built with: the experiment's original dir,
    whose journal they would go on writing."""
    if tuner._is_ray_client:  # a ray:// client's Tuner is restored on the cluster, out of reach
        return tuner
    internal = tuner._local_tuner
    for part in (internal._tune_config.search_alg, internal._tune_config.scheduler):
        if isinstance(part, (StudySearcher, PerStudyASHA)):
            part.journal = experiment_dir / JOURNAL
    if isinstance(internal._run_config.stop, SearchEnd):  # it must read the searcher Tune restores, not a copy
        internal._run_config.stop.searcher = internal._tune_config.search_alg
    for callback in internal._run_config.callbacks or []:
        if "dir" in getattr(callback, "kwargs", {}):  # WandbLoggerCallback: wandb.init(dir=the experiment dir)
            callback.kwargs["dir"] = str(experiment_dir)
    internal._run_config.verbose = 1 if verbose else 0
    return tuner


def build_tuner(trainable: Callable, studies: list[Study], experiment_dir: Path, *, search: str, seed: int,
                scheduler: str, max_epochs: int, max_failures: int, time_budget_s: float | None,
                callbacks: list, resume: bool, restart_errored: bool, confirm_seeds: int = 0,
                verbose: bool = False, capacity: float | None = None, allocate: str = "even") -> tune.Tuner:
    """The sweep's one Tuner (restored, not re-run, with `resume`).

    `reuse_actors`: a trial that ends hands its Ray worker process to the next trial with the same resources,
    which then starts in well under a second instead of spawning a process and importing torch and transformers
    again (a 6-trial smoke sweep on 2 cores: 128 s with a process per trial, 37 s reused). Each trial sets its
    own seed, threads and CUDA memory cap when it starts (trainables/device.py), so nothing carries over."""
    trainable = tune.with_resources(trainable, trial_resources(studies))
    if resume and tune.Tuner.can_restore(experiment_dir):
        return restored(tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=not restart_errored,
                                           restart_errored=restart_errored), experiment_dir, verbose)
    searcher = StudySearcher(studies, experiment_dir / JOURNAL, search, seed, time_budget_s, confirm_seeds,
                             capacity=capacity, allocate=allocate)
    config = run_config(experiment_dir, callbacks, max_failures, verbose)
    if time_budget_s and confirm_seeds:
        config.stop = SearchEnd(searcher)
    rungs_per_epoch = max(int(study.config.get("rungs_per_epoch", 1)) for study in studies)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            # RUNG_METRIC: every report has it (METRIC only the epoch ends, which also carry the checkpoint)
            metric=RUNG_METRIC, mode=MODE,
            search_alg=searcher,
            scheduler=(PerStudyASHA(max_t=max_epochs * rungs_per_epoch, journal=experiment_dir / JOURNAL)
                       if scheduler == "asha"
                       else FIFOScheduler()),
            # The searcher owns every study's budget and says FINISHED: a trial count here would also count the
            # trials it hands out again after a killed driver, and end the sweep short of its budget.
            num_samples=-1, time_budget_s=time_budget_s, reuse_actors=True,
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=config,
    )
