"""One sweep = one Tune experiment: a searcher holding one Optuna study per model, ASHA per study, and
resources sized from each trial's model.

Ray does not support several Tune experiments at once on one cluster (ray#30091), and running them one after
another leaves GPUs idle at the tail of every model's study. So every study runs inside one experiment, and
the two pieces Ray offers only for a single study are written here for many:

- `StudySearcher` asks each model's Optuna study (in a journal file that optuna-dashboard opens) for trials,
  keeps each study to its own trial budget and concurrency bound, and tells Optuna how every trial ended:
  COMPLETE when it ran all its epochs, PRUNED (with its per-epoch values) when the scheduler or the time budget
  stopped it, FAIL when it errored. Ray's OptunaSearch tells any trial with a metric COMPLETE, so TPE would
  learn from truncated runs as if they were final.
- `PerStudyASHA` runs one ASHA per study, so a rung never compares one model with another.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from ray import tune
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher

METRIC = "val_score"  # the selected metric (--metric) on validation, at thresholds tuned for it
MODE = "max"
JOURNAL = "optuna.journal"


class JournalError(ValueError):
    """The experiment's journal file exists but is not an Optuna journal."""


@dataclass
class Study:
    """One model's (or model × variant's) search: what its trials share, what they search, how many run."""
    name: str
    config: dict  # every trial of the study gets these values (model, model_source, fixed values)
    space: dict  # key -> Optuna distribution (random / tpe) or list of values (grid)
    num_samples: int
    max_concurrent: int
    cpus: float
    gpus: float
    custom: dict[str, float] = field(default_factory=dict)  # custom resources per trial (large_gpu / small_gpu)
    first_trial: dict | None = None  # tpe/random: the point tried first (the recipe's defaults)
    epoch_tflop: float = 0.0  # the plan's estimate of one epoch's training compute (before any trial has run)
    distributions: dict[str, BaseDistribution] = field(init=False)

    def __post_init__(self):
        self.distributions = {key: CategoricalDistribution(value) if isinstance(value, list) else value
                              for key, value in self.space.items()}


def open_journal(path: Path) -> optuna.storages.JournalStorage:
    """The experiment's Optuna storage: a journal file, safe on NFS/EFS, that optuna-dashboard opens."""
    from optuna.storages.journal import JournalFileBackend

    if path.is_file() and path.stat().st_size:
        first = path.read_text(errors="replace").split("\n", 1)[0]
        try:
            is_journal = "op_code" in json.loads(first)
        except (json.JSONDecodeError, TypeError):
            is_journal = False
        if not is_journal:
            raise JournalError(f"{path}:1: not an Optuna journal (each line is a JSON operation with an op_code)")
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(search: str, study: Study, seed: int) -> optuna.samplers.BaseSampler:
    if search == "grid":
        return optuna.samplers.GridSampler(study.space, seed=seed)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running count as bad guesses, so concurrent asks spread out instead of
    # all landing on the same promising point.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                      n_startup_trials=max(1, min(10, study.num_samples // 2)))


def tell(study: optuna.Study, trial_id: int, state: TrialState, value: float | None = None) -> None:
    """study.tell for a trial of this study (by storage id). A GridSampler asks the study to stop once its grid is
    used up, which Optuna allows only inside study.optimize and answers with RuntimeError; here the study's
    budget ends it, and Optuna has stored the trial before the sampler asks."""
    try:
        study.tell(optuna.Trial(study, trial_id), value, state=state)
    except RuntimeError:
        if not isinstance(study.sampler, optuna.samplers.GridSampler):
            raise


def outcome(values: dict[int, float], epochs: int | None, result: dict | None, error: bool
            ) -> tuple[TrialState, float | None]:
    """COMPLETE with the best epoch's value when the trial ran all its epochs (analysis keeps that epoch's
    checkpoint), PRUNED when the scheduler or the time budget stopped it early, FAIL when it errored or never
    reported an epoch."""
    if error or not values:
        return TrialState.FAIL, None
    if result and epochs and result.get("training_iteration", 0) >= int(epochs):
        return TrialState.COMPLETE, max(values.values())
    return TrialState.PRUNED, None


