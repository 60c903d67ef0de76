"""GoEmotions, all 28 labels (27 emotions + neutral), multi-label: sigmoid + BCE, thresholds tuned on dev.

    python sweeps/goemotions_raw.py --data-dir ../shared/data/goemotions            # CPU: minilm, ~30 min
    python sweeps/goemotions_raw.py --models distilbert albert mobilebert minilm     # GPU cluster

Short CPU budgets need high learning rates and a fast head: 250 steps at lr 5e-5 learn little beyond the
label priors on 28 rare-ish labels, so the space reaches up to 3e-4 for the body and 1e-2 for the head, and
inverse-frequency pos_weight is a choice because most classes are rare.
"""
from optuna.distributions import CategoricalDistribution as Choice
from optuna.distributions import FloatDistribution as Float
from optuna.distributions import IntDistribution as Int

from sweeps.common import Budget, Experiment, main


def search_space(budget: Budget) -> dict:
    return {
        "lr": Float(2e-5, 3e-4, log=True),
        "head_lr": Float(3e-4, 1e-2, log=True),
        "batch_size": Choice([16, 32]),
        "weight_decay": Float(0.0, 0.1),
        "warmup_ratio": Float(0.0, 0.2),
        "epochs": Int(1, budget.max_epochs),
        "pos_weight": Choice(["none", "inverse_frequency"]),
    }


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "pos_weight": ["none", "inverse_frequency"], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="goemotions_raw",
    dataset="goemotions",
    models=("distilbert", "albert", "mobilebert", "minilm"),
    search_space=search_space,
    grid=grid,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
