"""What every phase of a sweep shares about its studies: one Optuna study per model (`Study`), kept in the
experiment's journal file (`open_journal`), and how a trial's end is told to Optuna (`outcome`, `tell`): COMPLETE
when it ran all its epochs, PRUNED (with its per-epoch values) when the scheduler or the time budget stopped it,
FAIL when it errored. Ray's OptunaSearch tells any trial with a metric COMPLETE, so TPE would learn from truncated
runs as if they were final.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from trainables.rungs import RUNG_METRIC  # what ASHA and each study's intermediate values compare

METRIC = "val_score"  # the selected metric (--metric) on validation, at thresholds tuned for it
MODE = "max"
JOURNAL = "optuna.journal"


# What Optuna's replay of a journal raises on a line it cannot use: broken JSON, a missing or mistyped field, an
# unknown op_code (which it asserts away)
REPLAY_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError, AssertionError)


class JournalError(ValueError):
    """The experiment's journal file exists but is not an Optuna journal."""


class CountedJournal(JournalFileBackend):
    """The journal file, counting the lines Optuna has read, so a line it cannot replay is named by its number.
    (Optuna skips a broken last line, which a killed driver may leave; a broken line before others it raises.)"""
    line = 0

    def read_logs(self, log_number_from: int):
        self.line = log_number_from
        logs = super().read_logs(log_number_from)
        while True:
            self.line += 1  # Optuna raises a broken line's error while reading the next one
            try:
                log = next(logs)
            except StopIteration:
                return
            yield log


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
    # tpe/random: tried after first_trial (--warm-start, sweeps/warm_start.py), as enqueue_trial's params, user_attrs
    warm_start: list[dict] = field(default_factory=list)
    distributions: dict[str, BaseDistribution] = field(init=False)

    @property
    def units(self) -> float:
        """What a trial holds of the resource that bounds the sweep: its GPU share, or its CPUs on CPUs."""
        return self.gpus or self.cpus

    def __post_init__(self):
        self.distributions = {key: CategoricalDistribution(value) if isinstance(value, list) else value
                              for key, value in self.space.items()}


def open_journal(path: Path) -> optuna.storages.JournalStorage:
    """The experiment's Optuna storage: a journal file, safe on NFS/EFS, that optuna-dashboard opens. One that
    Optuna cannot replay is a JournalError naming its line, not a traceback from the resumed sweep."""
    if path.is_file() and path.stat().st_size:
        first = path.read_text(errors="replace").split("\n", 1)[0]
        try:
            is_journal = "op_code" in json.loads(first)
        except (json.JSONDecodeError, TypeError):
            is_journal = False
        if not is_journal:
            raise JournalError(f"{path}:1: not an Optuna journal (each line is a JSON operation with an op_code)")
    backend = CountedJournal(str(path))
    try:
        return optuna.storages.JournalStorage(backend)
    except REPLAY_ERRORS as error:
        if isinstance(error, json.JSONDecodeError):
            problem = (f"not valid JSON ({error.msg}); only the last line, which a killed driver may leave "
                       f"half-written, may be broken")
        else:
            problem = f"an operation Optuna cannot replay ({type(error).__name__}: {' '.join(str(error).split())[:80]})"
        raise JournalError(f"{path}:{backend.line}: {problem}") from None


def tell(study: optuna.Study, trial_id: int, state: TrialState, value: float | None = None) -> None:
    """study.tell for a trial of this study (by storage id). A GridSampler asks the study to stop once its grid is
    used up, which Optuna allows only inside study.optimize and answers with RuntimeError; here the study's
    budget ends it, and Optuna has stored the trial before the sampler asks."""
    try:
        study.tell(optuna.Trial(study, trial_id), value, state=state)
    except RuntimeError:
        if not isinstance(study.sampler, optuna.samplers.GridSampler):
            raise


def rung_value(result: dict) -> float | None:
    """The value a result reports for its rung (older trainables and the simulator report METRIC only)."""
    value = result.get(RUNG_METRIC, result.get(METRIC))
    return None if value is None else float(value)


def epoch_values(values: dict[int, float], rungs_per_epoch: int) -> dict[int, float]:
    """The intermediate values at epoch ends (steps are rungs: epoch e ends at step e x rungs_per_epoch), which
    are scored on the whole validation split; the steps between are scored on its rung subset."""
    return {step: value for step, value in values.items() if step % rungs_per_epoch == 0}


def outcome(values: dict[int, float], epochs: int | None, result: dict | None, error: bool,
            rungs_per_epoch: int = 1) -> tuple[TrialState, float | None]:
    """COMPLETE with the best epoch's value when the trial ran all its epochs (analysis keeps that epoch's
    checkpoint), PRUNED when the scheduler or the time budget stopped it early, FAIL when it errored or never
    reported a rung."""
    if error or not values:
        return TrialState.FAIL, None
    if result and epochs and result.get("training_iteration", 0) >= int(epochs) * rungs_per_epoch:
        return TrialState.COMPLETE, max(epoch_values(values, rungs_per_epoch).values())
    return TrialState.PRUNED, None
