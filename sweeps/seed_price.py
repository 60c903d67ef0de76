"""The price of the confirmation seeds, from the search's own trials: what the search leaves them of a time
budget (StudySearcher.search_deadline, sweeps/searcher.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from sweeps.studies import Study


# What the confirmation phase costs beyond its trials' own epochs: a new Tuner starting its trial processes and
# the seeds' epochs running a little slower than the measured ones; the price of the seeds is padded by both, since
# a seed the time budget cuts short is a seed lost. The search's own start is measured (StudySearcher.start_s:
# from its first ask to its first trial's trainable starting, under this sweep's load) and added to
# CONFIRMATION_START_S, which covers what that does not see: the search's best trial usually ran in a reused
# worker, so its measured first epoch has no imports in it (10 s inside a seed's first epoch on a loaded 2-core
# machine), and the load rising between the search's start and its end. 30 s is a sixtieth of a 30-minute budget.
CONFIRMATION_START_S = 30.0
CONFIRMATION_SLACK = 1.05


@dataclass
class TrialTiming:
    """One trial's clock: when each epoch it reported ended (seconds since it started) and its best value, to price
    the confirmation seeds of whichever configuration wins."""
    study: str
    epochs: int  # the epochs its configuration trains: what each confirmation seed of it trains
    ends_s: list[float] = field(default_factory=list)
    best: float = -math.inf

    def seed_s(self) -> float:
        """One confirmation seed of this configuration: its first epoch as measured (model load and tokenized data
        included), each further epoch as long as its later epochs took (as its first, before it had one)."""
        first = self.ends_s[0]
        later = (self.ends_s[-1] - first) / (len(self.ends_s) - 1) if len(self.ends_s) > 1 else first
        return first + (self.epochs - 1) * later


def confirmation_reserve_s(best: dict[str, TrialTiming], confirm_seeds: int, studies: dict[str, Study],
                           capacity: float | None, start_s: float = 0.0) -> float:
    """The confirmation phase's length if it started now: each study's best trial so far (`best`), `confirm_seeds`
    times over at its measured price (TrialTiming.seed_s), `max_concurrent` of a study's seeds at a time and
    all studies' seeds no faster than the cluster's capacity holds them side by side; padded by
    CONFIRMATION_SLACK, plus the measured start of a Tuner's first trial (`start_s`) and CONFIRMATION_START_S.
    0 before any trial has reported an epoch."""
    seed_s = {name: timing.seed_s() for name, timing in best.items()}
    if not seed_s:
        return 0.0
    in_rounds = max(math.ceil(confirm_seeds / studies[name].max_concurrent) * seconds
                    for name, seconds in seed_s.items())
    side_by_side = sum(confirm_seeds * seconds * studies[name].units
                       for name, seconds in seed_s.items()) / capacity if capacity else 0.0
    return max(in_rounds, side_by_side) * CONFIRMATION_SLACK + start_s + CONFIRMATION_START_S


def best_timings(timings: Iterable[TrialTiming], studies: dict[str, Study]) -> dict[str, TrialTiming]:
    """Each study's best trial so far (by its best epoch), with its clock."""
    best: dict[str, TrialTiming] = {}
    for timing in timings:
        if timing.study in studies and (timing.study not in best or timing.best > best[timing.study].best):
            best[timing.study] = timing
    return best
