"""A real multi-node Ray cluster on one machine: a head and nodes joined to it (`ray start --block` processes in
their own process groups, with a private --temp-dir and free ports, so nothing here touches another Ray cluster
on the machine; they are stopped by those process ids), a sweep pointed at it with --address, and where each
trial ran: a trial is placed on a node by the `pid` Tune stamps on its results, since the Ray worker with that pid
logs into its own node's temp dir. Storage is one local directory, which the nodes share because they share the
disk."""
from __future__ import annotations

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
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.sweeps import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 2) -> None:
    """SIGTERM the node's process group (raylet, GCS, workers all descend from `ray start`), then SIGKILL: a
    `ray start --block` node outlives SIGTERM for over 10 s (measured), so the grace is short; nothing of a test
    cluster needs a clean shutdown, its temp dir is removed after."""
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
                     resources: dict[str, float] | None = None, home: Path | None = None):
    """Yields {"address", "env", "nodes": {"head": Popen, "worker": Popen}, "temp_dirs"}; all stopped (and their
    temp dirs removed) after. `workers=0` gives a head alone; `gpus_per_node` are declared, not real: Ray
    schedules and packs trials by them (tests of GPU sharing on a machine without one), and so are the custom
    `resources` every node gets. `home`: the HOME of the nodes (and so of the tasks they run), not of `env`,
    as on a cluster whose nodes are other machines than the driver's.

    Token auth on, with a token of this cluster's own in `env` (every process that joins needs it)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    node_env = {**env, "HOME": str(home)} if home else env
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
                stdout=open(log, "w"), stderr=subprocess.STDOUT, env=node_env, start_new_session=True)
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


def run_on_cluster(cluster: dict, sweep_args: list[str], timeout_s: float = 600,
                   script: str = "goemotions_raw.py") -> tuple[subprocess.CompletedProcess, float]:
    """The sweep as a user runs it against the cluster: --address, and the cluster's token in the environment."""
    env = {"HF_HUB_OFFLINE": "1", **cluster["env"], "TUNE_RESULT_BUFFER_LENGTH": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "sweeps" / script), "--address",
                           cluster["address"], *sweep_args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout_s)
    return done, time.perf_counter() - started
