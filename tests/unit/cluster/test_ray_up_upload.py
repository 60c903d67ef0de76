"""What `ray up` copies to the nodes. cluster.yaml mounts the repository root on every node; Ray copies it with
`rsync -avz ARGS ./ ubuntu@node:/home/ray/emotion-sweeps/`, where ARGS are cluster.yaml's rsync_exclude and
rsync_filter options as Ray's own SSH command runner turns them into rsync arguments (the head passes the same
options on when it syncs the workers it starts). A fake working tree with the repository's real .gitignore shows
which paths travel: the code and .git, never the virtualenv, results, wandb runs or caches.

With rsync installed (the machine that runs `ray up` needs it), the real `rsync --dry-run` with Ray's arguments
lists what would be sent, and that must be exactly what git would commit, plus .git. Without rsync (a bare CI
machine: nothing is installed system-wide there) that test is skipped and git alone says what .gitignore leaves
out; the .gitignore files then must hold no rule that rsync reads differently from git (a `!` negation), so
git's answer is rsync's too."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.command_runner import SSHCommandRunner

from tests.helpers.sweeps import REPO

CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
CODE = ["pyproject.toml", "requirements.txt", "README.md", "cluster/cluster.yaml", "sweeps/run.py",
        "trainables/encoder.py", "tests/unit/test_imports.py",
        "docs/results/notes.md"]  # only the top-level results/ is the sweeps' output
NOT_CODE = [".venv/bin/python", ".venv/lib/python3.11/site-packages/torch/__init__.py", ".hypothesis/examples/a1",
            "wandb/run-20260101-a1/files/config.yaml", "results/goemotions-v1/sweep.json",
            "sweeps/__pycache__/run.cpython-311.pyc", "emotion_sweeps.egg-info/PKG-INFO",
            ".pytest_cache/v/cache/nodeids", ".ruff_cache/0.9.1/123", "build/lib/sweeps/run.py"]
# git as a fresh clone sees it: neither this machine's nor the user's git config (a global excludes file) counts;
# rsync reads only the .gitignore files.
GIT = ["git", "-c", f"core.excludesFile={os.devnull}"]
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture()
def working_tree(tmp_path) -> Path:
    """A git working tree with the repository's .gitignore, some code, and what a developer's checkout also
    holds after the README's setup, a test run and a sweep."""
    tree = tmp_path / "emotion-sweeps"
    for path in CODE + NOT_CODE:
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text("")
    shutil.copy(REPO / ".gitignore", tree / ".gitignore")
    subprocess.run([*GIT, "init", "-q"], cwd=tree, env=GIT_ENV, check=True)
    return tree


def git_would_commit(tree: Path) -> set[str]:
    """Files `git add -A` would take: tracked or untracked, and not ignored."""
    listing = subprocess.run([*GIT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=tree,
                             env=GIT_ENV, capture_output=True, text=True, check=True).stdout
    return set(filter(None, listing.split("\0")))


def rsync_would_send(tree: Path, config: dict, tmp_path: Path) -> set[str]:
    """Files Ray's rsync of the `.` file mount would send: the same arguments, to a local folder, listed."""
    runner = SSHCommandRunner(log_prefix="", node_id="head", provider=None, auth_config=config["auth"],
                              cluster_name=config["cluster_name"], process_runner=subprocess, use_internal_ip=False)
    # NodeUpdater.rsync_up passes exactly these two options from the cluster config
    args = runner._create_rsync_filter_args({"rsync_exclude": config.get("rsync_exclude"),
                                             "rsync_filter": config.get("rsync_filter")})
    listing = subprocess.run(["rsync", "-a", "--dry-run", "--out-format=%n", *args, f"{tree}/",
                              f"{tmp_path / 'node'}/"], capture_output=True, text=True, check=True).stdout
    return {name for name in listing.splitlines() if not name.endswith("/")}


def test_the_repository_is_mounted_with_its_gitignore_as_the_rsync_filter(config):
    assert config["file_mounts"]["/home/ray/emotion-sweeps"] == "."
    assert config["rsync_filter"] == [".gitignore"]


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed here (git's view is checked "
                                                           "instead: test_git_leaves_out_what_is_not_code)")
def test_ray_up_sends_what_git_would_commit_and_dot_git(working_tree, config, tmp_path):
    sent = rsync_would_send(working_tree, config, tmp_path)
    assert {path for path in sent if not path.startswith(".git/")} == git_would_commit(working_tree)
    assert {".git/HEAD", ".git/config"} <= sent  # the commit each sweep records in sweep.json
    assert set(CODE) <= sent and not set(NOT_CODE) & sent


def test_git_leaves_out_what_is_not_code(working_tree):
    assert git_would_commit(working_tree) == {".gitignore", *CODE}


def test_the_gitignore_files_mean_the_same_to_rsync_and_git():
    """rsync reads a .gitignore line as one exclude pattern: a `!` line, which git reads as "do not ignore",
    would leave out different files."""
    listed = subprocess.run([*GIT, "ls-files", "-z", "--", ".gitignore", "*/.gitignore"], cwd=REPO, env=GIT_ENV,
                            capture_output=True, text=True).stdout
    gitignores = {REPO / ".gitignore", *(REPO / name for name in filter(None, listed.split("\0")))}
    negations = [f"{path.relative_to(REPO)}: {line}" for path in gitignores
                 for line in path.read_text().splitlines() if line.startswith("!")]
    assert not negations


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_tracked_file_is_ignored():
    """rsync leaves out every path a .gitignore lists, tracked or not: a file committed under an ignored path
    would be in git but never reach the nodes."""
    ignored = subprocess.run([*GIT, "ls-files", "--cached", "--ignored", "--exclude-standard"], cwd=REPO,
                             env=GIT_ENV, capture_output=True, text=True, check=True).stdout
    assert not ignored.split()