class StudySearcher(Searcher):
    """A Ray searcher over one Optuna study per model, kept in the experiment's journal file.

    A slot that opens goes to a study under its concurrency bound and budget: while any study has yet to finish
    a trial, the one with the fewest trials so far; after that, the one with the most work left (its trials
    still to ask x the median wall time of its trials so far x its resource share), so the slowest model starts
    its trials first instead of running alone at the end.

    Each Optuna trial carries its Tune trial id (user attr `tune_trial_id`), so after a killed driver the journal
    itself says which trials were asked: one asked but never saved in Tune's experiment state is handed out
    again (same Optuna trial, same parameters) instead of being lost or re-sampled.

    With a time budget, a study starts no trial that its trials so far say could not finish a first epoch
    before the budget ends: such a trial would only be cut off with nothing to show. With confirmation seeds to
    follow, it also keeps room for them: no trial starts that could not end before the time its confirmation
    trials need (each trains the most epochs the search may choose, at its slowest first epoch so far, once per
    round of `max_concurrent` seeds).
    """

    def __init__(self, studies: list[Study], journal: Path, search: str, seed: int,
                 time_budget_s: float | None = None, confirm_seeds: int = 0,
                 clock: Callable[[], float] = time.time):
        super().__init__(metric=METRIC, mode=MODE)
        self.clock = clock  # wall time; the cluster simulator (bench/simulator.py) passes its virtual clock
        self.studies = {study.name: study for study in studies}
        self.journal = Path(journal)
        self.search = search
        self.seed = seed
        self.time_budget_s = time_budget_s
        self.confirm_seeds = confirm_seeds
        self.live: dict[str, tuple[str, int | None]] = {}  # Tune trial id -> (study, Optuna trial id)
        self._optuna: dict[str, optuna.Study] | None = None  # opened on first use: the searcher is pickled
        self._orphans: dict[str, list[int]] = {}
        self._deadline: float | None = None  # set when trials start (Tune counts its time budget from there)
        self._first_epoch_s: dict[str, list[float]] = {}  # per study: seconds from trial start to epoch 1
        self._trial_s: dict[str, list[float]] = {}  # per study: wall seconds of its ended trials

    def __getstate__(self):
        return {**self.__dict__, "_optuna": None, "_orphans": {}, "_deadline": None}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is the studies'; metric and mode are fixed

    def optuna_studies(self) -> dict[str, optuna.Study]:
        if self._optuna is None:
            storage = open_journal(self.journal)
            self._optuna = {}
            asked = {optuna_id for _, optuna_id in self.live.values()}
            for name, study in self.studies.items():
                created = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                              sampler=make_sampler(self.search, study, self.seed),
                                              load_if_exists=True)
                if not created.trials and study.first_trial and self.search != "grid":
                    created.enqueue_trial(study.first_trial)
                if created.metric_names is None:  # optuna-dashboard's name for the objective
                    with warnings.catch_warnings():  # experimental since Optuna 3.2, and still there in 5.0
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        created.set_metric_names([f"val {study.config.get('metric', 'macro_f1')}"])
                self._optuna[name] = created
                self._orphans[name] = [t._trial_id for t in created.trials
                                       if t.state == TrialState.RUNNING and t._trial_id not in asked]
        return self._optuna

    def asked(self, name: str) -> int:
        """Trials the study has handed out (restarts of errored trials not counted)."""
        return sum(1 for t in self.optuna_studies()[name].trials
                   if t.state != TrialState.WAITING and "restart_of" not in t.user_attrs)

    def running(self, name: str) -> int:
        return sum(1 for study, _ in self.live.values() if study == name)

    def too_late(self, name: str) -> bool:
        """Whether a trial of this study started now would end with the time budget before its first epoch."""
        seen, ended = self._first_epoch_s.get(name), self._trial_s.get(name)
        if self.confirm_seeds and self._deadline and seen and ended:
            # each confirmation trial trains all the epochs the search may choose, one epoch as long as its
            # trials' first epochs so far, `max_concurrent` at a time
            rounds = math.ceil(self.confirm_seeds / self.studies[name].max_concurrent)
            reserve = rounds * self.max_epochs(name) * max(seen)
            return self.clock() + statistics.median(ended) + reserve > self._deadline
        return bool(self._deadline and seen and self.clock() + statistics.median(seen) > self._deadline)

    def max_epochs(self, name: str) -> int:
        study = self.studies[name]
        searched = study.distributions.get("epochs")
        if searched is None:
            return int(study.config.get("epochs", 1))
        return int(max(searched.choices) if hasattr(searched, "choices") else searched.high)

    def order(self, names: list[str], asked: dict[str, int]) -> list[str]:
        if not all(self._trial_s.get(name) for name in names):
            return sorted(names, key=asked.get)
        work_left = {name: (self.studies[name].num_samples - asked[name]) * statistics.median(self._trial_s[name])
                     * (self.studies[name].gpus or self.studies[name].cpus) for name in names}
        return sorted(names, key=work_left.get, reverse=True)

    def suggest(self, trial_id: str) -> dict | str | None:
        studies = self.optuna_studies()
        if self.time_budget_s and self._deadline is None:
            self._deadline = self.clock() + self.time_budget_s
        asked = {name: self.asked(name) for name in self.studies}
        open_studies = [name for name in self.studies if not self.too_late(name)
                        and (self._orphans[name] or asked[name] < self.studies[name].num_samples)]
        if not open_studies:
            return Searcher.FINISHED
        for name in self.order(open_studies, asked):
            study = self.studies[name]
            if self.running(name) >= study.max_concurrent:
                continue
            if self._orphans[name]:
                trial = optuna.Trial(studies[name], self._orphans[name].pop(0))
            else:
                trial = studies[name].ask(study.distributions)
            trial.set_user_attr("tune_trial_id", trial_id)
            self.live[trial_id] = (name, trial._trial_id)
            return {**study.config, **trial.params, "study": name}
        return None  # every open study is at its concurrency bound: Tune asks again when a trial ends

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Each epoch's value goes into the study as an intermediate value (what PRUNED trials keep)."""
        if trial_id not in self.live:  # restarted from an errored trial (--restart-errored): Tune made it
            self.live[trial_id] = (result["config/study"], None)
        name, optuna_id = self.live[trial_id]
        if result.get("training_iteration") == 1 and "time_total_s" in result:
            self._first_epoch_s.setdefault(name, []).append(float(result["time_total_s"]))
        if optuna_id is not None and METRIC in result:
            frozen = self.optuna_studies()[name]._storage.get_trial(optuna_id)
            step = int(result["training_iteration"])
            if frozen.state == TrialState.RUNNING and step not in frozen.intermediate_values:
                optuna.Trial(self._optuna[name], optuna_id).report(float(result[METRIC]), step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if result:  # the last epoch: Tune does not pass a result that stops a trial to on_trial_result
            self.on_trial_result(trial_id, result)
        name, optuna_id = self.live.pop(trial_id)
        if result and "time_total_s" in result:
            self._trial_s.setdefault(name, []).append(float(result["time_total_s"]))
        study = self.optuna_studies()[name]
        if optuna_id is None:
            self.record_restart(study, trial_id, result, error)
            return
        frozen = study._storage.get_trial(optuna_id)
        if frozen.state.is_finished():
            return  # told before the driver was killed; Tune resumed the trial only to find it done
        epochs = frozen.params.get("epochs", self.studies[name].config.get("epochs"))
        state, value = outcome(frozen.intermediate_values, epochs, result, error)
        tell(study, optuna_id, state, value)

    def record_restart(self, study: optuna.Study, trial_id: str, result: dict | None, error: bool) -> None:
        """A trial Tune restarted from scratch after it errored: recorded in the study as a trial of its own."""
        distributions = self.studies[study.study_name].distributions
        result = result or {}
        params = {key: result[f"config/{key}"] for key in distributions if f"config/{key}" in result}
        values = {int(result["training_iteration"]): float(result[METRIC])} if METRIC in result else {}
        state, value = outcome(values, result.get("config/epochs"), result, error)
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, params=params, intermediate_values=values,
            distributions={key: distributions[key] for key in params},
            user_attrs={"tune_trial_id": trial_id, "restart_of": "errored trial"}))

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"live": self.live}))

    def restore(self, checkpoint_path: str) -> None:
        self.live = {trial_id: tuple(entry) for trial_id, entry in
                     json.loads(Path(checkpoint_path).read_text())["live"].items()}
        self._optuna = None  # reopen: trials asked after this state was saved become orphans to hand out


