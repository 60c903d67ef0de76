"""What a sweep prints while it runs: a line per trial event and a progress bar over the sweep's budget.

Tune's own console output (a status table every 30 seconds, its TensorBoard hint, "Number of trials
9223372036854775807" for a searcher that decides itself when it is done) buries what a user of a sweep wants to
see: which trial runs with which parameters, its score after each epoch, how it ended, how much of the budget is
spent and the best score so far per model. `TrialLines` prints exactly that, as a Tune callback in the driver;
`quiet_tune` turns Tune's own output off unless `--verbose` asks for it.

Lines look like this (elapsed time of the sweep first):

    [  0m41s] minilm_3f2a1_00000 started: lr=5e-05 head_lr=0.003 batch_size=32 epochs=2
    [  3m20s] minilm_3f2a1_00000 epoch 1/2: val macro_f1 0.4617
    [  6m02s] minilm_3f2a1_00000 finished: val macro_f1 0.4817 (epoch 2) · 1/20 trials, 6m02s of 30m, best minilm 0.4817

On a terminal a tqdm bar under the lines shows the same progress, with its ETA; in a log file the end of
each trial's line carries it.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import optuna
from ray.tune import Callback
from tqdm import tqdm

from sweeps.studies import METRIC, RUNG_METRIC, Study


def quiet_console(verbose: bool) -> None:
    """Unless --verbose: Tune runs at verbosity 0 (sweeps/tuning.py: run_config), and Tune's and Optuna's INFO
    lines (each study created, each experiment state written) stay out of the console. Tune's newer console
    engine prints its experiment header ("Number of trials ...", the TensorBoard hint) even at verbosity 0; its
    older one prints nothing, so a quiet sweep uses that one (RAY_AIR_NEW_OUTPUT=0, as Ray's own examples with
    custom progress output do)."""
    if verbose:
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def clock(seconds: float) -> str:
    """`1h05m`, `4m12s`, `0m41s`: elapsed times in the trial lines."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def value_text(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class TrialLines(Callback):
    """One line per trial start, epoch and end (finished, stopped early, failed, retried), and a progress bar
    over the time budget (or the trial budget when there is none) with the best validation score per model.

    The same object serves the search and the confirmation phase: trials are counted against the search's
    budget, and confirmation trials are named as the seed of the trial they confirm."""

    def __init__(self, studies: list[Study], started_at: float, time_budget_s: float | None, metric: str):
        self.studies = {study.name: study for study in studies}
        self.started_at = started_at
        self.time_budget_s = time_budget_s
        self.metric = metric
        self.trial_budget = sum(study.num_samples for study in studies)
        self.ended: set[str] = set()
        self.best: dict[str, float] = {}  # study -> best validation score so far
        self.bar: tqdm | None = None

    def __getstate__(self):  # Tune saves its callbacks with the experiment state; a bar holds a stream
        return {**self.__dict__, "bar": None}

    def __setstate__(self, state):
        """Restored by `--resume` from Tune's saved Tuner, whose time budget starts again (README)."""
        self.__dict__.update(state)
        self.started_at = time.time()

    # --- what is printed

    def say(self, text: str) -> None:
        line = f"[{clock(time.time() - self.started_at):>7}] {text}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def progress(self) -> str:
        """`3/20 trials, 4m12s of 30m, best minilm 0.4817`: what a log file shows where a terminal has the bar."""
        parts = [f"{len(self.ended)}/{self.trial_budget} trials"]
        if self.time_budget_s:
            parts.append(f"{clock(time.time() - self.started_at)} of {clock(self.time_budget_s)}")
        return ", ".join(parts + [self.best_text()] if self.best else parts)

    def best_text(self) -> str:
        return "best " + ", ".join(f"{name} {score:.4f}" for name, score in self.best.items())

    def name(self, trial) -> str:
        confirms = trial.config.get("confirm_of")
        return f"{trial} (seed {trial.config.get('seed')} of {confirms})" if confirms else str(trial)

    def params(self, trial) -> str:
        """The values the study searched, as this trial got them."""
        study = self.studies.get(trial.config.get("study"))
        keys = list(study.distributions) if study else []
        return " ".join(f"{key}={value_text(trial.config[key])}" for key in keys if key in trial.config)

    # --- Tune's callback hooks (all called in the driver)

    def setup(self, **info) -> None:
        if self.bar is None:
            total = self.time_budget_s or self.trial_budget
            # disable=None: a bar only on a terminal; a log file gets the progress at the end of each trial's line
            unit = " s" if self.time_budget_s else " trials"
            self.bar = tqdm(total=round(total), disable=None, file=sys.stderr, dynamic_ncols=True, leave=False,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}" + unit + " [{elapsed}<{remaining}]{postfix}")
            self.bar.start_t = self.started_at  # elapsed and ETA count from the sweep's start, as the budget does

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self.bar is not None and not self.bar.disable and self.time_budget_s:
            self.bar.n = min(round(time.time() - self.started_at), self.bar.total)
            self.bar.refresh()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        params = self.params(trial)
        self.say(f"{self.name(trial)} started" + (f": {params}" if params else ""))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.epoch_line(trial, result)

    def epoch_line(self, trial, result: dict) -> None:
        if METRIC not in result:
            return
        score, epochs = float(result[METRIC]), trial.config.get("epochs")
        study = trial.config.get("study")
        if not trial.config.get("confirm_of") and score > self.best.get(study, float("-inf")):
            self.best[study] = score
            if self.bar is not None:
                self.bar.set_postfix_str(self.best_text(), refresh=False)
        self.say(f"{self.name(trial)} epoch {result.get('epoch', result.get('training_iteration'))}"
                 f"{f'/{epochs}' if epochs else ''}: val {self.metric} {score:.4f}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        """Finished (all its epochs), or stopped early: by ASHA, or cut by the time budget."""
        self.count_end(trial)
        scores, last = trial.metric_analysis.get(METRIC), trial.last_result or {}
        if not scores:
            if RUNG_METRIC in last:  # stopped at a rung inside its first epoch
                self.say(f"{self.name(trial)} stopped early at epoch {last.get('epoch')}: val subset {self.metric} "
                         f"{float(last[RUNG_METRIC]):.4f} · {self.progress()}")
            else:
                self.say(f"{self.name(trial)} ended before its first epoch · {self.progress()}")
            return
        epochs_run = float(last.get("epoch", last.get("training_iteration", 0)))
        planned = int(trial.config.get("epochs") or 0)
        how = "finished" if not planned or epochs_run >= planned else f"stopped early at epoch {epochs_run:g}"
        self.say(f"{self.name(trial)} {how}: best val {self.metric} {scores['max']:.4f} · {self.progress()}")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.count_end(trial)
        error = os.path.join(trial.path or "", "error.txt")
        self.say(f"{self.name(trial)} failed (its error: {error}) · {self.progress()}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self.say(f"{self.name(trial)} crashed; retrying from its last checkpoint")

    def count_end(self, trial) -> None:
        if trial.config.get("confirm_of") or trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        if self.bar is not None and not self.time_budget_s:
            self.bar.update(1)

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
