"""The software on every cluster node is pinned exactly, from one list: requirements.txt. pyproject.toml reads its
dependencies from that file, and cluster.yaml's setup installs this project from the tree `ray up` copied (the
repository root), so nodes that boot on different days (spot workers) install the same versions as each other,
as CI and as this environment."""
from __future__ import annotations

import importlib.metadata
import re
import shlex
import tomllib

import pytest
import ray
import yaml
from packaging.requirements import Requirement

from tests.helpers.sweeps import REPO

CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned() -> list[Requirement]:
    """requirements.txt's requirements, read as setuptools reads a `file` dynamic field: one a line, `#` lines
    and blank lines skipped."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def exact(requirement: Requirement) -> bool:
    """One release, all of it: `==x.y.z`, no wildcard, no range."""
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator == "==" and bool(re.fullmatch(r"\d+\.\d+\.\d+", specs[0].version))


def node_installs(config: dict) -> list[tuple[str, list[str]]]:
    """(path, extras) of every `pip install -e PATH[EXTRAS]` in setup_commands; any other pip install fails."""
    installs = []
    for command in config["setup_commands"]:
        words = shlex.split(command)
        if words[:2] != ["pip", "install"]:
            continue
        targets = [word for word in words[2:] if not word.startswith("-")]
        assert "-e" in words and len(targets) == 1, f"installs more than this project: {command}"
        path, _, extras = targets[0].partition("[")
        installs.append((path, [extra for extra in extras.rstrip("]").split(",") if extra]))
    return installs


def test_pyproject_reads_its_dependencies_from_requirements_txt_only():
    assert "dependencies" not in PYPROJECT["project"] and "dependencies" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}


def test_every_node_installs_this_project_from_the_synced_repository():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    [(path, extras)] = node_installs(config)
    assert config["file_mounts"][path] == "."  # its pyproject.toml, hence requirements.txt
    for extra in extras:
        loose = [line for line in PYPROJECT["project"]["optional-dependencies"][extra] if not exact(Requirement(line))]
        assert not loose, f"[{extra}], installed on every node: {loose}"


def test_every_pin_is_exact_and_listed_once():
    requirements = pinned()
    assert requirements and [str(r) for r in requirements if not exact(r)] == []
    names = [r.name.lower() for r in requirements]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("requirement", pinned(), ids=str)
def test_this_environment_has_the_pinned_versions(requirement):
    """What the tests run against is what the nodes install (torch's local tag, +cpu here, aside)."""
    installed = importlib.metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed} installed"


def test_image_and_requirements_pin_the_installed_ray_version():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    assert config["docker"]["image"].endswith("-gpu")
    [pin] = [r for r in pinned() if r.name == "ray"]
    assert str(pin.specifier) == f"=={ray.__version__}"
    readme = (REPO / "cluster" / "README.md").read_text()
    assert f'"ray[default]=={ray.__version__}"' in readme  # what the README installs on the user's machine
