"""The plugin's modules form layers: no import circle, and each module imports on its own.

Module-level imports (``if TYPE_CHECKING:`` ones included: a circle in the types is a circle
in the design) must form an acyclic graph, e.g. host <- stack <- hypervisor <- machine <-
factory <- session <- plugin. Imports inside functions are deliberate lazy imports and are
not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_vmm"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def module_level_imports(path: Path) -> set[str]:
    """pytest_vmm modules imported at module level (including under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("pytest_vmm"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pytest_vmm"):
                found.add(node.module)
                # "from pytest_vmm import options" imports a submodule
                found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
    visit(tree.body)
    return {m for m in found if m in MODULES}


def graph() -> dict[str, set[str]]:
    edges = {module_name(p): module_level_imports(p) for p in PACKAGE.rglob("*.py")}
    # A package's __init__ re-exporting its modules is not a dependency of those modules.
    return {m: {d for d in deps if not m.startswith(d + ".") and d != m} for m, deps in edges.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = dfs(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_plugin() -> None:
    edges = graph()
    assert {"pytest_vmm.machine", "pytest_vmm.hypervisor", "pytest_vmm.stack"} <= set(edges)
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_plugins_do_not_see_the_machine() -> None:
    """Stacks and hypervisors get BootSpec/LaunchPlan/Protocols, never the Machine."""
    edges = graph()
    for module, deps in edges.items():
        if module.startswith(("pytest_vmm.stacks", "pytest_vmm.hypervisors")) or module in (
                "pytest_vmm.stack", "pytest_vmm.hypervisor"):
            assert "pytest_vmm.machine" not in deps, f"{module} imports pytest_vmm.machine"


# The modules of the former circle and the plug-ins built on them (each in a fresh interpreter).
ALONE = ["pytest_vmm.host", "pytest_vmm.stack", "pytest_vmm.hypervisor", "pytest_vmm.machine",
         "pytest_vmm.factory", "pytest_vmm.session", "pytest_vmm.hypervisors.god",
         "pytest_vmm.hypervisors.qemu", "pytest_vmm.hypervisors.lane", "pytest_vmm.stacks.zigu"]


@pytest.mark.parametrize("module", ALONE)
def test_each_module_imports_alone(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"import {module} alone failed:\n{result.stderr[-2000:]}"
