"""dair-ai emotion (CARER, `split` config): 6 classes, one per tweet: softmax + cross-entropy.

    python sweeps/emotion6.py --data-dir ../shared/data/emotion6                              # CPU: minilm
    python sweeps/emotion6.py --models bert distilbert albert mobilebert minilm              # GPU cluster
    python -m analysis.variants results/<experiment>                                         # the variants table

Each model is trained three ways, each its own study in <model>-<variant>/ (--variant fixes one): a full
fine-tune (baseline, later also served as post-training INT8), quantization-aware training for dynamic INT8
(qat), and QLoRA (qlora: 4-bit NF4 body, LoRA on query/key/value, whose studies start at r=16, alpha=32,
dropout 0.1). analysis.variants puts them in one table: accuracy, macro-F1, CPU inference time, size. On CPU
that is three times the cpu budget's ~30 minutes per model.

Texts are lower-cased with punctuation stripped, and classes are imbalanced (joy 5,362 … surprise 572 train
rows), so macro-F1 (selection) sits below accuracy; both are reported, with weighted-F1.
"""
from optuna.distributions import CategoricalDistribution as Choice
from optuna.distributions import FloatDistribution as Float

from sweeps.experiment import Budget, Experiment, encoder_search_space
from sweeps.run import main
from trainables.encoder import param_applies
from trainables.encoder_model import VARIANTS


def search_space(budget: Budget) -> dict:
    return {**encoder_search_space(budget), "lora_lr": Float(1e-4, 3e-3, log=True), "lora_r": Choice([8, 16, 32]),
            "lora_alpha": Choice([16, 32, 64]), "lora_dropout": Float(0.0, 0.2)}


def grid(budget: Budget) -> dict:
    return {"lr": [5e-5, 1.5e-4], "lora_lr": [5e-4, 2e-3], "head_lr": [1e-3, 5e-3], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="emotion6",
    dataset="emotion6",
    models=("bert", "distilbert", "albert", "mobilebert", "minilm"),
    search_space=search_space,
    grid=grid,
    fixable={"variant": VARIANTS},
    param_applies=param_applies,
    study_per="variant",
    start_at={"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.1},
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
