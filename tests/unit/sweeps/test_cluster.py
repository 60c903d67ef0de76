"""The plan asks the cluster, not the driver: per-trial GPU shares, CPUs, custom resources and concurrency come
from the Ray cluster the sweep joins (its alive nodes, and the node types its autoscaler may add), and a trial
Ray gave a GPU trains on CUDA or fails in one line. Real Ray clusters that declare GPUs; no GPU needed."""
from __future__ import annotations

import re

import pytest
import torch

from sweeps import emotion6, goemotions_raw
from sweeps.cluster import (ACCELERATOR_MEMORY_GB, LARGE_GPU, SMALL_GPU, Cluster, ClusterError, parse_node_types,
                            share_of_gpu, use_gpus)
from sweeps.experiment import BUDGETS
from sweeps.plan import size_trials
from tests.helpers.sweeps import REPO
from tests.helpers.data import write_emotion6
from trainables.device import SIMULATED_GPUS_ENV, NoCudaError, autocast_dtype, trial_device
from trainables.encoder_model import VARIANTS
from trainables.gpu_memory import CUDA_CONTEXT_GB, memory_fraction
from trainables.models import MODELS, ResolvedModel, compute_profile, params_m_from_config

CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"


def cluster_yaml_cluster() -> Cluster:
    """cluster.yaml's cluster right after `ray up`: the CPU-only head alive, every GPU worker still to start."""
    return Cluster("10.0.0.1:6379", [{"CPU": 0.0}], parse_node_types(CLUSTER_YAML.read_text(), str(CLUSTER_YAML)))


FULL = BUDGETS["full"]
FULL_BATCH_SIZE = 32  # the largest batch_size the encoder search space holds


def alias_model(alias: str) -> ResolvedModel:
    return ResolvedModel(alias, MODELS[alias].hub_id, MODELS[alias].params_m)


def size_of(alias: str, cluster: Cluster, batch_size: int = FULL_BATCH_SIZE, **overrides):
    """An alias's trials at the full budget's settings (a QLoRA decoder at its default batch of 8)."""
    decoder = alias.startswith(("qwen", "smollm"))
    return size_trials(alias_model(alias), cluster, use_gpus("auto", cluster), batch_size=8 if decoder else batch_size,
                       max_length=FULL.max_length, decoder=decoder, **overrides)


def test_a_head_without_gpus_plans_gpus_its_autoscaler_can_start():
    cluster = cluster_yaml_cluster()
    assert cluster.gpus == 0 and cluster.max_gpus > 0 and use_gpus("auto", cluster)
    assert not use_gpus("auto", Cluster(None, [{"CPU": 8.0}]))  # a laptop: CPUs
    assert not use_gpus("cpu", cluster) and use_gpus("gpu", Cluster(None, [{"CPU": 8.0}]))


def test_small_models_ask_for_small_gpus_and_big_ones_for_large_gpus():
    cluster = cluster_yaml_cluster()
    small_nodes = sum(t.max_workers for t in cluster.node_types if SMALL_GPU in t.resources)
    large_nodes = sum(t.max_workers for t in cluster.node_types if LARGE_GPU in t.resources)

    albert = size_of("albert", cluster)
    assert (albert.gpus, albert.custom) == (0.5, {SMALL_GPU: 0.5})
    cpus_per_gpu = min(t.resources["CPU"] / t.resources["GPU"] for t in cluster.node_types)
    assert albert.cpus == int(cpus_per_gpu * 0.5)  # the CPUs that go with half of a GPU node
    assert albert.max_concurrent == 2 * small_nodes  # two per small GPU, every small GPU node scaled up

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


def test_albert_computes_like_bert_so_it_gets_a_bigger_share_than_minilm():
    """ALBERT-base has fewer parameters than MiniLM-L6 (12M vs 22.7M) but runs its one shared layer 12 times at
    width 768: at the full budget's batch and length it takes a larger share, for its compute."""
    cluster = cluster_yaml_cluster()
    albert, minilm = size_of("albert", cluster), size_of("minilm", cluster)
    assert MODELS["albert"].params_m < MODELS["minilm"].params_m
    assert albert.gpus > minilm.gpus and albert.gpus == size_of("bert", cluster).gpus
    assert albert.reason.startswith("compute: ") and "TFLOP/step" in albert.reason
    assert size_of("qwen2.5-7b", cluster).gpus == 1.0


