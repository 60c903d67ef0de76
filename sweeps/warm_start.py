"""`--warm-start RESULTS_DIR ...`: each model's study starts with the best configurations that earlier sweeps'
studies of the same model found, so a sweep on a related dataset (or a new budget or seed) starts where they ended.

The configurations are enqueued in the new study (`Study.enqueue_trial`): its first trials train them on this
sweep's data and are told their own values. The alternative, `add_trial` of the old trials with their old values,
would let TPE learn from scores measured on other rows, another budget or another dataset as if they were this
study's; another dataset's score is not comparable (each has its own macro-F1 ceiling), and even on the same data
the budget or the threshold search may differ. Enqueueing spends the trials it re-measures and misleads nothing.

From each source experiment, read-only (its journal is replayed, never written): the COMPLETE trials of the study
named as the plan row (the model, or model-variant), best first. Their params are fitted to this study's space: a
param it does not search (fixed here, or not in its space) is dropped; a number outside its range is clipped into
it (and rounded to its step), as the edge is the nearest value this study may try; a categorical value it does not
offer is dropped, as no choice is nearest. The sampler draws whatever is dropped. Configurations that fit to the
same params are kept once, and one with no param left is skipped. A study takes up to WARM_START_K a source, and at
most half its trial budget in all (at least one): the sampler keeps the rest.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweeps.cli import OLDER_SWEEPS, fail
from sweeps.studies import JOURNAL, JournalError, open_journal

WARM_START_K = 3


def add_warm_starts(rows: list[dict], spaces: dict[str, dict], args) -> None:
    """Each plan row's warm start (`row["warm_start"]`: its sources, each with the trials taken from it). A resume
    takes the ones its experiment chose at its start (resumed_args): its journal has them enqueued already, and a
    source may have moved or grown since."""
    saved = getattr(args, "warm_starts", None)
    found = saved if saved is not None else finished_trials(args.warm_start or [], [row["name"] for row in rows])
    for row in rows:
        row["warm_start"] = chosen(found.get(row["name"], []), spaces[row["name"]], row["num_samples"])


def finished_trials(dirs: list[str], names: list[str]) -> dict[str, list[dict]]:
    """Per plan row, each source experiment's finished trials of it, best first."""
    by_name: dict[str, list[dict]] = {name: [] for name in names}
    for source in dirs:
        for name, found in source_trials(Path(source), names).items():
            by_name[name].append(found)
    return by_name


def source_trials(source: Path, names: list[str]) -> dict[str, dict]:
    """A source experiment's COMPLETE trials of each of `names` it has a study of. One without a study of any, or
    with no finished trial in them, is refused: the flag would silently do nothing."""
    sweep = source_plan(source)
    storage = source_journal(source)
    studies = optuna.get_all_study_names(storage)
    ours = [name for name in names if name in studies]
    if not ours:
        fail(f"--warm-start {source}: no study of {', '.join(names)} in {source} (it has: "
             f"{', '.join(studies) or 'none'})")
    complete = {name: sorted(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False,
                                                    states=(TrialState.COMPLETE,)),
                             key=lambda trial: trial.value, reverse=True) for name in ours}
    if not any(complete.values()):
        fail(f"--warm-start {source}: no finished trial of {', '.join(ours)} in {source / JOURNAL} (only running, "
             f"pruned or failed ones)")
    metric = sweep["args"].get("metric", OLDER_SWEEPS["metric"])
    return {name: {"experiment": str(source), "dataset": sweep["dataset"], "metric": str(metric),
                   "best": trials[0].value, "trials": [{"trial": trial.number, "value": trial.value,
                                                        "params": trial.params} for trial in trials]}
            for name, trials in complete.items() if trials}


def source_plan(source: Path) -> dict:
    """The source's sweep.json: the dataset and metric its trials' values are of."""
    if not ((source / "sweep.json").is_file() and (source / JOURNAL).is_file()):
        fail(f"--warm-start {source}: not a sweep experiment (no sweep.json and {JOURNAL} in it)")
    try:
        sweep = json.loads((source / "sweep.json").read_bytes())
    except OSError as error:
        fail(f"--warm-start {source}: cannot read sweep.json ({error.strerror})")
    except ValueError as error:  # not JSON, or not UTF-8
        fail(f"--warm-start {source}: sweep.json: not valid JSON ({error})")
    if not (isinstance(sweep, dict) and isinstance(sweep.get("dataset"), str) and isinstance(sweep.get("args"), dict)):
        fail(f"--warm-start {source}: sweep.json: dataset, args: missing; not a sweep's saved plan")
    return sweep


def source_journal(source: Path) -> optuna.storages.JournalStorage:
    """The source's Optuna journal, opened to read: the file exists, so Optuna's file backend writes nothing."""
    try:
        return open_journal(source / JOURNAL)
    except JournalError as error:
        fail(f"--warm-start {source}: {error}")
    except OSError as error:
        fail(f"--warm-start {source}: cannot read {JOURNAL} ({error.strerror})")


def chosen(sources: list[dict], space: dict, num_samples: int) -> list[dict]:
    """The sources' best trials for one study, their params fitted to its space, each configuration once: up to
    WARM_START_K a source and half the study's trial budget in all (at least one). Sources that give none are
    left out."""
    cap = max(1, num_samples // 2)
    seen: list[dict] = []
    kept = []
    for source in sources:
        room = min(WARM_START_K, cap - len(seen))
        trials = []
        for trial in source["trials"]:
            if len(trials) == room:
                break
            params = fitted(trial["params"], space)
            if params and params not in seen:
                seen.append(params)
                trials.append({**trial, "params": params})
        if trials:
            kept.append({**source, "trials": trials})
    return kept


def fitted(params: dict, space: dict) -> dict:
    """The params this study searches, each moved into its distribution (the module docstring says how)."""
    kept = {}
    for key, value in params.items():
        distribution = space.get(key)
        if isinstance(distribution, CategoricalDistribution):
            if value in distribution.choices:
                kept[key] = value
        elif distribution is not None and is_number(value):
            kept[key] = clipped(value, distribution)
    return kept


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clipped(value: float, distribution: FloatDistribution | IntDistribution) -> float | int:
    value = min(max(value, distribution.low), distribution.high)
    if distribution.step:  # an IntDistribution's is 1 at least; a FloatDistribution's may be None
        steps = round((value - distribution.low) / distribution.step)
        value = min(distribution.low + steps * distribution.step, distribution.high)
    return int(value) if isinstance(distribution, IntDistribution) else float(value)


def enqueued(row: dict) -> list[dict]:
    """The row's warm-start trials as its study enqueues them (`Study.enqueue_trial` keywords): their params, and
    the user attr `warm_start_from` naming the source experiment and its trial number."""
    return [{"params": trial["params"],
             "user_attrs": {"warm_start_from": {"experiment": source["experiment"], "trial": trial["trial"]}}}
            for source in row["warm_start"] for trial in source["trials"]]


def warm_start_lines(row: dict, asked: bool) -> list[str]:
    """The plan's lines on a row's warm start: one per source it takes configurations from, or why it takes none."""
    lines = [f"warm start: {len(source['trials'])} configuration{'s' * (len(source['trials']) != 1)} from "
             f"{source['experiment']} ({source['dataset']}, val {source['metric']} {source['best']:.4f} best)"
             for source in row["warm_start"]]
    if asked and not lines:
        return [f"warm start: none (no finished trial of {row['name']} in the --warm-start experiments has a value "
                f"this study searches)"]
    return lines
