"""The import graph of aio_ashb: no circles and no upward arrows.

Every module (packages count as one) sits in a layer, and imports only from lower layers;
imports under ``if TYPE_CHECKING:`` are annotations, not dependencies. docs/architecture.md
draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aio_ashb

LAYERS: list[set[str]] = [
    {"aio_ashb._exceptions"},
    {"aio_ashb._core", "aio_ashb._handover"},
    {
        "aio_ashb.storage",
        "aio_ashb.events",
        "aio_ashb._report",
        "aio_ashb._run_options",
        "aio_ashb._gcfreeze",
        "aio_ashb._threads",
        "aio_ashb._tasks",
    },
    {"aio_ashb._trial", "aio_ashb._journal", "aio_ashb._progress"},
    {"aio_ashb._objective"},
    {"aio_ashb._executors"},
    {"aio_ashb._runner"},
    {"aio_ashb._study"},
    {"aio_ashb._factory"},
    {"aio_ashb._simulator"},
    {"aio_ashb.simulation", "aio_ashb.plots"},
    {"aio_ashb"},
    {"aio_ashb.web"},
    {"aio_ashb.demo", "aio_ashb.cli"},
    {"aio_ashb.__main__"},
]
PACKAGES = ("aio_ashb._core", "aio_ashb.storage", "aio_ashb._executors", "aio_ashb.web")
ROOT = Path(aio_ashb.__file__).parent


def _unit(module: str) -> str:
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), module)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dependencies(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    annotations = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {_unit(n) for n in found if n == "aio_ashb" or n.startswith("aio_ashb.")}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(_module(path))
        graph.setdefault(unit, set()).update(_dependencies(path) - {unit})
    return graph


def test_every_module_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    assert set(_graph()) == placed


def test_imports_only_point_down() -> None:
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    upward = [
        f"{unit} (layer {layer[unit]}) imports {dep} (layer {layer[dep]})"
        for unit, deps in _graph().items()
        for dep in sorted(deps)
        if layer[dep] >= layer[unit]
    ]
    assert not upward, "\n".join(upward)
