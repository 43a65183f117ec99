"""Import structure, checked statically so it cannot rot: no import cycles (function-level imports included),
no method importing another method, and the lower layers (models, methods, envs) never reaching up into the
harness, analysis or CLI modules."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "envs")

# What each lower layer may import from ``bench`` (module-name prefixes); everything else in bench is above it.
CORE = ("bench.errors", "bench.interrupt", "bench.render", "bench.models", "bench.profiler.flops",
        "bench.profiler.timing")
ALLOWED_FROM_BENCH = {
    "bench.models": CORE,
    "bench.profiler.flops": CORE,
    "bench.profiler.timing": CORE,
    "methods": CORE,
    "envs": CORE,
}


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
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target)
                    break
    return graph


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return _import_graph()


def test_the_graph_sees_the_packages(graph):
    assert graph.number_of_nodes() > 60 and graph.has_edge("methods.fastv", "bench.models.steering")


def test_no_import_cycles(graph):
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_no_method_imports_another_method(graph):
    def method_of(module: str) -> str | None:
        parts = module.split(".")
        return None if parts[0] != "methods" or parts[1] == "common" else parts[1]

    crossing = [(a, b) for a, b in graph.edges if method_of(a) and method_of(b) and method_of(a) != method_of(b)]
    assert not crossing, f"methods share code through methods/common.py, not each other: {crossing}"


def test_lower_layers_do_not_import_upwards(graph):
    upward = []
    for a, b in graph.edges:
        layer = next((k for k in ALLOWED_FROM_BENCH if a == k or a.startswith(k + ".")), None)
        if layer and b.startswith("bench") and not any(b == c or b.startswith(c + ".") for c in CORE):
            upward.append((a, b))
    assert not upward, f"imports from a lower layer into the harness/analysis/CLI: {upward}"
