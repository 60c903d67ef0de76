"""dair-ai emotion (CARER, `split` config): 6 classes, one per tweet: softmax + cross-entropy.

    python sweeps/emotion6.py --data-dir ../shared/data/emotion6                              # CPU: minilm
    python sweeps/emotion6.py --models bert distilbert albert mobilebert minilm              # GPU cluster

Texts are lower-cased with punctuation stripped, and classes are imbalanced (joy 5,362 … surprise 572 train
rows), so macro-F1 (selection) sits below accuracy; both are reported, with weighted-F1.
"""
from sweeps.common import Budget, Experiment, encoder_search_space, main


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "head_lr": [1e-3, 5e-3], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="emotion6",
    dataset="emotion6",
    models=("bert", "distilbert", "albert", "mobilebert", "minilm"),
    search_space=encoder_search_space,
    grid=grid,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