def test_the_memory_share_grows_with_the_batch():
    """Activations grow with the batch: a step small in compute still takes the share its memory needs."""
    profile = MODELS["distilbert"].profile
    memory = [profile.train_memory_gb(batch_size, FULL.max_length) for batch_size in (16, 64, 256)]
    assert memory == sorted(memory) and memory[0] < memory[-1]
    shares = [share_of_gpu(0.1, gb, 24.0) for gb in memory]
    assert [share for share, _ in shares] == [0.125, 0.25, 0.5]
    assert all(reason.startswith("memory: ") and reason.endswith("of 24 GB") for _, reason in shares)
    a10g = Cluster("a:1", [{"CPU": 64.0, "GPU": 1.0, "accelerator_type:A10G": 1.0}])
    assert size_of("minilm", a10g).reason.endswith("of 24 GB")  # the A10G's memory, from Ray's accelerator type


def test_fp32_activations_double_the_activations_only():
    """Without autocast every stored activation is 4 bytes, not 2; weights, gradients and AdamW state are fp32
    (16 bytes a parameter) either way."""
    profile = MODELS["mobilebert"].profile
    states = profile.train_memory_gb(0, FULL.max_length)  # no sequence: no activations
    assert states == profile.train_memory_gb(0, FULL.max_length, fp32_activations=True) > 0
    activations = profile.train_memory_gb(FULL_BATCH_SIZE, FULL.max_length) - states
    fp32 = profile.train_memory_gb(FULL_BATCH_SIZE, FULL.max_length, fp32_activations=True) - states
    assert activations > 0 and fp32 == pytest.approx(2 * activations)


def test_qat_trials_train_in_fp32_so_memory_gives_them_a_larger_share():
    cluster = cluster_yaml_cluster()
    baseline, qat = size_of("mobilebert", cluster), size_of("mobilebert", cluster, fp32_activations=True)
    assert baseline.reason.startswith("memory: ") and qat.reason.startswith("memory: ")  # memory decides the share
    assert qat.gpus > baseline.gpus


