"""Plans made against real local Ray clusters (declared GPUs, an autoscaling head's node types): GPU shares,
GPU classes, refused local storage, a GPU trial without CUDA."""
from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from sweeps.cluster import LARGE_GPU, SMALL_GPU
from tests.helpers.cluster import run_on_cluster, two_node_cluster
from tests.helpers.data import write_goemotions
from tests.helpers.sweeps import REPO, run_sweep
from trainables.device import SIMULATED_GPUS_ENV
from trainables.models import MODELS

CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("planning")
    return write_goemotions(root / "data"), shutil.copytree(tiny_bert, root / "tiny")


@pytest.fixture(scope="module")
def gpu_cluster():
    """One head with 8 CPUs, 2 declared GPUs and cluster.yaml's GPU classes, shared by the tests that only plan
    against it (or run one trial that must fail): starting a cluster costs seconds each. Its nodes start without
    the GPU simulation switch, so a trial given a GPU meets a torch without CUDA, as on a misconfigured node."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SIMULATED_GPUS_ENV)
        with two_node_cluster(cpus_per_node=8, gpus_per_node=2, workers=0,
                              resources={SMALL_GPU: 2, LARGE_GPU: 2}) as cluster:
            yield cluster


def plan_on(cluster: dict, data_and_model, tmp_path, *flags: str, env: dict | None = None):
    data, model = data_and_model
    done, _ = run_on_cluster({**cluster, "env": {**cluster["env"], **(env or {})}}, [
        "--data-dir", str(data), "--models", str(model), "--storage", str(tmp_path / "runs"), "--name", "plan",
        "--dry-run", *flags])
    return done


def test_dry_run_on_a_cluster_with_gpus_plans_gpu_shares(tmp_path, data_and_model, gpu_cluster):
    """The issue's reproduction: `ray start --head --num-gpus 2 --num-cpus 8` and a driver without CUDA."""
    on_gpus = plan_on(gpu_cluster, data_and_model, tmp_path)
    on_cpus = plan_on(gpu_cluster, data_and_model, tmp_path, "--device", "cpu")
    assert on_gpus.returncode == 0, on_gpus.stderr[-2000:]
    assert "1 node, 8 CPUs, 2 GPUs, 2 large_gpu, 2 small_gpu; trials train on GPUs" in on_gpus.stdout
    assert "budget full" in on_gpus.stdout
    # a tiny model's step is sized by its memory: an eighth of a GPU; 16 eighths, but 8 CPUs
    assert f"1 CPU + 0.125 GPU + 0.125 {SMALL_GPU} per trial, up to 8 at once (memory" in on_gpus.stdout
    assert on_cpus.returncode == 0, on_cpus.stderr[-2000:]
    assert "trials train on CPUs" in on_cpus.stdout and "budget cpu" in on_cpus.stdout
    assert "8 CPU + 0 GPU per trial, up to 1 at once" in on_cpus.stdout
    assert not (tmp_path / "runs").exists()


def test_autoscaling_head_plans_from_node_types_and_refuses_local_storage(tmp_path, data_and_model):
    """On a `ray up` cluster (~/ray_bootstrap_config.yaml on its head; no GPU node up yet), the plan sizes trials
    for the GPU workers to come, asks for their custom resource, and refuses a --storage only this node sees.
    The config is in the head's home only, not the driver's: the driver reads it on the head, as it must when it
    runs on another machine (a worker node, a laptop joined with --address). A damaged config there is one line."""
    head_home, driver_home = tmp_path / "head-home", tmp_path / "driver-home"
    head_home.mkdir()
    driver_home.mkdir()
    (head_home / "ray_bootstrap_config.yaml").write_text(CLUSTER_YAML.read_text())
    with two_node_cluster(cpus_per_node=2, gpus_per_node=0, workers=0, home=head_home) as cluster:
        local = plan_on(cluster, data_and_model, tmp_path, env={"HOME": str(driver_home)})
        (head_home / "ray_bootstrap_config.yaml").write_text("available_node_types: [unclosed\n")
        damaged = plan_on(cluster, data_and_model, tmp_path, env={"HOME": str(driver_home)})
    assert damaged.returncode == 2 and damaged.stderr.strip().splitlines()[-1].startswith(
        f"error: --address {cluster['address']}: the head's {head_home / 'ray_bootstrap_config.yaml'}:2: not a "
        f"readable autoscaler config ("), damaged.stderr[-2000:]
    assert not (driver_home / "ray_bootstrap_config.yaml").exists()
    assert local.returncode == 2
    [line] = local.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: --storage {tmp_path / 'runs'}: on a local") and "may add nodes" in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written

    nodes = yaml.safe_load(CLUSTER_YAML.read_text())["available_node_types"]
    small = nodes["gpu_small"]["resources"]
    assert f"its autoscaler may add {nodes['gpu_small']['max_workers']}x gpu_small" in local.stdout
    assert (f"{int(small['CPU'] * 0.125)} CPU + 0.125 GPU + 0.125 {SMALL_GPU} per trial" in local.stdout)


