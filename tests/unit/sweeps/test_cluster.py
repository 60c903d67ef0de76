"""The plan asks the cluster, not the driver: per-trial GPU shares, CPUs, custom resources and concurrency come
from the Ray cluster the sweep joins (its alive nodes, and the node types its autoscaler may add), and a trial
Ray gave a GPU trains on CUDA or fails in one line. Real Ray clusters that declare GPUs; no GPU needed."""
from __future__ import annotations


import pytest
import torch

from sweeps.cluster import LARGE_GPU, SMALL_GPU, Cluster, read_node_types, trial_size, use_gpus
from tests.helpers.sweeps import REPO
from trainables.device import SIMULATED_GPUS_ENV, NoCudaError, autocast_dtype, trial_device
from trainables.models import MODELS, gpu_share

CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"


def cluster_yaml_cluster() -> Cluster:
    """cluster.yaml's cluster right after `ray up`: the CPU-only head alive, every GPU worker still to start."""
    return Cluster("10.0.0.1:6379", [{"CPU": 0.0}], read_node_types(CLUSTER_YAML))


def size_of(alias: str, cluster: Cluster):
    params_m = MODELS[alias].params_m
    return trial_size(params_m, gpu_share(params_m), cluster, use_gpus("auto", cluster), None, None)


def test_a_head_without_gpus_plans_gpus_its_autoscaler_can_start():
    cluster = cluster_yaml_cluster()
    assert cluster.gpus == 0 and cluster.max_gpus > 0 and use_gpus("auto", cluster)
    assert not use_gpus("auto", Cluster(None, [{"CPU": 8.0}]))  # a laptop: CPUs
    assert not use_gpus("cpu", cluster) and use_gpus("gpu", Cluster(None, [{"CPU": 8.0}]))


def test_small_models_ask_for_small_gpus_and_big_ones_for_large_gpus():
    cluster = cluster_yaml_cluster()
    small_nodes = sum(t.max_workers for t in cluster.node_types if SMALL_GPU in t.resources)
    large_nodes = sum(t.max_workers for t in cluster.node_types if LARGE_GPU in t.resources)

    minilm = size_of("minilm", cluster)
    assert (minilm.gpus, minilm.custom) == (0.25, {SMALL_GPU: 0.25})
    cpus_per_gpu = min(t.resources["CPU"] / t.resources["GPU"] for t in cluster.node_types)
    assert minilm.cpus == int(cpus_per_gpu * 0.25)  # the CPUs that go with a quarter of a GPU node
    assert minilm.max_concurrent == 4 * small_nodes  # four per small GPU, every small GPU node scaled up

    qwen7b = size_of("qwen2.5-7b", cluster)
    assert (qwen7b.gpus, qwen7b.custom) == (1.0, {LARGE_GPU: 1})
    assert qwen7b.max_concurrent == large_nodes


def test_every_custom_resource_a_trial_can_request_exists_on_some_node_type():
    cluster = cluster_yaml_cluster()
    declared = {key for t in cluster.node_types for key in t.resources}
    for alias, info in MODELS.items():
        size = size_of(alias, cluster)
        assert set(size.custom) <= declared, alias
        # ... and on a node type big enough to hold the trial
        assert any(all(t.resources.get(key, 0) >= value for key, value in
                       {"GPU": size.gpus, "CPU": size.cpus, **size.custom}.items())
                   for t in cluster.node_types), alias


def test_without_custom_resources_trials_ask_for_gpus_only():
    two_gpus = Cluster("a:1", [{"CPU": 16.0, "GPU": 2.0}])
    size = size_of("roberta", two_gpus)
    assert (size.gpus, size.custom, size.cpus) == (0.5, {}, 4)
    assert size.max_concurrent == 4  # two trials per GPU


def test_a_trial_given_a_gpu_it_cannot_see_fails_in_one_line(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv(SIMULATED_GPUS_ENV)
    with pytest.raises(NoCudaError) as error:
        trial_device(0.25, 2)
    assert "\n" not in str(error.value) and SIMULATED_GPUS_ENV in str(error.value)
    assert trial_device(0.0, 2) == torch.device("cpu") and torch.get_num_threads() == 2  # no GPU: CPUs
    monkeypatch.setenv(SIMULATED_GPUS_ENV, "1")
    assert trial_device(0.25, 1) == torch.device("cpu")  # declared GPUs in tests: CPU, on purpose
    assert autocast_dtype(torch.device("cpu")) is None
