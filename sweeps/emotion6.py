"""dair-ai emotion (CARER, `split` config): 6 classes, one per tweet: softmax + cross-entropy.

    python sweeps/emotion6.py --data-dir ../shared/data/emotion6                              # CPU: minilm
    python sweeps/emotion6.py --models bert distilbert albert mobilebert minilm              # GPU cluster

Texts are lower-cased with punctuation stripped, and classes are imbalanced (joy 5,362 … surprise 572 train
rows), so macro-F1 (selection) sits below accuracy; both are reported, with weighted-F1.
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
    }


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "head_lr": [1e-3, 5e-3], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="emotion6",
    dataset="emotion6",
    models=("bert", "distilbert", "albert", "mobilebert", "minilm"),
    search_space=search_space,
    grid=grid,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
