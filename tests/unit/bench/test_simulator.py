"""bench/simulator.py without Ray: the real searcher and scheduler in the loop, resources respected, autoscaling,
and the same run for the same seed."""
from __future__ import annotations

import pytest
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from bench.simulator import ClusterSimulation, Latency, StudyTiming, VirtualClock, simulate
from bench.workload import NodeType, build_studies
from sweeps.searcher import StudySearcher
from sweeps.tuning import PerStudyASHA

SMALL = NodeType("gpu_small", {"CPU": 8.0, "GPU": 1.0, "small_gpu": 1.0}, 0, 2)
LARGE = NodeType("gpu_large", {"CPU": 8.0, "GPU": 1.0, "large_gpu": 1.0}, 0, 1)
TIMINGS = {"minilm": StudyTiming(2.0, 5.0), "distilbert": StudyTiming(2.0, 8.0), "qwen2.5-7b": StudyTiming(5.0, 20.0)}


def tiny(design="one-experiment", models=("minilm", "distilbert"), node_types=(SMALL,), **options):
    return simulate(design, list(models), list(node_types), num_samples=6, max_epochs=3, seed=0,
                    latency=Latency(1.0, 0.2), timings=TIMINGS, **options)


def test_refuses_stand_ins(tmp_path):
    clock = VirtualClock()
    simulation = ClusterSimulation([SMALL], TIMINGS, Latency(), False, 0.0, clock)
    studies = build_studies(["minilm"], [SMALL], 2, 1, 0)
    searcher = StudySearcher(studies, tmp_path / "optuna.journal", "tpe", 0, clock=clock)

    class StandIn(Searcher):
        clock = None

    with pytest.raises(TypeError):
        simulation.run_experiment(StandIn(), PerStudyASHA(max_t=1), 1)
    with pytest.raises(TypeError):
        simulation.run_experiment(searcher, ASHAScheduler(max_t=1), 1)


def test_asha_stops_trials():
    report = tiny()
    stopped = [r for r in report.records if r.stopped_by_scheduler]
    assert stopped and all(r.epochs_run < r.epochs_planned for r in stopped)
    assert sum(report.stopped.values()) == len(stopped)
    assert report.trials == {"minilm": 6, "distilbert": 6}


def test_trials_run_only_where_their_resources_are():
    report = tiny(models=("minilm", "qwen2.5-7b"), node_types=(SMALL, LARGE))
    for record in report.records:
        assert all(record.node.node_type.resources.get(key, 0.0) >= value for key, value in record.demand.items())
        wanted = "large_gpu" if record.study == "qwen2.5-7b" else "small_gpu"
        assert wanted in record.demand and record.node.node_type.resources.get(wanted)


def test_autoscaling_from_zero_reaches_the_full_cluster_after_boot():
    report = tiny(autoscale=True, boot_s=100.0)  # the pending-trial limit the sweep sets shows all the demand
    assert report.full_cluster_at_s == 100.0
    assert min(r.started_at for r in report.records) >= 100.0
    assert report.billed_use == report.gpu_use  # both nodes launched at once, at t=0: billed from there


def test_same_seed_same_run():
    first, second = tiny(), tiny()
    assert first.makespan_s == second.makespan_s and first.gpu_use == second.gpu_use
    assert [(r.config, r.started_at, r.epochs_run) for r in first.records] == \
           [(r.config, r.started_at, r.epochs_run) for r in second.records]
