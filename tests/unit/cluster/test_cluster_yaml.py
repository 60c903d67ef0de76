"""cluster/cluster.yaml against the autoscaler schema that ships inside the installed `ray` package, then through
the same config preparation `ray up` runs before it calls AWS (and the AWS steps that need no AWS call), then
the choices the README promises."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.aws import config as aws_config
from ray.autoscaler._private.commands import prepare_config
from ray.autoscaler._private.util import validate_config

from tests.helpers.sweeps import REPO


SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
README = (REPO / "cluster" / "README.md").read_text()
MOUNT = "/mnt/results"
GPU_CLASSES = ("small_gpu", "large_gpu")  # sweeps/cluster.py: SMALL_GPU, LARGE_GPU


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def workers(config: dict) -> dict:
    return {name: spec for name, spec in config["available_node_types"].items() if name != config["head_node_type"]}


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
    assert workers(config) and all(spec["resources"]["GPU"] >= 1 and spec["min_workers"] == 0
                                   for spec in workers(config).values())
    assert sum(spec["max_workers"] for spec in workers(config).values()) >= config["max_workers"]


def test_every_gpu_node_type_declares_one_gpu_class(config):
    """Trials of models up to 1B params ask for `small_gpu` (their GPU share), bigger ones for `large_gpu`
    (sweeps/cluster.py), so each GPU node type must say which class it is, one unit per GPU."""
    declared = {}
    for name, spec in workers(config).items():
        classes = [key for key in GPU_CLASSES if key in spec["resources"]]
        assert len(classes) == 1, f"{name} declares {classes or 'no GPU class'}"
        assert spec["resources"][classes[0]] == spec["resources"]["GPU"]
        declared[classes[0]] = name
    assert declared == {"small_gpu": "gpu_small", "large_gpu": "gpu_large"}
    # Where the lead's test goes: every custom resource a planned trial can request exists on some node type.


def test_placeholders_appear_once_and_the_readme_says_how_to_fill_each(config):
    """ami-, sg- and fs-REPLACE_ME: one place each in the file (node types share the first two through YAML
    anchors), and step 0 of the README prints or creates each."""
    text = CLUSTER_YAML.read_text()
    uncommented = "\n".join(line.split("#")[0] for line in text.splitlines())
    placeholders = re.findall(r"\b([a-z]+)-REPLACE_ME\b", uncommented)
    assert sorted(placeholders) == ["ami", "fs", "sg"]
    for prefix, how in (("ami", "aws ssm get-parameter"), ("sg", "aws ec2 create-security-group"),
                        ("fs", "aws efs create-file-system")):
        assert f"{prefix}-REPLACE_ME" in README and how in README
        assert re.search(rf"-> {prefix}-\.\.\.: replaces {prefix}-REPLACE_ME", README)


def test_every_node_boots_the_documented_dlami_not_rays_end_of_life_default(config):
    """Ray's AWS provider puts its built-in DLAMI (Ubuntu 18.04) into every node type without an ImageId."""
    ssm_path = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    assert ssm_path in README
    images = {spec["node_config"].get("ImageId") for spec in config["available_node_types"].values()}
    assert images == {"ami-REPLACE_ME"}

    aws_config._check_ami(config)  # what `ray up` does to node configs (no AWS call)
    assert {spec["node_config"]["ImageId"] for spec in config["available_node_types"].values()} == images
    del config["available_node_types"]["gpu_small"]["node_config"]["ImageId"]
    aws_config._check_ami(config)
    assert config["available_node_types"]["gpu_small"]["node_config"]["ImageId"] == \
        aws_config.DEFAULT_AMI[config["provider"]["region"]]
    assert "18.04" in aws_config.DEFAULT_AMI_NAME


