"""GoEmotions, all 28 labels (27 emotions + neutral), multi-label: sigmoid + BCE, thresholds tuned on dev.

    python sweeps/goemotions_raw.py --data-dir ../shared/data/goemotions            # CPU: minilm, ~30 min
    python sweeps/goemotions_raw.py --models distilbert albert mobilebert minilm     # GPU cluster

The space is the shared encoder space (sweeps/experiment.py: high body and head learning rates for short CPU
budgets) plus inverse-frequency pos_weight, because most of the 28 classes are rare.
"""
from optuna.distributions import CategoricalDistribution as Choice

from sweeps.experiment import Budget, Experiment, encoder_search_space
from sweeps.run import main


def search_space(budget: Budget) -> dict:
    return {
        **encoder_search_space(budget),
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
