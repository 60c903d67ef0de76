"""A real two-node Ray cluster on one machine: a head and a second node joined to it, one CPU each, a sweep
pointed at it with --address, and where each trial ran.

    python -m bench.two_node                                   # tiny BERT on fixture data, 4 trials
    python -m bench.two_node --data-dir D --models M --num-samples 6 --train-rows 2000

Both nodes are `ray start --block` processes in their own process groups with a private --temp-dir and free
ports, so nothing here touches another Ray cluster on the machine; they are stopped by those process ids.
Each trial is placed on a node by the `pid` Tune stamps on its results: the Ray worker with that pid logs into
its own node's temp dir. Storage is one local directory, which both nodes share because they share
the disk.
"""
from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from tests.helpers.cluster import run_on_cluster, trial_placement, two_node_cluster
from tests.helpers.data import write_goemotions
from tests.helpers.models import build_tiny_bert


def tiny_fixture(directory: Path, train_rows: int) -> tuple[Path, Path]:
    """The tests' GoEmotions-format fixture and tiny BERT, when no real data and model are given."""
    data = write_goemotions(directory / "data", sizes=(train_rows, 48, 48))
    texts = [line.split("\t")[0] for f in ("train.tsv", "dev.tsv", "test.tsv")
             for line in (data / f).read_text().splitlines()]
    return data, build_tiny_bert(directory / "tiny-bert", texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="GoEmotions files (default: the tests' fixture)")
    parser.add_argument("--models", help="model dir (default: the tests' tiny BERT)")
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="two-node-"))
    data, model = (args.data_dir, args.models) if args.data_dir else tiny_fixture(work, args.train_rows)
    with two_node_cluster() as cluster:
        done, wall_s = run_on_cluster(cluster, [
            "--data-dir", str(data), "--models", str(model), "--budget", "smoke", "--epochs", str(args.epochs),
            "--train-rows", str(args.train_rows), "--num-samples", str(args.num_samples), "--search", "random",
            "--scheduler", "none", "--cpus-per-trial", "1", "--max-concurrent", "2", "--storage", str(work),
            "--name", "two-node"])
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        placement = trial_placement(work / "two-node", cluster["temp_dirs"])
        pids = {name: proc.pid for name, proc in cluster["nodes"].items()}
    print(f"two-node sweep: {args.num_samples} trials x {args.epochs} epochs, {args.train_rows} train rows, "
          f"1 CPU per node; wall {wall_s:.1f} s; node processes (ray start --block) {pids}")
    print("| trial | node |\n|---|---|")
    for trial, node in placement.items():
        print(f"| {trial} | {node} |")
    print("trials per node:", dict(Counter(placement.values())))
    print(f"results: {work / 'two-node'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
