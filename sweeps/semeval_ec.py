"""SemEval-2018 Task 1 E-c: 11 emotions in tweets, multi-label (a tweet may have none): sigmoid + BCE.

    python sweeps/semeval_ec.py --data-dir ../shared/data/semeval2018_ec                  # CPU: minilm
    python sweeps/semeval_ec.py --models roberta distilbert distilroberta --preprocess tweet

Validation is the official dev split; thresholds are tuned on it. Reported: Jaccard accuracy (the task's
official score), micro-F1 and macro-F1 (selection). The test file's labels are withheld, so instead of test
scores the analysis writes `<experiment>/predictions/<model>.txt` in the leaderboard layout for each
model's best trial. `preprocess` (tweet normalisation: @user, http, hashtag words, emoji names) and
inverse-frequency `pos_weight` (surprise and trust are ~5% of tweets, anger and joy ~35%) are searched;
`--preprocess` fixes the first.
"""
from optuna.distributions import CategoricalDistribution as Choice

from sweeps.experiment import Budget, Experiment, encoder_search_space
from sweeps.run import main
from trainables.tweets import PREPROCESS_CHOICES


def search_space(budget: Budget) -> dict:
    return {
        **encoder_search_space(budget),
        "pos_weight": Choice(["none", "inverse_frequency"]),
        "preprocess": Choice(list(PREPROCESS_CHOICES)),
    }


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "pos_weight": ["none", "inverse_frequency"],
            "preprocess": list(PREPROCESS_CHOICES), "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="semeval_ec",
    dataset="semeval_ec",
    metric="jaccard",  # the task's official ranking
    models=("roberta", "distilbert", "distilroberta"),
    search_space=search_space,
    grid=grid,
    fixable={"preprocess": PREPROCESS_CHOICES},
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