def test_a_gpu_trial_on_a_machine_without_cuda_errors_with_one_line(tmp_path, data_and_model, gpu_cluster):
    """No simulation switch: the trial was given a (declared) GPU, torch has no CUDA, so it fails, not trains on
    CPU for hours."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data, model = data_and_model
    done, _ = run_on_cluster(gpu_cluster, [
        "--data-dir", str(data), "--models", str(model), "--budget", "smoke", "--num-samples", "1",
        "--max-failures", "0", "--storage", str(tmp_path), "--name", "nocuda"])
    [error_file] = (tmp_path / "nocuda").glob("*/error.txt")
    assert "NoCudaError: this trial was given 0.125 GPU but torch" in error_file.read_text()
    assert done.returncode == 0 or "NoCudaError" in done.stdout + done.stderr


def test_warns_when_a_cluster_runs_here_but_the_sweep_starts_its_own(tmp_path, data_and_model, gpu_cluster,
                                                                    monkeypatch):
    """`python sweeps/...` on a cluster's head without --address would quietly start a private one-node Ray."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(gpu_cluster["address"])  # what `ray start` leaves
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    data, model = data_and_model
    done = run_sweep("goemotions_raw.py", "--data-dir", str(data), "--models", str(model), "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"warning: a Ray cluster runs on this machine ({gpu_cluster['address']})" in done.stderr
    assert "--address auto" in done.stderr


def test_default_models_of_the_documented_commands_plan_gpu_shares_and_classes(tmp_path, tiny_bert, gpu_cluster):
    """The issue's "done when": on a cluster with GPUs (declared, with cluster.yaml's GPU classes), the sweeps
    without --models plan every default model on GPUs, several trials at once; Qwen2.5-7B asks for a large GPU,
    everything else for a share of a small one. The default models come from a local Hugging Face cache (tiny
    stand-ins under their hub ids), as on a head that downloaded them once."""
    from tests.helpers.data import write_semeval_ec
    from tests.helpers.models import build_tiny_qwen
    from tests.helpers.models import put_in_hub_cache

    hub_cache = tmp_path / "hub"
    qwen = build_tiny_qwen(tmp_path / "qwen", ["joy anger fear"])
    for alias in ("distilbert", "albert", "mobilebert", "minilm", "qwen3-0.6b", "qwen2.5-7b"):
        put_in_hub_cache(hub_cache, "model", MODELS[alias].hub_id, f"{len(alias):040x}",
                         files=qwen if alias.startswith("qwen") else tiny_bert)
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    semeval = write_semeval_ec(tmp_path / "ec")
    cluster = {**gpu_cluster, "env": {**gpu_cluster["env"], **env}}
    encoders, _ = run_on_cluster(cluster, [
        "--data-dir", str(write_goemotions(tmp_path / "ge")), "--storage", str(tmp_path / "runs"), "--dry-run"])
    decoders, _ = run_on_cluster(cluster, [
        "--data-dir", str(semeval), "--storage", str(tmp_path / "runs"), "--dry-run"], script="qlora_semeval_ec.py")
    assert encoders.returncode == 0, encoders.stderr[-2000:]
    shares = {}
    for alias in ("distilbert", "albert", "mobilebert", "minilm"):
        line = next(line for line in encoders.stdout.splitlines() if line.startswith(f"  model {alias}:"))
        shares[alias] = float(line.split(" GPU + ")[0].rsplit(" ", 1)[1])
        assert f" + {shares[alias]:g} GPU + {shares[alias]:g} {SMALL_GPU} per trial" in line, line
        assert 0 < shares[alias] < 1 and int(line.rsplit("up to ", 1)[1].split()[0]) > 1, line
    assert shares["albert"] > shares["minilm"]  # sized by compute: 12 layers of BERT-base's width, weights shared
    assert decoders.returncode == 0, decoders.stderr[-2000:]
    assert "budget full" in decoders.stdout
    big = next(line for line in decoders.stdout.splitlines() if line.startswith("  model qwen2.5-7b:"))
    assert " + 1 GPU + 1 large_gpu per trial, up to 2 at once" in big, big
    assert not (tmp_path / "runs").exists()
