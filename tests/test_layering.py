"""Import structure, checked statically so it cannot rot: no import cycles (function-level imports included),
no method importing another method, and every import pointing down the layers of docs/architecture.md:
core (bench/core) < envs < methods < harness (bench/harness) < analysis (bench/analysis) < CLI (bench/cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "envs")

# Layers, lowest first, as module-name prefixes; a module may import its own layer and those below.
LAYERS = (("bench.core",), ("envs",), ("methods",), ("bench.harness",), ("bench.analysis",),
          ("bench.cli", "bench.__main__", "bench"))

def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return _import_graph()


def test_the_graph_sees_the_packages(graph):
    assert graph.number_of_nodes() > 60 and graph.has_edge("methods.fastv", "bench.core.models.steering")


def test_no_import_cycles(graph):
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_no_method_imports_another_method(graph):
    def method_of(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "methods" and parts[1] != "common" else None

    crossing = [(a, b) for a, b in graph.edges if method_of(a) and method_of(b) and method_of(a) != method_of(b)]
    assert not crossing, f"methods share code through methods/common.py, not each other: {crossing}"


def layer_of(module: str) -> int:
    """Index into LAYERS of the most specific prefix (``bench`` itself is the CLI package's parent)."""
    best = max(((len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes if _within(module, (p,))), default=None)
    assert best is not None, f"{module} is in no layer"
    return best[1]


def test_every_module_is_in_a_layer_folder(graph):
    loose = [m for m in graph.nodes if m.startswith("bench.") and m.count(".") == 1
             and m not in ("bench.core", "bench.harness", "bench.analysis", "bench.cli", "bench.__main__")]
    assert not loose, f"modules directly under bench/ (put them in core/, harness/, analysis/ or cli/): {loose}"


def test_imports_point_down_the_layers(graph):
    upward = [(a, b) for a, b in graph.edges if layer_of(b) > layer_of(a)]
    assert not upward, f"imports into a higher layer: {upward}"
