"""The package layers of flows/, held by the imports themselves (those inside functions too).

``LAYERS`` lists the packages bottom up; a module may import its own package and the layers
below it, never one above. That rules out every import loop between packages, including the
ones hidden inside functions. Imports under ``if TYPE_CHECKING:`` never run and are not edges.
docs/architecture.md explains each layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FLOWS = REPO / "flows"
LAYERS = ["errors", "language", "run", "steps", "spec", "planner", "evidence", "effects", "gates", "readiness",
          "engine", "scale", "drills", "service", "cli"]


def _edges(path: Path) -> list[tuple[str, int, str]]:
    """(package imported, line, source text) for every breakglass.flows import that runs."""
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("breakglass.flows"):
            rest = node.module[len("breakglass.flows"):].lstrip(".")  # type: ignore[index]
            targets = [rest.split(".")[0]] if rest else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[2] for a in node.names if a.name.startswith("breakglass.flows.")]
        out += [(t, node.lineno, ast.unparse(node)) for t in targets if t not in ("__version__", "__init__")]
    return out


def _package(path: Path) -> str:
    rel = path.relative_to(FLOWS)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _graph() -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(FLOWS.rglob("*.py")):
        src = _package(path)
        if src == "__init__":
            continue
        for target, line, text in _edges(path):
            if target != src:
                graph.setdefault(src, {}).setdefault(target, []).append(f"{path.relative_to(REPO)}:{line}: {text}")
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in FLOWS.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYERS), f"place these in LAYERS (and docs/architecture.md): {sorted(packages - set(LAYERS))}"


def test_imports_only_go_down_the_layers() -> None:
    upward = [f"{where}  ({src} -> {dst}: '{dst}' is above '{src}')"
              for src, targets in _graph().items() for dst, places in targets.items()
              if LAYERS.index(dst) > LAYERS.index(src) for where in places]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a graph with a loop through three packages is caught, and one without is not."""
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {"c": []}}) is None


def test_in_function_and_type_only_imports_are_told_apart(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from breakglass.flows.cli import main\n"
                      "def f():\n    from breakglass.flows.engine import runner\n")
    assert [t for t, _, _ in _edges(module)] == ["engine"]


@pytest.mark.parametrize("modules", [
    ["breakglass.flows.language", "breakglass.flows.spec.validate", "breakglass.flows.spec.schema",
     "breakglass.flows.spec.drillspec", "breakglass.flows.planner", "breakglass.flows.steps"],
])
def test_the_language_and_the_planner_load_no_engine(modules: list[str]) -> None:
    """Validating a playbook and planning a run need no engine: no Prefect, no Slack client, no effects."""
    probe = ("import importlib, pkgutil, sys\n"
             "import breakglass.flows.language as L\n"
             "for m in pkgutil.iter_modules(L.__path__): importlib.import_module('breakglass.flows.language.' + m.name)\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "print('\\n'.join(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "breakglass.flows.planner" in loaded and "breakglass.flows.steps.pause" in loaded  # the probe did load them
    engines = sorted(m for m in loaded if m.split(".")[0] in ("prefect", "slack_sdk")
                     or m.startswith(("breakglass.flows.effects", "breakglass.flows.engine", "breakglass.flows.gates",
                                      "breakglass.flows.scale", "breakglass.flows.service")))
    assert not engines, f"importing the language and the planner loaded engines: {engines}"


def test_tests_mirror_the_packages() -> None:
    """tests/flows/<package>/ holds the tests of flows/<package>/; only tests of top-level modules stand at the top."""
    packages = {p.name for p in FLOWS.iterdir() if (p / "__init__.py").is_file()}
    tops = {p.stem for p in FLOWS.glob("*.py")} - {"__init__"}
    folders = {p.name for p in (REPO / "tests" / "flows").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= packages, f"test folders without a package of that name: {sorted(folders - packages)}"
    loose = sorted(p.name for p in (REPO / "tests" / "flows").glob("test_*.py") if p.stem.removeprefix("test_") not in tops)
    assert not loose, f"put these in tests/flows/<package>/ next to the tests of their part: {loose}"