def test_every_node_and_the_efs_mount_targets_share_one_security_group(config):
    """A node type that names SecurityGroupIds gets only those: Ray then creates none of its own (and opens
    nothing). So the one group carries Ray's rules, and the README's mount targets are in it too."""
    groups = [spec["node_config"].get("SecurityGroupIds") for spec in config["available_node_types"].values()]
    assert all(group == ["sg-REPLACE_ME"] for group in groups)
    before = copy.deepcopy(config)
    assert aws_config._configure_security_group(config) == before  # Ray leaves them as they are (no AWS call)
    assert "security_group" not in config["provider"]

    assert 'UserIdGroupPairs=[{GroupId=$SG}]' in README and "IpProtocol=-1" in README  # all traffic from itself
    assert re.search(r"create-mount-target .*--security-groups \$SG", README)
    assert re.search(r"--port 22 --cidr .*/32", README)  # SSH from the user's address only


def test_dashboard_bound_to_localhost_and_no_ports_opened(config):
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert not re.search(r"0\.0\.0\.0", yaml.safe_dump(config)) and "0.0.0.0" not in README


def test_every_ray_process_requires_the_cluster_token(config):
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


def test_results_and_the_hugging_face_cache_are_shared_by_every_node(config):
    assert f"-v {MOUNT}:{MOUNT}" in config["docker"]["run_options"]
    assert any(f" {MOUNT}" in command and "mount -t nfs4" in command for command in config["initialization_commands"])
    (hf_home,) = [option.split("=", 1)[1] for option in config["docker"]["run_options"]
                  if option.startswith("-e HF_HOME=")]
    assert hf_home.startswith(MOUNT + "/")


def test_readme_sweep_command_joins_the_cluster_writes_to_efs_and_trains_on_gpus():
    command = re.search(r"ray exec cluster/cluster.yaml --tmux \\\n(.*?)'\n", README, re.S).group(1)
    for flag in ("--address auto", f"--storage {MOUNT}", "--device gpu"):
        assert flag in command
        assert f"`{flag}`" in README  # and says why


def test_the_commit_travels_to_the_nodes(config):
    """versions() reads the commit with `git rev-parse` in the synced tree; without .git sweep.json has none."""
    assert config["file_mounts"]["/home/ray/emotion-sweeps"] == "."
    assert ".git" not in (config.get("rsync_exclude") or [])  # nor git-ignored: test_ray_up_upload.py


def efs_mount_command(config: dict) -> str:
    (command,) = [c for c in config["initialization_commands"] if "mount -t nfs4" in c]
    return command


def run_on_a_fake_host(command: str, tmp_path: Path, **programs: str) -> subprocess.CompletedProcess:
    """Run an initialization command with `sudo` passing through and the named programs replaced by scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"sudo": 'exec "$@"', **programs}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


@pytest.mark.parametrize("mount_behaviour", ["sleep 60", "exit 32"])  # unreachable (hangs) / refused at once
def test_an_efs_mount_that_cannot_happen_stops_ray_up_with_what_to_check(config, tmp_path, mount_behaviour):
    """The real command with `sudo`, `mountpoint` and `mount` stood in for, and its 90 s limit made 1 s."""
    command = efs_mount_command(config)
    assert "timeout --kill-after=10 90 sudo mount" in command
    command = command.replace("timeout --kill-after=10 90", "timeout --kill-after=1 1")
    started = time.monotonic()
    result = run_on_a_fake_host(command, tmp_path, mountpoint="exit 1", mount=mount_behaviour)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stderr.startswith("error: mounting EFS fs-REPLACE_ME.efs.us-west-2.amazonaws.com at /mnt/results "
                                    "failed or took over 90 s.")
    assert "cluster/README.md, step 0" in result.stderr


def test_an_efs_mount_already_in_place_is_left_alone(config, tmp_path):
    result = run_on_a_fake_host(efs_mount_command(config), tmp_path, mountpoint="exit 0",
                                mount=f"touch {tmp_path}/called")
    assert result.returncode == 0 and not (tmp_path / "called").exists()