class PerStudyASHA(FIFOScheduler):
    """ASHA for each study on its own: rungs compare a trial only with trials of the same study."""

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: float = 2):
        super().__init__()
        self.settings = {"max_t": max_t, "grace_period": grace_period, "reduction_factor": reduction_factor}
        self.per_study: dict[str, ASHAScheduler] = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def asha(self, trial) -> ASHAScheduler:
        name = trial.config["study"]
        if name not in self.per_study:
            self.per_study[name] = ASHAScheduler(metric=self._metric, mode=self._mode, **self.settings)
        return self.per_study[name]

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


def run_config(experiment_dir: Path, callbacks: list, max_failures: int, verbose: bool) -> tune.RunConfig:
    """Where the experiment lives, what it keeps and how often a crashed trial is retried (search and
    confirmation phases alike). One checkpoint per trial: its best epoch, plus the latest while it runs. Tune's
    own status tables only with --verbose: the sweep prints a line per trial event instead (sweeps/console.py)."""
    return tune.RunConfig(
        name=experiment_dir.name, storage_path=str(experiment_dir.parent), callbacks=callbacks,
        verbose=1 if verbose else 0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                checkpoint_score_order="max"),
        failure_config=tune.FailureConfig(max_failures=max_failures))


def fit(tuner: tune.Tuner, studies: list[Study]):
    """tuner.fit() with one trial per study allowed to wait for resources. Tune's default for a custom searcher
    is one pending trial in all, which starts trials one at a time; more than one per study would make the
    searcher ask for parameters long before a trial can start, which turns TPE into random search."""
    variable, before = "TUNE_MAX_PENDING_TRIALS_PG", os.environ.get("TUNE_MAX_PENDING_TRIALS_PG")
    os.environ[variable] = before or str(len(studies))  # a value the user set wins
    try:
        return tuner.fit()
    finally:
        if before is None:
            del os.environ[variable]


