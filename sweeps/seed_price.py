"""The price of the confirmation seeds, from the search's own trials: what the search leaves them of a time
budget (StudySearcher.search_deadline, sweeps/searcher.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from sweeps.studies import Study


# What the confirmation phase costs beyond its trials' own epochs: a new Tuner starting its trial processes
# (importing torch and transformers) and the seeds' epochs running a little slower than the measured ones; the
# price of the seeds is padded by both, since a seed the time budget cuts short is a seed lost. The search's best
# trial usually ran in a reused worker, so its measured first epoch has no imports in it; on a 2-core machine
# loaded by a second sweep the new Tuner took 10 s to start its seed and the imports another 10 s inside its first
# epoch: 30 s covers that, a sixtieth of a 30-minute budget.
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
                           capacity: float | None) -> float:
    """The confirmation phase's length if it started now: each study's best trial so far (`best`), `confirm_seeds`
    times over at its measured price (TrialTiming.seed_s), `max_concurrent` of a study's seeds at a time and
    all studies' seeds no faster than the cluster's capacity holds them side by side; padded by
    CONFIRMATION_SLACK and CONFIRMATION_START_S. 0 before any trial has reported an epoch."""
    seed_s = {name: timing.seed_s() for name, timing in best.items()}
    if not seed_s:
        return 0.0
    in_rounds = max(math.ceil(confirm_seeds / studies[name].max_concurrent) * seconds
                    for name, seconds in seed_s.items())
    side_by_side = sum(confirm_seeds * seconds * studies[name].units
                       for name, seconds in seed_s.items()) / capacity if capacity else 0.0
    return max(in_rounds, side_by_side) * CONFIRMATION_SLACK + CONFIRMATION_START_S


def best_timings(timings: Iterable[TrialTiming], studies: dict[str, Study]) -> dict[str, TrialTiming]:
    """Each study's best trial so far (by its best epoch), with its clock."""
    best: dict[str, TrialTiming] = {}
    for timing in timings:
        if timing.study in studies and (timing.study not in best or timing.best > best[timing.study].best):
            best[timing.study] = timing
    return best
