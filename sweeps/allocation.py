"""`--allocate adaptive`: the trials a study reliably behind the leader has left go to the studies that are not.
StudySearcher (sweeps/searcher.py) keeps each study's counts and calls this as trials end."""
from __future__ import annotations

from dataclasses import dataclass

# --allocate adaptive: a model is reliably behind when its best validation score, even SEED_SD better, stays below
# the leader's, even SEED_SD worse (its optimistic estimate below the leader's pessimistic one). SEED_SD is the
# spread of one configuration's score over seeds, which the confirmation phase measures: 0.004-0.011 macro-F1 /
# Jaccard on GoEmotions, SemEval E-c and dair-ai emotion (docs/benchmarks.md, "Search quality").
SEED_SD = 0.01


@dataclass
class StudyCounts:
    """One study's trials so far, kept up to date as they are asked and told: reading them from the journal on
    every ask copies every trial of every study, which a large sweep asks thousands of times."""
    asked: int = 0  # handed out and not failed (a grid's failed points count; restarts of errored trials do not)
    failed: int = 0
    finished: int = 0  # COMPLETE or PRUNED: results the sampler learns from
    best: float | None = None  # the best epoch of any finished trial


def move_trials_from_behind(counts: dict[str, StudyCounts], budget: dict[str, int]
                            ) -> list[tuple[str, list[str], str]]:
    """Move, in `budget`, the trials not yet asked of each study whose best, even SEED_SD better, is below the
    leader's, even SEED_SD worse, to the studies not behind (the best first when they do not split evenly). Every
    study must have a best. Returns (study behind, the studies that got its trials, the decision in words)."""
    leader = max(counts, key=lambda name: counts[name].best)
    behind = [name for name in counts
              if counts[name].best + SEED_SD < counts[leader].best - SEED_SD and budget[name] > counts[name].asked]
    ahead = [name for name in counts if counts[name].best + SEED_SD >= counts[leader].best - SEED_SD]
    moves = []
    for name in behind:
        spare = budget[name] - counts[name].asked
        budget[name] = counts[name].asked
        shares = [spare // len(ahead) + (rank < spare % len(ahead)) for rank in range(len(ahead))]
        for receiver, extra in zip(sorted(ahead, key=lambda n: counts[n].best, reverse=True), shares):
            budget[receiver] += extra
        moves.append((name, ahead, f"{name} (best {counts[name].best:.4f}) is behind {leader} (best "
                                   f"{counts[leader].best:.4f}) by more than 2 x {SEED_SD}: its {spare} remaining "
                                   f"trials go to {', '.join(ahead)}"))
    return moves
