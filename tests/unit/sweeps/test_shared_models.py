"""Every node can load every model: on a cluster where trials may run on another machine, a model folder of the
driver's machine is copied once into the experiment dir (atomically, reused by a resume) and trials load the copy;
on one machine, and for hub models, nothing is copied. No Ray: the clusters are described, not started."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sweeps import goemotions_raw
from sweeps.cluster import Cluster, NodeType
from sweeps.shared_models import MODELS_DIR, copy_models, place_model, trial_source
from trainables.models import ResolvedModel

TWO_NODES = Cluster("10.0.0.1:6379", [{"CPU": 8.0}, {"CPU": 8.0}])


def folder_model(path: Path) -> ResolvedModel:
    return ResolvedModel(path.name, str(path), 1.0)


def model_folder(root: Path) -> Path:
    """A model folder with a nested file and a symlink, as an HF cache snapshot links its files to blobs."""
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / "weights").write_bytes(b"w" * 1000)
    folder = root / "tiny"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "tokenizer.json").write_text("[]")
    (folder / "model.safetensors").symlink_to(root / "blobs" / "weights")
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("cluster", [
    Cluster(None, [{"CPU": 8.0}]),  # a laptop: the private Ray
    Cluster("10.0.0.1:6379", [{"CPU": 8.0}]),  # a joined cluster of one node, which cannot grow
])
def test_on_one_machine_trials_load_the_folder_itself(tmp_path, cluster):
    model = folder_model(tmp_path / "tiny")
    assert trial_source(model, cluster, tmp_path / "out" / "sweep") == {"source": model.source, "copied_from": None}


@pytest.mark.parametrize("cluster", [
    TWO_NODES,
    Cluster("10.0.0.1:6379", [{"CPU": 0.0}], [NodeType("gpu", {"CPU": 8.0, "GPU": 1.0}, 2)]),  # may add nodes
])
def test_where_trials_may_run_elsewhere_they_load_a_copy_in_the_experiment_dir(tmp_path, cluster):
    model, sweep_dir = folder_model(tmp_path / "tiny"), tmp_path / "out" / "sweep"
    assert trial_source(model, cluster, sweep_dir) == {"source": str(sweep_dir / MODELS_DIR / "tiny"),
                                                       "copied_from": model.source}


def test_hub_models_and_folders_already_in_the_storage_are_not_copied(tmp_path):
    sweep_dir = tmp_path / "out" / "sweep"
    hub = ResolvedModel("bert", "google-bert/bert-base-uncased", 110.0, revision="a" * 40)
    assert trial_source(hub, TWO_NODES, sweep_dir)["copied_from"] is None  # the shared HF cache, by commit
    in_storage = folder_model(tmp_path / "out" / "models" / "mine")  # every node reads --storage already
    assert trial_source(in_storage, TWO_NODES, sweep_dir) == {"source": in_storage.source, "copied_from": None}


def test_a_folder_is_copied_once_and_a_resume_reuses_the_copy(tmp_path):
    source = model_folder(tmp_path / "src")
    destination = tmp_path / "sweep" / MODELS_DIR / "tiny"
    assert place_model(source, destination)
    assert files_of(destination) == files_of(source)
    assert not (destination / "model.safetensors").is_symlink()  # the blob itself, not a link into this machine
    (source / "config.json").write_text('{"changed": true}')
    assert not place_model(source, destination)  # a resume: the weights the sweep started with
    assert (destination / "config.json").read_text() == "{}"
    assert sorted(p.name for p in destination.parent.iterdir()) == ["tiny"]


def test_a_copy_cut_short_leaves_no_model_and_the_next_run_copies_it_whole(tmp_path, monkeypatch):
    source = model_folder(tmp_path / "src")
    destination = tmp_path / "sweep" / MODELS_DIR / "tiny"
    copytree, copied = shutil.copytree, []

    def copy(file_src, file_dst):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(shutil.copy2(file_src, file_dst))

    def disk_full_after_one_file(src, dst, *recursing):  # copytree calls itself for each subfolder
        return copytree(src, dst, *recursing) if recursing else copytree(src, dst, copy_function=copy)

    monkeypatch.setattr(shutil, "copytree", disk_full_after_one_file)
    with pytest.raises(OSError):
        place_model(source, destination)
    assert list(destination.parent.iterdir()) == []  # no half model a resume would trust, no partial copy

    partial = destination.with_name(".tiny.partial")
    (partial / "sub").mkdir(parents=True)  # what a driver killed mid-copy leaves
    (partial / "config.json").write_text("{half")
    monkeypatch.setattr(shutil, "copytree", copytree)
    assert place_model(source, destination)
    assert files_of(destination) == files_of(source)
    assert not partial.exists()


def test_copy_models_copies_each_folder_once_and_fails_in_one_line(tmp_path, capsys):
    source = model_folder(tmp_path / "src")
    destination = str(tmp_path / "sweep" / MODELS_DIR / "tiny")
    rows = [{"source": destination, "copied_from": str(source)}] * 2 + [{"source": "org/hub", "copied_from": None}]
    copy_models(rows)  # two rows of one model (two variants): one copy
    assert capsys.readouterr().err.count("Copied") == 1
    copy_models(rows)
    assert "Copied" not in capsys.readouterr().err  # a resume

    with pytest.raises(SystemExit) as exit:
        copy_models([{"source": str(tmp_path / "sweep" / MODELS_DIR / "gone"), "copied_from": str(tmp_path / "no")}])
    assert exit.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot copy the model") and str(tmp_path / "no") in line


@pytest.fixture
def two_nodes(monkeypatch):
    """The sweep joins a two-node cluster (described); the shared-storage check asks it nothing."""
    monkeypatch.setattr("sweeps.run.join_cluster", lambda args: TWO_NODES)


def test_the_plan_says_where_every_node_loads_a_local_model(run_cli, monkeypatch, two_nodes, tmp_path,
                                                             goemotions_dir, tiny_bert):
    monkeypatch.setattr("sweeps.shared_storage.nodes_not_seeing", lambda marker: [])
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                     "smoke", "--storage", str(tmp_path / "out"), "--name", "s", "--dry-run")
    assert result.returncode == 0, result.stderr
    placed = tmp_path / "out" / "s" / MODELS_DIR / tiny_bert.name
    assert f"  model {tiny_bert.name}: {placed} (" in result.stdout
    assert f"    copied from {tiny_bert} before the first trial" in result.stdout
    assert not (tmp_path / "out").exists()  # a dry run copies nothing


def test_a_multi_node_cluster_without_shared_storage_is_refused_before_any_copy(run_cli, monkeypatch, two_nodes,
                                                                              tmp_path, goemotions_dir, tiny_bert):
    monkeypatch.setattr("sweeps.shared_storage.nodes_not_seeing", lambda marker: ["10.0.0.2"])
    (tmp_path / "out").mkdir()
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                     "smoke", "--storage", str(tmp_path / "out"), "--name", "s")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "not shared by every node" in line, line
    assert list((tmp_path / "out").iterdir()) == []  # no experiment dir, no model copy
