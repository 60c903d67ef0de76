"""GoEmotions as a single-label task (one class of 28 per row): softmax + cross-entropy, no thresholds.

    python sweeps/goemotions_simplified.py --data-dir ../shared/data/goemotions                 # CPU: minilm
    python sweeps/goemotions_simplified.py --label-rule rarest --models distilbert albert mobilebert minilm

16% of rows carry several labels. `--label-rule single` (default) keeps only one-label rows in every split;
`--label-rule rarest` keeps every row and gives a multi-label row the label with the fewest train rows.
The plan line says how many rows the rule kept per split. Metrics: macro-F1 (selection), accuracy,
weighted-F1. The space matches goemotions_raw.py (short CPU budgets need high body and head learning rates),
less pos_weight, which only the multi-label loss has.
"""
from sweeps.experiment import Budget, Experiment, encoder_search_space
from sweeps.run import main


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "head_lr": [1e-3, 5e-3], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="goemotions_simplified",
    dataset="goemotions_single",
    models=("distilbert", "albert", "mobilebert", "minilm"),
    search_space=encoder_search_space,
    grid=grid,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
