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
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the node's process group (raylet, GCS, workers all descend from `ray start`), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.poll()
                return
            time.sleep(0.2)


@contextmanager
def two_node_cluster(cpus_per_node: int = 1, gpus_per_node: int = 0, workers: int = 1,
                     resources: dict[str, float] | None = None):
    """Yields {"address", "env", "nodes": {"head": Popen, "worker": Popen}, "temp_dirs"}; all stopped (and their
    temp dirs removed) after. `workers=0` gives a head alone; `gpus_per_node` are declared, not real: Ray
    schedules and packs trials by them (tests of GPU sharing on a machine without one), and so are the custom
    `resources` every node gets.

    Token auth on, with a token of this cluster's own in `env` (every process that joins needs it)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    root = Path(tempfile.mkdtemp(prefix="ray-2n-", dir="/tmp"))  # short: Ray's socket paths live under it
    gcs_port = free_port()
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node), "--num-gpus",
              str(gpus_per_node), "--disable-usage-stats",
              *(["--resources", json.dumps(resources)] if resources else [])]
    commands = {
        "head": ["--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1", "--dashboard-port",
                 str(free_port()), "--ray-client-server-port", str(free_port())],
        "worker": ["--address", f"127.0.0.1:{gcs_port}"],
    }
    if not workers:
        del commands["worker"]
    nodes: dict[str, subprocess.Popen] = {}
    try:
        for name, args in commands.items():
            log = root / f"{name}.log"
            nodes[name] = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", *args, *common, "--temp-dir", str(root / name),
                 "--dashboard-agent-listen-port", str(free_port())],
                stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
            wait_for_start(nodes[name], log)
        yield {"address": f"127.0.0.1:{gcs_port}", "env": env, "nodes": nodes,
               "temp_dirs": {name: root / name for name in commands}}
    finally:
        for proc in reversed(list(nodes.values())):
            stop_group(proc)
        shutil.rmtree(root, ignore_errors=True)


def wait_for_start(proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    """`ray start` logs "Ray runtime started." once the node is registered with the head."""
    deadline = time.monotonic() + timeout_s
    while "Ray runtime started." not in log.read_text():
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"ray start not up after {timeout_s} s: {log}")
        time.sleep(0.5)


def trial_placement(sweep_dir: Path, temp_dirs: dict[str, Path]) -> dict[str, str]:
    """trial dir name -> "head" | "worker" (or "head+worker" if a retry moved it): the node whose own temp dir
    holds the log of the Ray worker process whose pid Tune stamped on the trial's results."""
    node_of_pid = {int(log.stem.rsplit("-", 1)[1]): node for node, temp in temp_dirs.items()
                   for log in temp.glob("session_*/logs/worker-*.out")}
    placement = {}
    for result_file in sorted(sweep_dir.glob("*/result.json")):
        pids = {json.loads(line)["pid"] for line in result_file.read_text().splitlines() if line.strip()}
        placement[result_file.parent.name] = "+".join(sorted({node_of_pid.get(pid, f"pid {pid}?") for pid in pids}))
    return placement


def run_sweep(cluster: dict, sweep_args: list[str], timeout_s: float = 600, script: str = "goemotions_raw.py"
              ) -> tuple[subprocess.CompletedProcess, float]:
    """The sweep as a user runs it against the cluster: --address, and the cluster's token in the environment."""
    env = {"HF_HUB_OFFLINE": "1", **cluster["env"], "TUNE_RESULT_BUFFER_LENGTH": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "sweeps" / script), "--address",
                           cluster["address"], *sweep_args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout_s)
    return done, time.perf_counter() - started


def tiny_fixture(directory: Path, train_rows: int) -> tuple[Path, Path]:
    """The tests' GoEmotions-format fixture and tiny BERT, when no real data and model are given."""
    sys.path.insert(0, str(REPO))
    from tests.conftest import build_tiny_bert, write_goemotions

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
        done, wall_s = run_sweep(cluster, [
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
