"""Every node can load every model: a model that trials read from a folder on the driver's machine (a `--models
/path/to/model` directory, the SmolLM2 folder converted into this machine's ~/.cache, minilm's PyPI package) is
not on the other nodes of a multi-node cluster, so there each trial would fail to load it. Where trials may run on
another machine, such a folder is copied once, before the first trial, into the experiment dir (which
check_shared_storage has made sure every node reads): `<storage>/<name>/models/<model>/`. Trials load the copy;
the plan prints it, sweep.json records it (`source`, with `copied_from`), and a resume finds it there and loads
the same weights the sweep started with. Hub models need no copy: trials load them by hub id and commit (on the
cluster from the HF cache every node mounts, HF_HOME on EFS), and a folder already inside --storage is shared.
On one machine nothing is copied.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sweeps.cli import fail
from sweeps.cluster import Cluster
from trainables.models import ResolvedModel

MODELS_DIR = "models"


def trial_source(model: ResolvedModel, cluster: Cluster, sweep_dir: Path) -> dict:
    """The plan row's `source` (what trials load) and `copied_from` (None: no copy): a folder of this machine's
    is loaded from its copy in the experiment dir where trials may run on another machine."""
    local_folder = model.revision is None  # a hub model is pinned to a commit; a folder has none
    if not (local_folder and cluster.spans_machines()) or Path(model.source).is_relative_to(sweep_dir.parent):
        return {"source": model.source, "copied_from": None}
    return {"source": str(sweep_dir / MODELS_DIR / model.name), "copied_from": model.source}


def copy_models(rows: list[dict]) -> None:
    """Copy each folder the plan's rows load from a copy (several rows of one model share it), before any
    trial; a copy that fails ends the sweep in one line."""
    for source, destination in sorted({(row["copied_from"], row["source"]) for row in rows if row["copied_from"]}):
        try:
            if place_model(Path(source), Path(destination)):
                print(f"Copied {source} to {destination}, where every node loads it", file=sys.stderr)
        except OSError as error:
            fail(f"cannot copy the model {source} to {destination} for every node to load: {error}")


def place_model(source: Path, destination: Path) -> bool:
    """Copy the folder `source` to `destination`, unless it is there already (a resume: its trials keep loading
    the weights the sweep started with); returns whether it copied. The copy is made beside it under a hidden
    name and renamed when complete (atomic on POSIX filesystems, NFS included), so a driver killed mid-copy leaves
    only that partial copy, which is never loaded and which the next run removes before copying again."""
    if destination.is_dir():
        return False
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, partial)  # symlinks (an HF cache snapshot's, into its blobs) copied as files
        partial.rename(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return True
