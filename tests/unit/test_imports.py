"""The packages import cleanly and without circles: every module of sweeps/, trainables/ and analysis/ imports
in a fresh interpreter, and no chain of imports (module-level or inside a function) leads back to where it
started, so each module can be read after the ones it imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sweeps", "trainables", "analysis")


def modules() -> dict[str, Path]:
    return {f"{path.parent.name}.{path.stem}": path for package in PACKAGES
            for path in sorted((REPO / package).glob("*.py")) if path.stem != "__init__"}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it: `import a.b`, `from a.b import c`, `from a import b`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & known


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None (depth-first search, colouring nodes)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_in_the_packages():
    found = modules()
    graph = {name: imported_modules(path, set(found)) - {name} for name, path in found.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_analysis_never_imports_sweeps():
    """analysis/ reads what it needs of a sweep's plan from its sweep.json (DESIGN.md)."""
    for name, path in modules().items():
        if name.startswith("analysis."):
            assert not any(m == "sweeps" or m.startswith("sweeps.") for m in
                           imported_modules(path, {*modules(), "sweeps"})), name


def test_every_module_imports_in_a_fresh_interpreter():
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code, *modules()], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_encoder_trial_process_does_not_import_peft():
    """Every trial process imports its trainable as it starts, the confirmation seeds' new ones included; peft
    (with bitsandbytes and torch's inductor) costs 3.4 s of that on the 2-core VM, and only QLoRA needs it."""
    code = "import sys, sweeps.run, trainables.encoder\nprint(sorted({'peft', 'bitsandbytes'} & set(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "[]"
