"""The simulated sweep both cluster benchmarks run: goemotions_raw's studies sized by the sweep's own sizing on a
cluster of node types, and the synthetic learning curve their trials report. bench/cluster_sim.py runs it on
real Ray with sleeping trials; bench/simulator.py on a virtual clock (and is validated against the former).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from sweeps import cluster as sweep_cluster
from sweeps.experiment import BUDGETS
from sweeps.goemotions_raw import EXPERIMENT
from sweeps.plan import epoch_tflop, first_trial, searched_space, size_trials
from sweeps.studies import Study
from trainables.models import MODELS, ResolvedModel, compute_profile

TRAIN_ROWS = 43_410  # GoEmotions train split, all rows (the `full` budget)
DECODERS = ("qwen3-0.6b", "qwen2.5-7b")  # trained with QLoRA (sized as decoders)
DECODER_BATCH_SIZE = 8  # trainables/decoder.py DEFAULTS
# Best val macro-F1 each model reaches, at the body and head learning rates where it does (invented).
# The decoders' (bench/simulator.py --models qwen3-0.6b qwen2.5-7b) are as invented, on the same space.
CURVES = {"distilbert": (0.50, 5e-5, 2e-3), "albert": (0.46, 3e-5, 1e-3), "mobilebert": (0.47, 8e-5, 3e-3),
          "minilm": (0.45, 1.5e-4, 3e-3), "qwen3-0.6b": (0.52, 1e-4, 2e-3), "qwen2.5-7b": (0.56, 5e-5, 1e-3)}

def val_macro_f1(config: dict, epoch: int, noise: random.Random) -> float:
    best, best_lr, best_head_lr = CURVES[config["model"]]
    ceiling = (best - 0.15 * math.log10(config["lr"] / best_lr) ** 2
               - 0.05 * math.log10(config["head_lr"] / best_head_lr) ** 2
               - (0.0 if config["pos_weight"] == "inverse_frequency" else 0.03))
    rate = 0.8 * (config["lr"] / best_lr) ** 0.3  # a higher learning rate gets near its ceiling sooner
    return min(1.0, max(0.0, ceiling * (1 - math.exp(-rate * epoch)) + noise.gauss(0, 0.01)))


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]
    min_workers: int
    max_workers: int


def trial_size_for(model: ResolvedModel, node_types: list[NodeType], batch_size: int,
                   max_length: int) -> sweep_cluster.TrialSize:
    """The sweep's own sizing (sweeps/plan.py size_trials) of a model's trials on a cluster of these node types
    (all launchable), at the largest batch the search may pick, as make_plan sizes them."""
    cluster = sweep_cluster.Cluster("simulated", [], [sweep_cluster.NodeType(t.name, t.resources, t.max_workers)
                                                      for t in node_types])
    return size_trials(model, cluster, True, batch_size=batch_size, max_length=max_length,
                       decoder=model.name in DECODERS)


def resolved(alias: str) -> ResolvedModel:
    return ResolvedModel(alias, MODELS[alias].hub_id, MODELS[alias].params_m)


def build_studies(models: list[str], node_types: list[NodeType], num_samples: int, max_epochs: int,
                  seed: int, trials: dict[str, int] | None = None) -> list[Study]:
    """One study per model, as sweeps/run.py studies_of builds them from the plan's rows (goemotions_raw, tpe)."""
    budget = replace(BUDGETS["full"], max_epochs=max_epochs)
    fixed = {"max_length": budget.max_length, "seed": seed, "thresholds": "per_label", "metric": "macro_f1"}
    studies = []
    for alias in models:
        model = resolved(alias)
        space = searched_space(EXPERIMENT, budget, "tpe", fixed)
        # a decoder trains at the QLoRA recipe's batch size (trainables/decoder.py), an encoder at the largest
        # the search may pick, as make_plan sizes each
        batch_size = DECODER_BATCH_SIZE if alias in DECODERS else max(space["batch_size"].choices)
        size = trial_size_for(model, node_types, batch_size, budget.max_length)
        studies.append(Study(
            name=model.name, config={**fixed, "model": model.name, "model_source": model.source,
                                     "model_revision": model.revision},
            space=space, num_samples=(trials or {}).get(alias, num_samples), max_concurrent=size.max_concurrent,
            cpus=size.cpus,
            gpus=size.gpus, custom=size.custom, first_trial=first_trial(EXPERIMENT, space),
            epoch_tflop=epoch_tflop(compute_profile(model), TRAIN_ROWS, budget.max_length)))
    return studies
