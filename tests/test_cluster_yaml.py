"""cluster/cluster.yaml against the autoscaler schema that ships inside the installed `ray` package, then through
the same config preparation `ray up` runs before it calls AWS, then the choices the README promises."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.commands import prepare_config
from ray.autoscaler._private.util import validate_config

from tests.conftest import REPO

SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())


def test_valid_against_the_schema_shipped_with_ray(config):
    jsonschema.validate(config, SCHEMA)


def test_ray_up_config_preparation_accepts_it(config):
    """Defaults filled in (as `ray up` does before bootstrapping), then Ray's own validation."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


@pytest.mark.parametrize("break_it", [
    lambda c: c["available_node_types"]["gpu_small"]["resources"].update(GPU=0.5),  # resources are integers
    lambda c: c["available_node_types"]["head"].update(instance_type="m6i.xlarge"),  # unknown key
    lambda c: c.pop("provider"),
])
def test_the_schema_check_catches_mistakes(config, break_it):
    break_it(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)


def test_head_runs_no_trials_and_workers_have_gpus(config):
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: spec for name, spec in types.items() if name != config["head_node_type"]}
    assert workers and all(spec["resources"]["GPU"] >= 1 and spec["min_workers"] == 0 for spec in workers.values())
    assert sum(spec["max_workers"] for spec in workers.values()) >= config["max_workers"]


def test_image_pins_the_installed_ray_version(config):
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    assert config["docker"]["image"].endswith("-gpu")


def test_dashboard_bound_to_localhost_and_no_ports_opened(config):
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "security_group" not in config["provider"]  # Ray's default group: SSH plus traffic inside the cluster
    assert not re.search(r"0\.0\.0\.0", yaml.safe_dump(config))


def test_every_ray_process_requires_the_cluster_token(config):
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


def test_results_storage_is_shared_by_every_node(config):
    mount = "/mnt/results"
    assert any(f"-v {mount}:{mount}" == option for option in config["docker"]["run_options"])
    assert any(f" {mount}" in command and "mount -t nfs4" in command for command in config["initialization_commands"])
    readme = (REPO / "cluster" / "README.md").read_text()
    assert f"--address auto --budget full --storage {mount}" in readme  # joins the cluster, writes to EFS
