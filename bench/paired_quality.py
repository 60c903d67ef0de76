"""Does a faster training option cost validation quality? Paired seeds at the `cpu` budget, on GoEmotions and on
SemEval E-c: each dataset's best configuration from its README / E-c sweep, trained by the real encoder trial (Ray
Tune, 2 CPUs) once per arm and seed, every arm with the same seeds (same head initialisation, batch order and
subsample), so an option's effect is read as the mean of per-seed differences against the baseline arm, beside the
seed-to-seed standard deviation it must stay within. Validation only: the test split is not predicted.

    python -m bench.paired_quality --goemotions ../shared/data/goemotions --semeval-ec ../shared/data/semeval2018_ec
        [--seeds 3]

Arms: the word embeddings' updates (dense | sparse) x dropout (the checkpoint's 0.1 | 0), the two options the
throughput profile points to (bench/throughput.py). Prints one table per dataset.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray
from ray import tune

from trainables.data import load_dataset
from trainables.encoder import train_encoder
from trainables.models import offline_minilm_path

# The best trials of the default sweeps of 6 Dec 2026 (docs/benchmarks.md, "The `cpu` budget"): GoEmotions
# minilm_8114a086 (val macro-F1 0.4989), E-c minilm_a1e84aa0 (val Jaccard 0.6085). One epoch each; rungs off (no
# ASHA here, and a rung's scoring only costs time).
BEST = {
    "goemotions": {"batch_size": 16, "epochs": 1, "head_lr": 0.0075801177136650185, "lr": 0.00011885406878599757,
                   "metric": "macro_f1", "pos_weight": "inverse_frequency", "warmup_ratio": 0.1582025799952416,
                   "weight_decay": 0.028664091499300395},
    "semeval_ec": {"batch_size": 32, "epochs": 1, "head_lr": 0.008161570735434191, "lr": 0.00023902623908835747,
                   "metric": "jaccard", "pos_weight": "inverse_frequency", "preprocess": "tweet",
                   "warmup_ratio": 0.01322067041204379, "weight_decay": 0.08799016002982275},
}
CPU_TRAIN_ROWS = 16000  # the `cpu` budget (sweeps/experiment.py): 16,000 training rows, every validation row
ARMS = {
    "baseline (dense, dropout 0.1)": {"word_embedding_updates": "dense", "dropout": None},
    "sparse embedding updates": {"word_embedding_updates": "sparse", "dropout": None},
    "dropout 0": {"word_embedding_updates": "dense", "dropout": 0.0},
    "sparse + dropout 0": {"word_embedding_updates": "sparse", "dropout": 0.0},
}


def run_arms(dataset: str, data_dir: str, seeds: int) -> dict[str, list[tuple[float, float]]]:
    """(val_score, train_examples_per_s) per arm, one per seed, seeds outermost (a cut-short run stays paired)."""
    data = load_dataset(dataset, data_dir).subsample(CPU_TRAIN_ROWS, None, None, seed=0)
    base = {"model": "minilm", "model_source": offline_minilm_path(), "max_length": 64, "rungs_per_epoch": 1,
            **BEST[dataset]}
    results = {arm: [] for arm in ARMS}
    for seed in range(seeds):
        for arm, options in ARMS.items():
            with tempfile.TemporaryDirectory() as storage:
                tuner = tune.Tuner(tune.with_resources(tune.with_parameters(train_encoder, data=data), {"CPU": 2}),
                                   param_space={**base, **options, "seed": seed},
                                   run_config=tune.RunConfig(storage_path=storage, verbose=0))
                [result] = tuner.fit()
                if result.error:
                    raise result.error
            score, speed = result.metrics["val_score"], result.metrics["train_examples_per_s"]
            results[arm].append((score, speed))
            print(f"# {time.strftime('%H:%M:%S')} {dataset} seed {seed} {arm}: val {score:.4f}, "
                  f"{speed:.1f} train examples/s", flush=True)
    return results


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def print_table(dataset: str, results: dict[str, list[tuple[float, float]]]) -> None:
    metric = BEST[dataset]["metric"]
    baseline = [score for score, _ in results[next(iter(ARMS))]]
    print(f"\n## {dataset}: validation {metric}, {len(baseline)} paired seeds (seed 0, 1, ...)")
    print("| arm | per seed | mean ± sd | paired difference vs baseline, mean ± sd | train examples/s (median) |")
    print("|---|---|---|---|---|")
    for arm, runs in results.items():
        scores = [score for score, _ in runs]
        differences = [score - base for score, base in zip(scores, baseline)]
        print(f"| {arm} | {' / '.join(f'{s:.4f}' for s in scores)} | {statistics.mean(scores):.4f} ± "
              f"{spread(scores):.4f} | {statistics.mean(differences):+.4f} ± {spread(differences):.4f} | "
              f"{statistics.median(speed for _, speed in runs):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goemotions", required=True, help="GoEmotions release directory")
    parser.add_argument("--semeval-ec", required=True, help="SemEval-2018 E-c release directory")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tables = {dataset: run_arms(dataset, data_dir, args.seeds)
                  for dataset, data_dir in (("semeval_ec", args.semeval_ec), ("goemotions", args.goemotions))}
    finally:
        ray.shutdown()
    for dataset, results in tables.items():
        print_table(dataset, results)


if __name__ == "__main__":
    main()