def test_the_plan_sizes_the_qat_study_and_only_it_for_fp32_activations(run_cli, monkeypatch, tmp_path, tiny_bert):
    """emotion6 plans one study per variant (its `variant` fixed per study); only qat trains without autocast."""
    from sweeps import plan

    asked, size_trials = [], plan.size_trials
    monkeypatch.setattr("sweeps.run.local_cluster", lambda: Cluster(None, [{"CPU": 8.0, "GPU": 2.0}]))
    monkeypatch.setattr("sweeps.plan.size_trials", lambda *args, **kwargs: (
        asked.append(kwargs["fp32_activations"]) or size_trials(*args, **kwargs)))
    result = run_cli(emotion6, "--data-dir", str(write_emotion6(tmp_path / "e6")), "--models", str(tiny_bert),
                     "--storage", str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert asked == [variant == "qat" for variant in VARIANTS]


@pytest.mark.parametrize("accelerator, fp32", [("T4", True), ("V100", True), ("A10G", False), ("L4", False)])
def test_a_decoder_on_a_gpu_older_than_ampere_is_sized_for_fp32_activations(accelerator, fp32):
    """decoder_dtype trains a decoder in fp32 on compute capability below 8 (T4, V100), in bf16 from Ampere on
    (A10G, L4). At this batch and length each GPU's share or reason tells the two estimates apart."""
    batch_size, max_length = 1, 512
    profile = MODELS["smollm2-135m"].profile
    gpu_gb = ACCELERATOR_MEMORY_GB[accelerator]
    step_tflop = batch_size * max_length * profile.train_flops_per_token(max_length) / 1e12
    expected = {fp32_activations: share_of_gpu(step_tflop, profile.train_memory_gb(
        batch_size, max_length, four_bit=True, lora=True, fp32_activations=fp32_activations), gpu_gb)
        for fp32_activations in (False, True)}
    assert expected[False] != expected[True]
    node = Cluster("a:1", [{"CPU": 8.0, "GPU": 1.0, f"accelerator_type:{accelerator}": 1.0}])
    size = size_trials(alias_model("smollm2-135m"), node, True, batch_size=batch_size, max_length=max_length,
                       decoder=True)
    assert (size.gpus, size.reason) == expected[fp32]
    assert size_trials(alias_model("minilm"), node, True, batch_size=FULL_BATCH_SIZE, max_length=FULL.max_length) \
        == size_of("minilm", node)  # an encoder keeps autocast there (fp16)


def test_node_types_say_where_gpus_are_older_than_ampere_by_instance_family():
    """A T4 node type (g4dn) for small trials, an A10G one (g5) for large ones; an unknown GPU counts as newer."""
    node_types = parse_node_types("""
available_node_types:
  t4: {max_workers: 1, resources: {CPU: 4, GPU: 1, small_gpu: 1}, node_config: {InstanceType: g4dn.xlarge}}
  a10g: {max_workers: 1, resources: {CPU: 4, GPU: 1, large_gpu: 1}, node_config: {InstanceType: g5.xlarge}}
""", "test.yaml")
    cluster = Cluster("10.0.0.1:6379", [{"CPU": 0.0}], node_types)
    assert cluster.pre_ampere_gpus(SMALL_GPU) and not cluster.pre_ampere_gpus(LARGE_GPU)
    assert cluster.pre_ampere_gpus(None)  # a trial of no class may land on either
    assert not cluster_yaml_cluster().pre_ampere_gpus(None)  # g5 and g6e: A10G and L40S
    assert not Cluster("a:1", [{"CPU": 8.0, "GPU": 1.0}]).pre_ampere_gpus(None)


@pytest.mark.parametrize("gpu_gb", [16.0, 24.0, 80.0])
@pytest.mark.parametrize("share", [0.125, 0.25, 0.5])
def test_packed_trials_cap_their_memory_so_that_their_contexts_fit_beside_it(share, gpu_gb):
    """A share is sized for training memory plus one CUDA context (share_of_gpu), so each trial's allocator cap is
    its share less a context: the 1/share trials packed onto one GPU, caps and contexts, fill it exactly."""
    trials = round(1 / share)
    assert memory_fraction(share, gpu_gb) == pytest.approx(share - CUDA_CONTEXT_GB / gpu_gb)
    assert trials * (memory_fraction(share, gpu_gb) * gpu_gb + CUDA_CONTEXT_GB) == pytest.approx(gpu_gb)


def test_a_share_a_context_would_nearly_fill_keeps_half_of_it():
    assert memory_fraction(0.125, 4.0) == pytest.approx(0.0625)  # 0.5 GB share: 0 left after a context
    assert memory_fraction(0.125, 6.0) == pytest.approx(0.125 / 2)  # 0.25 GB left, below half the share


def test_a_trial_on_cuda_caps_its_allocator_at_its_share_less_a_context(monkeypatch):
    """The cap trial_device sets, with CUDA's calls stood in for: memory_fraction of the GPU's total memory."""
    caps = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 24e9}))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda fraction, device: caps.append(fraction))
    assert trial_device(0.25, 2) == torch.device("cuda", 0) and trial_device(1, 2) == torch.device("cuda", 0)
    assert caps == [pytest.approx(memory_fraction(0.25, 24.0))]  # a whole GPU is the trial's alone: no cap


def test_a_trial_no_gpu_of_the_cluster_holds_is_refused_where_the_cluster_says_its_gpu_memory():
    t4s = Cluster("a:1", [{"CPU": 8.0, "GPU": 1.0, "accelerator_type:T4": 1.0}])
    with pytest.raises(ClusterError, match=r"^--models minilm: a trial needs .* GB .*largest GPU for it has 16 GB"):
        size_of("minilm", t4s, batch_size=4096)
    assert size_of("minilm", Cluster("a:1", [{"CPU": 8.0, "GPU": 1.0}]), batch_size=4096).gpus == 1.0  # unknown


@pytest.mark.parametrize("overrides, message", [
    ({"gpus_per_trial": 2}, "--gpus-per-trial 2: a trial trains on one GPU (cuda:0), so more would sit idle; ask for "
                            "1 or a fraction of one"),
    ({"gpus_per_trial": 1.5}, "--gpus-per-trial 1.5: a trial trains on one GPU"),
    ({"cpus_per_trial": 999}, "--cpus-per-trial 999: no GPU node holds such a trial (Ray places a trial on one node); "
                              "the largest is node 10.0.0.2 (16 CPU, 2 GPU)"),
    ({"cpus_per_trial": 17, "gpus_per_trial": 0.5}, "--gpus-per-trial 0.5 --cpus-per-trial 17: no GPU node holds"),
    ({"cpus_per_trial": 33, "gpus_per_trial": 0}, "--cpus-per-trial 33: no node holds such a trial (Ray places a "
                                                  "trial on one node); the largest is an alive node (32 CPU, 0 GPU)"),
])
def test_overrides_no_node_can_hold_are_refused_naming_the_largest(overrides, message):
    """A trial runs on one node, and on one GPU of it: the GPUs Ray grants beyond the first would sit idle."""
    two_gpus = Cluster("a:1", [{"CPU": 16.0, "GPU": 2.0, "node:10.0.0.2": 1.0, "node:__internal_head__": 1.0},
                               {"CPU": 32.0}])
    with pytest.raises(ClusterError, match=f"^{re.escape(message)}"):
        size_of("minilm", two_gpus, **overrides)
    assert size_of("minilm", two_gpus, gpus_per_trial=1, cpus_per_trial=16).gpus == 1
    assert size_of("minilm", two_gpus, gpus_per_trial=0, cpus_per_trial=32).cpus == 32