def build_tuner(trainable: Callable, studies: list[Study], experiment_dir: Path, *, search: str, seed: int,
                scheduler: str, max_epochs: int, max_failures: int, time_budget_s: float | None,
                callbacks: list, resume: bool, restart_errored: bool, confirm_seeds: int = 0,
                verbose: bool = False) -> tune.Tuner:
    """The sweep's one Tuner (restored, not re-run, with `resume`).

    `reuse_actors`: a trial that ends hands its Ray worker process to the next trial with the same resources,
    which then starts in well under a second instead of spawning a process and importing torch and transformers
    again (a 6-trial smoke sweep on 2 cores: 128 s with a process per trial, 37 s reused). Each trial sets its
    own seed, threads and CUDA memory cap when it starts (trainables/device.py), so nothing carries over."""
    trainable = tune.with_resources(trainable, trial_resources(studies))
    if resume and tune.Tuner.can_restore(experiment_dir):
        return tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=not restart_errored,
                                  restart_errored=restart_errored)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE,
            search_alg=StudySearcher(studies, experiment_dir / JOURNAL, search, seed, time_budget_s, confirm_seeds),
            scheduler=PerStudyASHA(max_t=max_epochs) if scheduler == "asha" else FIFOScheduler(),
            # The searcher owns every study's budget and says FINISHED: a trial count here would also count the
            # trials it hands out again after a killed driver, and end the sweep short of its budget.
            num_samples=-1, time_budget_s=time_budget_s, reuse_actors=True,
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=run_config(experiment_dir, callbacks, max_failures, verbose),
    )
