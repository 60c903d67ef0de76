"""What a sweep runs on: the Ray cluster's nodes and resources, and the nodes its autoscaler may still add.

The plan asks the cluster, not the driver. On a `ray up` cluster the driver runs on a CPU-only head whose
torch sees no GPU, while the GPU workers are either up (their resources are in `ray.nodes()`) or not started
yet: then only the autoscaler's node types, which `ray up` writes to ~/ray_bootstrap_config.yaml on the head,
say that GPUs are coming. Both count. That file is on the head only, and the driver need not be (a worker node,
a laptop joined with --address), so a task pinned to the head reads it there. A private local cluster (no
--address) is this machine.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trainables.gpu_memory import CUDA_CONTEXT_GB

# Per-trial custom resources: a node type that declares one is for that class of trial only (cluster.yaml).
LARGE_GPU, SMALL_GPU = "large_gpu", "small_gpu"
LARGE_MODEL_PARAMS_M = 1000  # above this a trial needs a big GPU (a 7B QLoRA trial: ~20 GB with activations)
# A GPU share is sized from one trial's training step (sweeps/plan.py size_trials), in these steps:
GPU_SHARES = (0.125, 0.25, 0.5, 1.0)
# A training step of this much work keeps one GPU busy: at the ~30 TFLOP/s that bf16 fine-tuning of HF models
# reaches on an A10G (about 40% of its dense tensor peak) it takes ~200 ms, against which the fixed per-step gaps
# (Python, kernel launches, the optimizer step, copies to the GPU: a few ms to tens of ms) no longer leave the
# GPU idle. A step of a third of this keeps it busy a third of the time, and two more such trials fill it. An
# estimate, not a measurement: bench/gpu_check.py's packing check is where to measure it.
SATURATING_STEP_TFLOP = 6.0
# The GPU a memory share is a share of, where the cluster does not say: an A10G (cluster.yaml's gpu_small).
REFERENCE_GPU_MEMORY_GB = 24.0
# GPU memory by the accelerator type Ray detects on a node (its `accelerator_type:<name>` resource).
ACCELERATOR_MEMORY_GB = {"T4": 16, "V100": 16, "A10G": 24, "L4": 24, "L40S": 48, "A100": 40, "A100-40G": 40,
                         "A100-80G": 80, "H100": 80, "H200": 141}
# GPU memory by AWS instance family, for node types the autoscaler has not started yet (cluster.yaml).
AWS_FAMILY_GPU_MEMORY_GB = {"g4dn": 16, "g5": 24, "g6": 24, "g6e": 48, "p3": 16, "p4d": 40, "p4de": 80, "p5": 80,
                            "p5e": 141, "p5en": 141}
# GPUs older than Ampere (compute capability below 8), by accelerator type and by AWS instance family: no native
# bf16, so a decoder trains there in fp32 (trainables/decoder.py decoder_dtype), with activations twice the size.
PRE_AMPERE_ACCELERATORS = {"T4", "V100", "P100", "K80", "P4", "M60"}
PRE_AMPERE_AWS_FAMILIES = {"g4dn", "p3", "p3dn", "p2", "g3", "g3s"}
STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


class ClusterError(ValueError):
    """The cluster cannot run this sweep as asked (one line)."""


AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` leaves the cluster's config, on its head
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node 1 of it (ray._common.constants)
HEAD_READ_TIMEOUT_S = 60


@dataclass(frozen=True)
class NodeType:
    """A node the autoscaler may launch: its resources, how many of it at most, and the memory of each of its
    GPUs and whether they are older than Ampere, where its instance type says (None, False: unknown)."""
    name: str
    resources: dict[str, float]
    max_workers: int
    gpu_memory_gb: float | None = None
    pre_ampere: bool = False


@dataclass(frozen=True)
class Cluster:
    address: str | None  # None: the private one-node Ray this sweep starts on this machine
    nodes: list[dict[str, float]]  # resources of each alive node
    node_types: list[NodeType] = field(default_factory=list)  # launchable workers (autoscaling clusters)

    @property
    def cpus(self) -> float:
        return sum(node.get("CPU", 0.0) for node in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(node.get("GPU", 0.0) for node in self.nodes)

    @property
    def launchable_gpus(self) -> float:
        return sum(t.resources.get("GPU", 0.0) * t.max_workers for t in self.node_types)

    @property
    def max_cpus(self) -> float:
        """CPUs once the autoscaler has started every worker it may."""
        return self.cpus + sum(t.resources.get("CPU", 0.0) * t.max_workers for t in self.node_types)

    @property
    def max_gpus(self) -> float:
        """GPUs once the autoscaler has started every GPU worker it may."""
        return self.gpus + self.launchable_gpus

    def custom_resources(self) -> set[str]:
        """Custom resources an alive or launchable node declares (cluster.yaml's large_gpu / small_gpu)."""
        names = {key for node in self.nodes for key in node} | {key for t in self.node_types for key in t.resources}
        return {name for name in names
                if name not in STANDARD_RESOURCES and not name.startswith(("node:", "accelerator_type:"))}

    def gpu_nodes(self, gpu_class: str | None = None) -> list[tuple[dict[str, float], int, float | None, bool]]:
        """(resources, how many, GB per GPU or None, whether its GPUs are older than Ampere) of every GPU node
        there is, and of every GPU node type the autoscaler may add; with `gpu_class`, only those that declare
        that custom resource."""
        nodes = [(node, 1, accelerator_memory_gb(node), pre_ampere_accelerator(node))
                 for node in self.nodes if node.get("GPU")] + [
            (t.resources, t.max_workers, t.gpu_memory_gb or accelerator_memory_gb(t.resources),
             t.pre_ampere or pre_ampere_accelerator(t.resources))
            for t in self.node_types if t.resources.get("GPU") and t.max_workers > 0]
        return [node for node in nodes if gpu_class is None or gpu_class in node[0]]

    def cpus_per_gpu(self) -> float:
        """CPUs a GPU node has per GPU (the smallest such ratio), so a trial's CPU share matches its GPU share."""
        ratios = [node.get("CPU", 0.0) / node["GPU"] for node, *_ in self.gpu_nodes()]
        return min(ratios) if ratios else 0.0

    def gpu_memory_gb(self, gpu_class: str | None) -> tuple[float, float] | None:
        """(smallest, largest) memory of one GPU among the GPU nodes a trial of `gpu_class` may land on, where
        the cluster says (Ray's detected accelerator type, or the node type's instance type); None: unknown."""
        known = [memory for _, _, memory, _ in self.gpu_nodes(gpu_class) if memory]
        return (min(known), max(known)) if known else None

    def pre_ampere_gpus(self, gpu_class: str | None) -> bool:
        """Whether a trial of `gpu_class` may land on a GPU older than Ampere, where the cluster says (as for
        gpu_memory_gb); a GPU of unknown type counts as newer."""
        return any(pre_ampere for *_, pre_ampere in self.gpu_nodes(gpu_class))

    def named_nodes(self, gpu_only: bool) -> list[tuple[str, dict[str, float]]]:
        """(name, resources) of every alive node and every node type the autoscaler may add (`gpu_only`: those
        with a GPU), for messages: a node type by its name in cluster.yaml, an alive node by its address."""
        alive = [(node_name(node), node) for node in self.nodes]
        types = [(t.name, t.resources) for t in self.node_types if t.max_workers > 0]
        return [(name, resources) for name, resources in alive + types if resources.get("GPU") or not gpu_only]

    def largest_node_cpus(self) -> float:
        return max([node.get("CPU", 0.0) for node in self.nodes]
                   + [t.resources.get("CPU", 0.0) for t in self.node_types if t.max_workers > 0] or [1.0])

    def may_add_nodes(self) -> bool:
        return any(t.max_workers > 0 for t in self.node_types)

    def spans_machines(self) -> bool:
        """Whether a trial may run on another machine than the driver's, where this machine's files are not: a
        joined cluster of more than one node, or one whose autoscaler may add nodes."""
        return self.address is not None and (len(self.nodes) > 1 or self.may_add_nodes())

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "a private Ray on this machine"
        totals = f"{len(self.nodes)} node{'s' * (len(self.nodes) != 1)}, {self.cpus:g} CPUs, {self.gpus:g} GPUs"
        custom = {name: sum(node.get(name, 0.0) for node in self.nodes) for name in self.custom_resources()}
        custom_text = "".join(f", {value:g} {name}" for name, value in sorted(custom.items()) if value)
        line = f"{where}: {totals}{custom_text}"
        if self.node_types:
            line += "; its autoscaler may add " + ", ".join(
                f"{t.max_workers}x {t.name} ({', '.join(f'{v:g} {k}' for k, v in t.resources.items())})"
                for t in self.node_types)
        return line


def node_name(resources: dict[str, float]) -> str:
    """An alive node as messages name it: by the address in Ray's `node:<ip>` resource where it has one."""
    address = next((key.removeprefix("node:") for key in resources
                    if key.startswith("node:") and key != HEAD_NODE_RESOURCE), None)
    return f"node {address}" if address else "an alive node"


def local_cluster() -> Cluster:
    """This machine, as the private Ray that `ray.init()` would start here sees it."""
    import torch

    return Cluster(None, [{"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}])


def connected_cluster(address: str) -> Cluster:
    """The cluster `ray.init(address=...)` joined: its alive nodes, and the autoscaler's node types when it is a
    `ray up` cluster (read on its head, wherever this driver runs)."""
    import ray

    nodes = [{key: float(value) for key, value in node["Resources"].items()}
             for node in ray.nodes() if node["Alive"]]
    path, text = head_autoscaler_config()
    node_types = [] if text is None else parse_node_types(text, f"the head's {path}")
    return Cluster(ray.get_runtime_context().gcs_address, nodes, node_types)


def head_autoscaler_config() -> tuple[str, str | None]:
    """(path, text or None where there is no such file) of the head node's AUTOSCALER_CONFIG, read by a zero-CPU
    task pinned to the head: the driver's own home has it only when the driver runs on the head."""
    import ray

    @ray.remote(num_cpus=0, resources={HEAD_NODE_RESOURCE: 0.001})
    def read_on_head() -> tuple[str, str | None]:
        path = Path(AUTOSCALER_CONFIG).expanduser()
        return str(path), path.read_text() if path.is_file() else None

    try:
        return ray.get(read_on_head.remote(), timeout=HEAD_READ_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the cluster's head did not answer within {HEAD_READ_TIMEOUT_S} s when asked for its "
                           f"{AUTOSCALER_CONFIG} (the autoscaler's node types)") from None


def parse_node_types(text: str, path: str) -> list[NodeType]:
    """Worker node types from an autoscaler config's text (cluster.yaml, or the copy `ray up` leaves on the head);
    `path` names it in the error."""
    try:
        config = yaml.safe_load(text) or {}
        types = config.get("available_node_types") or {}
        head = config.get("head_node_type")
        return [node_type(name, spec, config.get("max_workers", 0)) for name, spec in types.items() if name != head]
    except yaml.MarkedYAMLError as error:  # its message spans lines: the line and the problem are what matter
        line = f":{error.problem_mark.line + 1}" if error.problem_mark else ""
        raise ClusterError(f"{path}{line}: not a readable autoscaler config ({error.problem or error.context})"
                           ) from None
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise ClusterError(f"{path}: not a readable autoscaler config ({type(error).__name__}: {reason})") from None


def node_type(name: str, spec: dict, max_workers: int) -> NodeType:
    """One of an autoscaler config's available_node_types (`max_workers`: the config's, where it sets none)."""
    instance_type = (spec.get("node_config") or {}).get("InstanceType")
    return NodeType(name, {key: float(value) for key, value in (spec.get("resources") or {}).items()},
                    int(spec.get("max_workers", max_workers)), instance_gpu_memory_gb(instance_type),
                    instance_family(instance_type) in PRE_AMPERE_AWS_FAMILIES)


def accelerator_memory_gb(resources: dict[str, float]) -> float | None:
    """Memory of one GPU of a node whose resources name its accelerator type (Ray adds `accelerator_type:A10G`)."""
    return next((ACCELERATOR_MEMORY_GB[key.split(":", 1)[1]] for key in resources
                 if key.startswith("accelerator_type:") and key.split(":", 1)[1] in ACCELERATOR_MEMORY_GB), None)


def pre_ampere_accelerator(resources: dict[str, float]) -> bool:
    """Whether a node's resources name an accelerator type older than Ampere (`accelerator_type:T4`)."""
    return any(key.split(":", 1)[1] in PRE_AMPERE_ACCELERATORS for key in resources
               if key.startswith("accelerator_type:"))


def instance_family(instance_type: object) -> str | None:
    """The family of an AWS instance type (g5.2xlarge: g5); None for anything else."""
    return instance_type.split(".")[0] if isinstance(instance_type, str) else None


def instance_gpu_memory_gb(instance_type: object) -> float | None:
    """Memory of one GPU of an AWS instance type (g5.2xlarge: an A10G, 24 GB); None for any other."""
    return AWS_FAMILY_GPU_MEMORY_GB.get(instance_family(instance_type))


def use_gpus(device: str, cluster: Cluster) -> bool:
    """`--device auto` trains on GPUs when the cluster has some or its autoscaler can start some."""
    if device == "cpu":
        return False
    if device == "gpu":
        return True
    return cluster.max_gpus > 0


@dataclass(frozen=True)
class TrialSize:
    cpus: float
    gpus: float
    custom: dict[str, float]
    max_concurrent: int  # per study: as many of its trials as the cluster can hold at once
    reason: str = ""  # what decided the GPU share, for the plan ("compute: 2.2 TFLOP/step"); "" on CPUs


def gpu_class(params_m: float, cluster: Cluster) -> str | None:
    """The custom resource a trial of this size asks for besides its GPU share, where some node declares it:
    `large_gpu` above LARGE_MODEL_PARAMS_M, else `small_gpu` (cluster.yaml's GPU classes)."""
    wanted = LARGE_GPU if params_m > LARGE_MODEL_PARAMS_M else SMALL_GPU
    return wanted if wanted in cluster.custom_resources() else None


def share_of_gpu(step_tflop: float, memory_gb: float, gpu_memory_gb: float) -> tuple[float, str]:
    """The GPU share one trial asks for, and why: the larger of the fraction of a GPU its training step keeps
    busy (`step_tflop` against SATURATING_STEP_TFLOP) and the fraction of the GPU's memory it holds (its
    training memory plus the process's CUDA context), rounded up to GPU_SHARES. At most one GPU: a trial trains
    on one device, so a second GPU would only sit idle (a trial too big for one GPU is refused in the plan)."""
    compute = step_tflop / SATURATING_STEP_TFLOP
    memory = (memory_gb + CUDA_CONTEXT_GB) / gpu_memory_gb
    needed = max(compute, memory)
    share = next((share for share in GPU_SHARES if needed <= share), GPU_SHARES[-1])
    reason = (f"compute: {step_tflop:.2g} TFLOP/step" if compute >= memory
              else f"memory: {memory_gb + CUDA_CONTEXT_GB:.2g} of {gpu_memory_gb:g} GB")
    return share, reason


def trial_size(params_m: float, gpu_share: float, cluster: Cluster, on_gpu: bool, cpus_override: int | None,
               max_concurrent_override: int | None, reason: str = "") -> TrialSize:
    """CPUs, GPU share, custom resources and concurrency for one model's trials on this cluster.

    On GPUs, a trial gets the CPUs that go with its GPU share on a GPU node (a quarter GPU of an 8-CPU, 1-GPU
    node: 2 CPUs), and each study may run as many trials as the cluster's GPUs (once scaled up) hold. A model
    above LARGE_MODEL_PARAMS_M asks for `large_gpu` where some node declares it, a smaller one for `small_gpu`,
    so big trials land only on big GPUs and small trials never start a big node. On CPUs, trials of a study run
    one at a time with every CPU of a node (more trials at once only split the same cores)."""
    if not on_gpu:
        concurrent = max_concurrent_override or 1
        cpus = cpus_override or max(1, int(cluster.largest_node_cpus() // concurrent))
        return TrialSize(cpus, 0.0, {}, concurrent)
    wanted = gpu_class(params_m, cluster)
    custom = {} if wanted is None else {wanted: math.ceil(gpu_share) if wanted == LARGE_GPU else gpu_share}
    cpus = cpus_override or max(1, int(cluster.cpus_per_gpu() * gpu_share))
    if max_concurrent_override:
        concurrent = max_concurrent_override
    elif eligible := cluster.gpu_nodes(wanted):
        concurrent = max(1, sum(min(int(node["GPU"] / gpu_share + 1e-9), int(node.get("CPU", 0.0) // cpus)) * count
                                for node, count, *_ in eligible))
    else:
        concurrent = 4  # --device gpu on a cluster that shows no GPU yet: Ray queues trials until one joins
    return TrialSize(cpus, gpu_share, custom, concurrent, reason)


def unreachable(address: str, timeout_s: float = 30.0) -> str | None:
    """Why nothing answers at a host:port Ray address within `timeout_s`, or None if something does (or the
    address is `auto` / a ray:// client address, which Ray resolves itself). Ray's own connect retries for about
    14 minutes before it gives up on a port where nothing listens."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return None
    port_number = int(port)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host or "127.0.0.1", port_number), timeout=5).close()
            return None
        except OSError as error:
            if time.monotonic() >= deadline:
                return f"nothing answered there for {timeout_s:g} s ({error.strerror or error})"
            time.sleep(1.0)


def private_cluster_warning(address: str | None) -> str | None:
    """A warning when a Ray cluster runs on this machine but the sweep would start a private one instead."""
    if address:
        return None
    from ray._private.utils import read_ray_address

    running = read_ray_address()
    if not running:
        return None
    host, _, port = running.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except (OSError, ValueError):
        return None  # a stale address file: nothing runs there
    return (f"warning: a Ray cluster runs on this machine ({running}) but this sweep starts a private one-node Ray "
            f"instead; pass --address auto to run on that cluster")
