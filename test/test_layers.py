"""The package's layers, read from every module's imports (AST, nothing imported).

The runtime (model/) must not reach into the data engine (multispa/): the answer conventions they share
live at the bottom (conventions.py). No import circles, among modules or among the package's parts:
imports inside functions count, since deferring an import hides a circle rather than removing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "spatial_mllm_ros"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (function-level imports too)."""
    modules = _modules()

    def resolve(name: str) -> str:
        while name not in modules:  # a name imported from a module resolves to that module
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == PACKAGE}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, `level - 1` levels up
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] == PACKAGE:
                    deps |= {resolve(f"{base}.{a.name}") for a in node.names}
        graph[name] = deps - {name}
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """Return one import circle as a path (first name repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def _part(module: str) -> str:
    """The package's part a module belongs to: its subpackage or top-level module (model, sim, answers)."""
    return ".".join(module.split(".")[:2])


def test_the_runtime_imports_nothing_from_the_data_engine() -> None:
    graph = _import_graph()
    reaches = {
        f"{m} -> {d}"
        for m, deps in graph.items()
        if _part(m) == f"{PACKAGE}.model"
        for d in deps
        if _part(d) == f"{PACKAGE}.multispa"
    }
    assert not reaches, sorted(reaches)


def test_no_import_circle_among_modules_or_the_packages_parts() -> None:
    graph = _import_graph()
    assert not _circle(graph), " -> ".join(_circle(graph))
    parts: dict[str, set[str]] = {}
    for m, deps in graph.items():
        parts.setdefault(_part(m), set()).update(_part(d) for d in deps if _part(d) != _part(m))
    assert not _circle(parts), " -> ".join(_circle(parts))


def test_the_conventions_are_the_bottom_layer() -> None:
    """conventions.py imports nothing of the package; the runtime, data engine, simulation, annotator,
    answer parsing and the node take the conventions from it."""
    graph = _import_graph()
    assert graph[f"{PACKAGE}.conventions"] == set()
    users = {_part(m) for m, deps in graph.items() if f"{PACKAGE}.conventions" in deps}
    for part in ("model", "multispa", "sim", "reward", "answers", "nodecore"):
        assert f"{PACKAGE}.{part}" in users, part
