"""The core stays sans-IO: its modules import nothing that does I/O, threads or clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import aio_ashb._core

ALLOWED_TOP = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "enum",
    "heapq",
    "itertools",
    # Formats over bytes in memory (a core snapshot: io.BytesIO, json, numpy's zip archive,
    # a hash of the configuration); no file is opened.
    "hashlib",
    "io",
    "json",
    "zipfile",
    "math",
    "secrets",
    "typing",
    "numpy",
    "sortedcontainers",
    "aio_ashb",
}
FORBIDDEN_IN_PACKAGE = ("aio_ashb._study", "aio_ashb._trial", "aio_ashb.storage", "aio_ashb.cli")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_core_imports_only_pure_modules() -> None:
    root = Path(aio_ashb._core.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in _imports(path):
            assert name.split(".")[0] in ALLOWED_TOP, f"{path.name} imports {name}"
            assert not name.startswith(FORBIDDEN_IN_PACKAGE), f"{path.name} imports {name}"
            if name.startswith("aio_ashb."):
                assert name.startswith(("aio_ashb._core", "aio_ashb._exceptions")), name


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom time import monotonic\n")
    assert [n.split(".")[0] in ALLOWED_TOP for n in _imports(bad)] == [False, False]
