"""What a sweep file declares: its dataset, models and search space (`Experiment`), and the named budgets
(`smoke`, `cpu`, `full`) that size every sweep.

A sweep file is a short declaration plus `main(EXPERIMENT)` (sweeps/run.py); everything else — the command
line (sweeps/cli.py), the plan (sweeps/plan.py), the Tune experiment (sweeps/tuning.py) — is shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


@dataclass(frozen=True)
class Budget:
    """How much of the data and how many trials a sweep spends; explicit flags override each field."""
    train_rows: int | None
    val_rows: int | None
    test_rows: int | None
    max_epochs: int
    num_samples: int  # trials per model (a cap when there is a time budget)
    max_length: int
    time_budget_s: float | None
    confirm_seeds: int  # further seeds each model's best configuration is re-trained with after the search
    description: str
    # encoder trials' ASHA rungs per epoch (trainables/rungs.py): on 2 CPU cores an epoch of 16,000 rows takes
    # minutes, so a poor configuration is stopped a quarter epoch in. The full budget keeps one per epoch: its
    # GPU epochs are short, and rungs inside them are not measured there.
    rungs_per_epoch: int = 1
    # how encoder trials train, where the budget's own measurement chose other than the trainable's defaults
    # (--word-embedding-updates and --dropout override it)
    encoder_training: dict = field(default_factory=dict)


BUDGETS = {
    "smoke": Budget(64, 32, 32, 1, 2, 32, None, 0, "a few seconds per trial: tests and first tries"),
    # cpu: the 30 minutes are the limit, the trial count only a cap. With rungs inside epochs a poor trial costs
    # 20-40 s, and a SemEval E-c search asked 6 trials in its first 4 minutes: a cap of 20 would end the search
    # with half the budget unused. 100 keeps TPE's 10 random startup trials (sweeps/samplers.py).
    # cpu: sparse word-embedding updates and no dropout make a bf16 MiniLM epoch 1.26x faster on 2 cores, at the
    # same validation quality on GoEmotions and E-c over paired seeds (bench/paired_quality.py, docs/benchmarks.md).
    # Measured at this budget's 1-2 epochs only: the full budget's longer GPU runs keep the checkpoint's dropout.
    "cpu": Budget(16000, None, None, 2, 100, 64, 30 * 60, 3, "30 minutes on a 2-core laptop, one model",
                  rungs_per_epoch=4, encoder_training={"word_embedding_updates": "sparse", "dropout": 0.0}),
    "full": Budget(None, None, None, 5, 30, 128, None, 3, "whole dataset on GPUs"),
}


def encoder_search_space(budget: Budget) -> dict[str, BaseDistribution]:
    """The space every encoder sweep starts from. Short CPU budgets need high learning rates and a fast head:
    250 steps at lr 5e-5 learn little beyond the label priors, so the body goes up to 3e-4 and the freshly
    initialised head up to 1e-2."""
    return {
        "lr": FloatDistribution(2e-5, 3e-4, log=True),
        "head_lr": FloatDistribution(3e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution([16, 32]),
        "weight_decay": FloatDistribution(0.0, 0.1),
        "warmup_ratio": FloatDistribution(0.0, 0.2),
        "epochs": IntDistribution(1, budget.max_epochs),
    }


@dataclass(frozen=True)
class Experiment:
    """What one sweep file declares."""
    name: str
    dataset: str
    models: tuple[str, ...]
    search_space: Callable[[Budget], dict[str, BaseDistribution]]  # for random / tpe
    grid: Callable[[Budget], dict[str, list]]  # for grid
    cpu_models: tuple[str, ...] = ("minilm",)  # default models when no GPU is found
    offline_models: tuple[str, ...] = ()  # CPU defaults when the cpu models cannot be loaded offline (no hub)
    trainable: str = "encoder"
    # what trials are selected by, ASHA and Optuna optimise and thresholds are tuned for: the benchmark's official
    # metric (SemEval-2018 E-c is ranked by Jaccard; GoEmotions and dair-ai emotion by macro-F1)
    metric: str = "macro_f1"
    fixed: dict = field(default_factory=dict)  # config values every trial gets
    fixable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # searched choices a --flag can fix
    per_model: dict[str, dict] = field(default_factory=dict)  # config values one model's trials get (decoder mode)
    param_applies: Callable[[str, dict], bool] | None = None  # whether a searched key matters, given fixed values
    # A fixable key whose values are compared, not searched: each value gets its own study per model, in
    # <model>-<value>/ (emotion6: variant), so every variant receives the same trial budget.
    study_per: str | None = None
    # tpe/random: studies that search any of these keys try this point first (the trainable's defaults for
    # the other searched keys), so the recipe's default configuration is always among the trials.
    start_at: dict = field(default_factory=dict)
