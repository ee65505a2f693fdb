"""The package's modules import in one direction: no cycles, and no layer reaches up.

Every import counts (top level, inside functions, under `if TYPE_CHECKING:`), and
a name imported from a package that only re-exports it counts as an import of the
module that defines it (tests/import_graph.py). The layers, lowest first, are the
map at the top of docs/architecture.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from import_graph import ImportGraph

PACKAGE = Path(__file__).resolve().parent.parent / "docket_nats"

# Lowest first. A module may import from its own layer or any layer below.
# `name.*` covers a package's modules (not its __init__, which is listed on its own).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "base",
        [
            "_types", "_subjects", "_keys", "_wire", "_signatures", "_embedded",
            "_metrics", "_results", "_strike_rules", "_settings", "annotations", "_priority",
        ],
    ),
    ("transport", ["_publisher", "_connection"]),
    (
        "stores",
        [
            "_strike_list", "_worker_registry", "_dead_letters", "_context",
            "_state_records", "_running_writes", "_execution_progress", "_state_queries",
            "_queue_bound",
        ],
    ),
    ("execution", ["execution", "_work_stream", "_telemetry", "_snapshot", "_groups"]),
    ("producer", ["docket", "agenda", "strikelist", "testing"]),
    ("dependencies", ["dependencies.*", "_run_log"]),
    ("worker", ["worker.*", "tasks"]),
    (
        "interfaces",
        [
            "cli", "cli.*", "dashboard", "dashboard.*",
            "_metrics_exporter", "_log_setup", "pytest_plugin", "__main__",
            # The packages' own __init__ modules: facades over what is below.
            "", "dependencies", "worker",
        ],
    ),
]  # fmt: skip


def layer_of(module: str) -> int:
    short = module.removeprefix("docket_nats").removeprefix(".")
    wildcard: int | None = None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern == short:
                return index
            if pattern.endswith(".*") and short.startswith(pattern[:-1]):
                wildcard = index
    if wildcard is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS (and the map)")
    return wildcard


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    return ImportGraph(PACKAGE, "docket_nats")


def test_the_graph_sees_every_kind_of_import(graph: ImportGraph) -> None:
    # The walker must see through re-exports and find imports in functions and
    # under TYPE_CHECKING, or the checks below would pass on too few edges.
    assert len(graph.files) > 60
    assert "docket_nats._context" in graph.edges["docket_nats.execution"]
    assert graph.defining_module("docket_nats.dependencies", "Retry") == (
        "docket_nats.dependencies._retry"
    )
    # `docket_nats/__init__.py` imports Docket from .docket; CurrentWorker via a
    # TYPE_CHECKING import in the dependencies facade.
    assert "docket_nats.docket" in graph.edges["docket_nats"]
    assert "docket_nats.worker._worker" in graph.edges["docket_nats.dependencies"]


def test_no_import_cycle(graph: ImportGraph) -> None:
    assert graph.cycles() == []


def test_every_module_has_a_layer(graph: ImportGraph) -> None:
    for module in graph.files:
        layer_of(module)


def test_no_module_imports_from_a_layer_above_it(graph: ImportGraph) -> None:
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in sorted(graph.edges.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []
