"""Whether every node of a cluster reads and writes the sweep's --storage: checked before any trial, since Tune
would only fail at the first checkpoint, after an epoch of GPU time.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from sweeps.cluster import Cluster, ClusterError

# Filesystems every node of a cluster can mount: a storage path on one of these is shared (EFS is nfs4).
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "lustre", "ceph", "glusterfs", "beegfs", "gpfs",
                       "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.mountpoint-s3", "fuse.sshfs"}


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts: the longest mount point above it)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        if (str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")) and \
                len(mount_point) > len(best):
            best, kind = mount_point, parts[2]
    return kind


def check_shared_storage(storage: Path, cluster: Cluster) -> None:
    """Refuse, before any trial, a --storage that not every node of a multi-node cluster can read and write:
    Tune would only fail at the first checkpoint, after an epoch of GPU time, and a trial retried on another node
    could not find its checkpoint. Alive nodes are asked directly (does each see a file the driver just wrote?);
    nodes the autoscaler may still add can only be vouched for by a network filesystem."""
    if not cluster.spans_machines():
        return
    existing = next(parent for parent in (storage, *storage.parents) if parent.exists())
    if len(cluster.nodes) > 1:
        marker = existing / f".shared-storage-check-{uuid.uuid4().hex}"
        try:
            marker.write_text("")
        except OSError as error:
            raise ClusterError(f"--storage {storage}: cannot write there ({error.strerror})") from None
        try:
            blind = nodes_not_seeing(marker)
        finally:
            marker.unlink(missing_ok=True)
        if blind:
            raise ClusterError(
                f"--storage {storage}: not shared by every node ({len(blind)} of {len(cluster.nodes)} nodes cannot "
                f"see it, e.g. {blind[0]}); use a directory every node mounts (cluster.yaml: /mnt/results)")
    kind = filesystem_type(existing.resolve())
    if cluster.may_add_nodes() and kind not in NETWORK_FILESYSTEMS:
        raise ClusterError(
            f"--storage {storage}: on a local {kind} filesystem, but the autoscaler may add nodes that cannot "
            f"see it; use a directory every node mounts (cluster.yaml: /mnt/results)")


def nodes_not_seeing(marker: Path) -> list[str]:
    """IP addresses of alive nodes on which `marker` does not exist (one zero-CPU task pinned to each node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    nodes = [node for node in ray.nodes() if node["Alive"]]
    answers = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                       .remote(str(marker)) for node in nodes], timeout=60)
    return [node["NodeManagerAddress"] for node, seen in zip(nodes, answers) if not seen]