def test_a_trial_no_node_type_of_cluster_yaml_holds_is_refused_naming_the_node_type():
    """Right after `ray up` only the autoscaler's node types say what nodes will come: the message names one."""
    cluster = cluster_yaml_cluster()
    with pytest.raises(ClusterError, match=re.escape("--gpus-per-trial 1 --cpus-per-trial 16: no GPU node holds such "
                                                     "a trial (Ray places a trial on one node); the largest is "
                                                     "gpu_small (8 CPU, 1 GPU)")):
        size_of("minilm", cluster, gpus_per_trial=1, cpus_per_trial=16)
    assert size_of("qwen2.5-7b", cluster, gpus_per_trial=1, cpus_per_trial=8).cpus == 8
    no_gpu_yet = Cluster("10.0.0.1:6379", [{"CPU": 0.0}])  # --device gpu before any GPU node: nothing to check
    assert size_trials(alias_model("minilm"), no_gpu_yet, True, batch_size=8, max_length=64,
                       cpus_per_trial=999).cpus == 999


@pytest.mark.parametrize("flag, value", [("--gpus-per-trial", "2"), ("--gpus-per-trial", "1.5"),
                                         ("--cpus-per-trial", "999")])
def test_the_plan_refuses_impossible_trial_sizes_in_one_line(run_cli, monkeypatch, tmp_path, goemotions_dir,
                                                               tiny_bert, flag, value):
    monkeypatch.setattr("sweeps.run.local_cluster", lambda: Cluster(None, [{"CPU": 8.0, "GPU": 2.0}]))
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                     "smoke", "--storage", str(tmp_path / "out"), "--dry-run", flag, value)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{flag} {value}" in line or f"argument {flag}: '{value}'" in line, line
    assert not (tmp_path / "out").exists()


def test_the_plan_prints_why_each_share_and_estimates_an_epoch(run_cli, monkeypatch, tmp_path, goemotions_dir,
                                                                 tiny_bert):
    from sweeps import run

    plans, print_plan = [], run.print_plan
    monkeypatch.setattr("sweeps.run.local_cluster", lambda: Cluster(None, [{"CPU": 8.0, "GPU": 2.0}]))
    monkeypatch.setattr("sweeps.run.print_plan", lambda *given: plans.append(given) or print_plan(*given))
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                     "smoke", "--storage", str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"  model {tiny_bert.name}:"))
    assert "1 CPU + 0.125 GPU per trial, up to 8 at once (memory: " in line, line  # 8 CPUs, one each
    [(plan, data, _)] = plans
    profile = compute_profile(ResolvedModel(tiny_bert.name, str(tiny_bert), params_m_from_config("t", tiny_bert)))
    max_length = plan.fixed["max_length"]
    assert plan.models[0]["epoch_tflop"] == pytest.approx(
        len(data.train) * max_length * profile.train_flops_per_token(max_length) / 1e12, rel=0.01)
    [study] = run.studies_of(plan, goemotions_raw.EXPERIMENT)
    assert study.epoch_tflop == plan.models[0]["epoch_tflop"] > 0


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


def test_an_address_where_nothing_listens_is_found_out_within_the_timeout():
    """Ray's own connect retries for ~14 minutes; the sweep asks the port first and gives up after the timeout."""
    import socket
    import time

    from sweeps.cluster import unreachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        assert unreachable(f"127.0.0.1:{open_port}", timeout_s=2) is None
    started = time.monotonic()
    problem = unreachable(f"127.0.0.1:{open_port}", timeout_s=2)  # closed now
    assert problem.startswith("nothing answered there for 2 s") and time.monotonic() - started < 8
    assert unreachable("auto") is None and unreachable("ray://head:10001") is None
