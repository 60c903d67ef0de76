"""`StudySearcher`: a Ray searcher over one Optuna study per model, all in one Tune experiment, that fills the
cluster and still lets TPE learn (its class docstring says how); the samplers it asks are sweeps/samplers.py's.
"""
from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from sweeps import seed_price
from sweeps.allocation import StudyCounts, move_trials_from_behind
from sweeps.samplers import enqueue_first, make_sampler, startup_trials
from sweeps.seed_price import TrialTiming
from sweeps.studies import METRIC, MODE, RUNG_METRIC, Study, epoch_values, open_journal, outcome, rung_value, tell

class StudySearcher(Searcher):
    """A Ray searcher over one Optuna study per model, kept in the experiment's journal file.

    Which study gets a free slot: the one with the most work left (its trials still to ask x their expected
    GPU-seconds: the plan's compute estimate per epoch until trials have run, then the median measured trial),
    so the longest trials start first and the slowest model does not run alone at the end. Without estimates,
    the one with the fewest trials so far.

    How many trials a study has in flight (asked and not yet ended, pending ones included):
    - never more than its `max_concurrent` (the cluster's room for its trials, or --max-concurrent);
    - with `capacity` (the cluster's GPUs, or CPUs on a CPU sweep, once the autoscaler has added every node
      it may): trials in flight hold at most that much, and a study past its even part of it (capacity over the
      open studies' shares, growing as studies finish) gets a slot only when no study below its part can use it;
    - TPE: its random startup trials may all be in flight at once; a guided trial only while the study has no more
      guided trials in flight than it has results (at least its startup count), so each wave of guided trials
      learns from the trials before it, instead of TPE turning into random search on a big cluster.

    Each Optuna trial carries its Tune trial id (user attr `tune_trial_id`), so after a killed driver the journal
    itself says which trials were asked: one asked but never saved in Tune's experiment state is handed out
    again (same Optuna trial, same parameters) instead of being lost or re-sampled. A FAIL trial does not count
    against its study's budget (a study stops once as many trials failed as its budget: something is broken),
    except in a grid, whose budget is its points: a point that failed was tried, and would only fail again.

    With a time budget, a study starts no trial that its trials so far say could not finish a first epoch
    before the search ends: such a trial would only be cut off with nothing to show. Without confirmation seeds
    the search ends with the budget. With them, it ends when the time left is what the seeds of each study's best
    configuration so far will take (`search_deadline`): priced from that trial's own measured epochs and the
    epochs its configuration trains, so the search spends everything the seeds do not need, and the price follows
    the leader as it changes. `SearchEnd` (sweeps/tuning.py) stops the running trials there; they keep the epochs
    they finished. The budget's deadline is the one Tune's own time budget stops at: on --resume both go on with
    the time the sweep had left when its state was last saved (time while no driver ran is not spent).

    `allocate="adaptive"`: once every study has finished its startup trials, a study reliably behind the leader
    gives its remaining trials to the studies not behind (sweeps/allocation.py); each decision is printed and kept
    in the journal (study user attrs `trial_budget` and `allocation`).
    """

    def __init__(self, studies: list[Study], journal: Path, search: str, seed: int,
                 time_budget_s: float | None = None, confirm_seeds: int = 0, *, capacity: float | None = None,
                 allocate: str = "even", clock: Callable[[], float] = time.time):
        super().__init__(metric=RUNG_METRIC, mode=MODE)
        self.studies = {study.name: study for study in studies}
        self.journal = Path(journal)
        self.search = search
        self.seed = seed
        self.time_budget_s = time_budget_s
        self.confirm_seeds = confirm_seeds
        self.capacity = capacity
        self.allocate = allocate
        self.clock = clock  # wall time; the cluster simulator (bench/simulator.py) passes its virtual clock
        self.live: dict[str, tuple[str, int | None]] = {}  # Tune trial id -> (study, Optuna trial id)
        self._optuna: dict[str, optuna.Study] | None = None  # opened on first use: the searcher is pickled
        self._orphans: dict[str, list[int]] = {}
        self._counts: dict[str, StudyCounts] = {}
        self._budget: dict[str, int] = {}  # trials each study may ask (moved between studies by --allocate adaptive)
        self._continued: dict[str, dict[int, float]] = {}  # epochs of resumed trials whose journal trial had ended
        self._time_left_s: float | None = None  # from the saved state of the run this one resumes
        self._deadline: float | None = None  # set when trials start (Tune counts its time budget from there)
        self._first_epoch_s: dict[str, list[float]] = {}  # per study: seconds from trial start to epoch 1
        self._trial_s: dict[str, list[float]] = {}  # per study: wall seconds of its ended trials
        self._timings: dict[str, TrialTiming] = {}  # Tune trial id -> its epochs' clock and best value
        self._reserve_s = 0.0  # what the confirmation seeds of the best configurations so far take
        self._first_ask_at: float | None = None  # this run's first ask: when its Tuner began starting trials
        self.start_s: float | None = None  # from the first ask to the first trial's trainable starting (measured)
        self._said_search_ends = False

    def __getstate__(self):
        return {**self.__dict__, "_optuna": None, "_orphans": {}, "_counts": {}, "_budget": {}, "_deadline": None,
                "_first_ask_at": None}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is the studies'; metric and mode are fixed

    def optuna_studies(self) -> dict[str, optuna.Study]:
        if self._optuna is None:
            storage = open_journal(self.journal)
            self._optuna = {}
            asked = {optuna_id for _, optuna_id in self.live.values()}
            for name, study in self.studies.items():
                created = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                              load_if_exists=True)
                trials = created.get_trials(deepcopy=False)
                created.sampler = make_sampler(self.search, study, self.seed, len(trials), self.startup(name))
                if not trials:
                    enqueue_first(created, study, self.search)
                if created.metric_names is None:  # optuna-dashboard's name for the objective
                    with warnings.catch_warnings():  # experimental since Optuna 3.2, and still there in 5.0
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        created.set_metric_names([f"val {study.config.get('metric', 'macro_f1')}"])
                self._optuna[name] = created
                self._orphans[name] = [t._trial_id for t in trials
                                       if t.state == TrialState.RUNNING and t._trial_id not in asked]
                self._counts[name] = counts = StudyCounts()
                for trial in trials:
                    if trial.state != TrialState.WAITING and "restart_of" not in trial.user_attrs:
                        counts.failed += trial.state == TrialState.FAIL
                        counts.asked += trial.state != TrialState.FAIL or self.search == "grid"
                    self.count_finished(name, trial.state, trial.intermediate_values)
                self._budget[name] = created.user_attrs.get("trial_budget", study.num_samples)
        return self._optuna

    def count_finished(self, name: str, state: TrialState, values: dict[int, float]) -> None:
        if state in (TrialState.COMPLETE, TrialState.PRUNED) and values:
            counts = self._counts[name]
            counts.finished += 1
            epochs = epoch_values(values, self.rungs_per_epoch(name))
            if epochs:  # a trial stopped inside its first epoch has only rung-subset values: no best
                counts.best = max(max(epochs.values()), counts.best if counts.best is not None else -math.inf)

    def rungs_per_epoch(self, name: str) -> int:
        return int(self.studies[name].config.get("rungs_per_epoch", 1))

    def running(self, name: str) -> int:
        return sum(1 for study, _ in self.live.values() if study == name)

    def has_trials_left(self, name: str) -> bool:
        counts = self._counts[name]
        return bool(self._orphans[name]) or (
            counts.asked < self._budget[name] and counts.failed < self.studies[name].num_samples)

    def too_late(self, name: str) -> bool:
        """Whether a trial of this study started now would be cut off before its first epoch ends."""
        seen, deadline = self._first_epoch_s.get(name), self.search_deadline() or self._deadline
        return bool(deadline and seen and self.clock() + statistics.median(seen) > deadline)

    def budget_left_s(self) -> float | None:
        return self._deadline - self.clock() if self._deadline else None

    def search_deadline(self) -> float | None:
        """When the search ends so that the confirmation seeds end with the time budget (None: no budget, or no
        seeds: then the search ends with the budget)."""
        if not (self.confirm_seeds and self._deadline):
            return None
        return self._deadline - self._reserve_s

    def best_timings(self) -> dict[str, TrialTiming]:
        return seed_price.best_timings(self._timings.values(), self.studies)

    def confirmation_reserve_s(self) -> float:
        return seed_price.confirmation_reserve_s(self.best_timings(), self.confirm_seeds, self.studies, self.capacity,
                                                 self.start_s or 0.0)

    def say_search_ends(self) -> None:
        """Print, once, that the search starts no more trials (those running finish, or stop where the seeds' time
        begins), and what the seeds were priced from."""
        if self._said_search_ends:
            return
        self._said_search_ends = True
        priced = "; ".join(f"{name}'s best, {timing.epochs} epoch{'s' * (timing.epochs != 1)} at "
                           f"~{timing.seed_s() / 60:.1f} min a seed" for name, timing in self.best_timings().items())
        seeds = self.confirm_seeds
        print(f"search starts no more trials with {self.budget_left_s() / 60:.1f} min of the time budget left, "
              f"{self._reserve_s / 60:.1f} of them kept for {seeds} confirmation seed{'s' * (seeds != 1)} ({priced}; "
              f"a trial took {self.start_s or 0:.0f} s to start)", flush=True)

    def max_epochs(self, name: str) -> int:
        study = self.studies[name]
        searched = study.distributions.get("epochs")
        if searched is None:
            return int(study.config.get("epochs", 1))
        return int(max(searched.choices) if hasattr(searched, "choices") else searched.high)

    def order(self, names: list[str]) -> list[str]:
        """Studies by work left, most first (see the class docstring)."""
        def trials_left(name: str) -> int:
            return max(0, self._budget[name] - self._counts[name].asked) + len(self._orphans[name])

        if all(self._trial_s.get(name) for name in names):
            work_left = {name: trials_left(name) * statistics.median(self._trial_s[name])
                         * self.studies[name].units for name in names}
        elif all(self.studies[name].epoch_tflop for name in names):
            work_left = {name: trials_left(name) * self.studies[name].epoch_tflop * self.max_epochs(name)
                         for name in names}
        else:
            return sorted(names, key=lambda name: self._counts[name].asked)
        return sorted(names, key=work_left.get, reverse=True)

    def even_parts(self, names: list[str]) -> dict[str, float]:
        """Each study's even part of the cluster, in trials: the capacity split so that every study may hold the
        same number of trials, except that a study never gets more than it can use (its `max_concurrent`, e.g. a
        7B model on the few large-GPU nodes); what it cannot use is split among the others (water-filling)."""
        parts: dict[str, float] = {}
        left, open_names = float(self.capacity or 0.0), list(names)
        while open_names:
            trials_each = left / sum(self.studies[name].units for name in open_names)
            capped = [name for name in open_names if self.studies[name].max_concurrent <= trials_each]
            if not capped:
                parts.update({name: trials_each for name in open_names})
                break
            for name in capped:
                parts[name] = self.studies[name].max_concurrent
                left -= parts[name] * self.studies[name].units
                open_names.remove(name)
        return parts

    def startup(self, name: str) -> int:
        """The study's random startup trials (startup_trials), enough to fill its even part of the cluster."""
        part = self.even_parts(list(self.studies))[name] if self.capacity else 0.0
        return startup_trials(self.studies[name].num_samples, part)

    def learning_room(self, name: str) -> bool:
        """TPE: startup trials all at once; guided ones no more in flight than the study has results."""
        if self.search != "tpe" or self._orphans[name]:
            return True
        startup = self.startup(name)
        return self._counts[name].asked < startup or self.running(name) < max(startup, self._counts[name].finished)

    def slot_for(self, names: list[str]) -> str | None:
        """The first study (in `names`' order) that may start a trial now, preferring studies below their even
        part of the cluster."""
        in_flight = sum(self.studies[study].units for study, _ in self.live.values())
        ready = [name for name in names
                 if self.running(name) < self.studies[name].max_concurrent and self.learning_room(name)
                 and (self.capacity is None or in_flight + self.studies[name].units <= self.capacity + 1e-9)]
        if self.capacity is None or not ready:
            return ready[0] if ready else None
        parts = self.even_parts(names)
        return next((name for name in ready if self.running(name) < parts[name]), ready[0])

    def suggest(self, trial_id: str) -> dict | str | None:
        studies = self.optuna_studies()
        if self.time_budget_s and self._deadline is None:
            left = self._time_left_s if self._time_left_s is not None else self.time_budget_s
            self._deadline = self.clock() + left
        if self._first_ask_at is None:
            self._first_ask_at = self.clock()
        open_studies = [name for name in self.studies if self.has_trials_left(name) and not self.too_late(name)]
        if not open_studies:
            if self.confirm_seeds and any(self.has_trials_left(name) for name in self.studies):
                self.say_search_ends()  # trials were left, the time for them was not
            return Searcher.FINISHED
        name = self.slot_for(self.order(open_studies))
        if name is None:
            return None  # every open study is at its bound: Tune asks again when a trial ends
        if self._orphans[name]:
            trial = optuna.Trial(studies[name], self._orphans[name].pop(0))
        else:
            trial = studies[name].ask(self.studies[name].distributions)
            self._counts[name].asked += 1
        trial.set_user_attr("tune_trial_id", trial_id)
        self.live[trial_id] = (name, trial._trial_id)
        return {**self.studies[name].config, **trial.params, "study": name}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Each rung's value goes into the study as an intermediate value at its step (what PRUNED trials keep,
        and optuna-dashboard draws as the trial's curve); epoch ends also set the trial's clock."""
        if trial_id not in self.live:  # restarted from an errored trial (--restart-errored): Tune made it
            self.live[trial_id] = (result["config/study"], None)
        name, optuna_id = self.live[trial_id]
        if self.start_s is None and self._first_ask_at is not None and "time_total_s" in result:
            # the first report: its clock less the time its trainable had run is how long the Tuner took to place the
            # trial and start its process, under this sweep's load; the confirmation seeds' new Tuner pays it again
            self.start_s = max(0.0, self.clock() - self._first_ask_at - float(result["time_total_s"]))
        epoch_end = METRIC in result
        if epoch_end and result.get("training_iteration") == self.rungs_per_epoch(name) and "time_total_s" in result:
            self._first_epoch_s.setdefault(name, []).append(float(result["time_total_s"]))
        if epoch_end and "time_total_s" in result:
            self.clock_epoch(trial_id, name, result)
        value = rung_value(result)
        if optuna_id is not None and value is not None:
            frozen = self.optuna_studies()[name]._storage.get_trial(optuna_id)
            step = int(result["training_iteration"])
            if step in frozen.intermediate_values:
                return  # a resumed trial reporting a rung the journal has (Tune restored it from before)
            if frozen.state != TrialState.RUNNING:  # its journal trial ended (errored) before Tune resumed it
                self._continued.setdefault(trial_id, {})[step] = value
            else:
                optuna.Trial(self._optuna[name], optuna_id).report(value, step)

    def clock_epoch(self, trial_id: str, name: str, result: dict) -> None:
        """Record when this epoch of the trial ended and what it scored, and price the confirmation seeds again."""
        epochs = int(result.get("config/epochs", self.studies[name].config.get("epochs", 1)))
        timing = self._timings.setdefault(trial_id, TrialTiming(name, epochs))
        epochs_done = int(result["training_iteration"]) // self.rungs_per_epoch(name)
        if len(timing.ends_s) < epochs_done:  # the last epoch comes again at the trial's end
            timing.ends_s.append(float(result["time_total_s"]))
        timing.best = max(timing.best, float(result[METRIC]))
        if self.confirm_seeds:
            self._reserve_s = self.confirmation_reserve_s()

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
        epochs = frozen.params.get("epochs", self.studies[name].config.get("epochs"))
        if frozen.state.is_finished():
            continued = self._continued.pop(trial_id, None)
            if continued:  # Tune resumed a trial the journal had ended, and it trained on: a trial of its own
                values = {**frozen.intermediate_values, **continued}
                state, value = outcome(values, epochs, result, error, self.rungs_per_epoch(name))
                study.add_trial(optuna.trial.create_trial(
                    state=state, value=value, params=frozen.params, distributions=frozen.distributions,
                    intermediate_values=values, user_attrs={"tune_trial_id": trial_id, "continues": frozen.number}))
                self.counted(name, state, values)
            return  # otherwise it was told before the driver was killed; Tune resumed it only to find it done
        state, value = outcome(frozen.intermediate_values, epochs, result, error, self.rungs_per_epoch(name))
        tell(study, optuna_id, state, value)
        if state == TrialState.FAIL and self.search != "grid":  # a grid's point that failed is still tried
            self._counts[name].asked -= 1
        self.counted(name, state, frozen.intermediate_values)

    def counted(self, name: str, state: TrialState, values: dict[int, float]) -> None:
        """A trial of `name` ended as `state`: count it, and with --allocate adaptive, see who is behind."""
        self._counts[name].failed += state == TrialState.FAIL
        self.count_finished(name, state, values)
        if self.allocate == "adaptive":
            self.reallocate()

    def reallocate(self) -> None:
        """Once every study has its startup results, move the remaining trials of studies reliably behind the
        leader to the studies that are not; each move is printed and kept in the journal."""
        if any(self._counts[name].finished < self.startup(name) or self._counts[name].best is None
               for name in self.studies):
            return
        for name, receivers, decision in move_trials_from_behind(self._counts, self._budget):
            print(f"allocate adaptive: {decision}", flush=True)
            self._optuna[name].set_user_attr("allocation", decision)
            for study in (name, *receivers):
                self._optuna[study].set_user_attr("trial_budget", self._budget[study])

    def record_restart(self, study: optuna.Study, trial_id: str, result: dict | None, error: bool) -> None:
        """A trial Tune restarted from scratch after it errored: recorded in the study as a trial of its own."""
        distributions = self.studies[study.study_name].distributions
        result = result or {}
        params = {key: result[f"config/{key}"] for key in distributions if f"config/{key}" in result}
        value = rung_value(result)
        values = {int(result["training_iteration"]): value} if value is not None else {}
        state, value = outcome(values, result.get("config/epochs"), result, error,
                               self.rungs_per_epoch(study.study_name))
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, params=params, intermediate_values=values,
            distributions={key: distributions[key] for key in params},
            user_attrs={"tune_trial_id": trial_id, "restart_of": "errored trial"}))

    def save(self, checkpoint_path: str) -> None:
        """With the trials in flight, the time budget left now: Tune's stopper saves its own at the same moment."""
        time_left_s = self._deadline - self.clock() if self._deadline else self._time_left_s
        Path(checkpoint_path).write_text(json.dumps({
            "live": self.live, "time_left_s": time_left_s, "start_s": self.start_s,
            "timings": {trial_id: asdict(timing) for trial_id, timing in self._timings.items()}}))

    def restore(self, checkpoint_path: str) -> None:
        saved = json.loads(Path(checkpoint_path).read_text())
        self.live = {trial_id: tuple(entry) for trial_id, entry in saved["live"].items()}
        self._time_left_s = saved.get("time_left_s")
        self._timings = {trial_id: TrialTiming(**timing) for trial_id, timing in saved.get("timings", {}).items()}
        self.start_s = saved.get("start_s")  # None: measured at the resumed run's first report
        self._first_ask_at = None
        self._reserve_s = self.confirmation_reserve_s() if self.confirm_seeds else 0.0
        self._deadline = None  # set again from the time left at the first ask
        self._optuna = None  # reopen: trials asked after this state was saved become orphans to hand out


def time_left_when_saved(experiment_dir: Path) -> float | None:
    """The time budget the search had left at its last saved state (None: never saved, or no budget): what a
    resumed sweep goes on with."""
    states = sorted(Path(experiment_dir).glob(Searcher.CKPT_FILE_TMPL.format("*")), key=lambda p: p.stat().st_mtime)
    if not states:
        return None
    try:
        return json.loads(states[-1].read_text()).get("time_left_s")
    except (OSError, ValueError):
        return None
