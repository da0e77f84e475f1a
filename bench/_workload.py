"""The common workload of shared/BENCHMARKS.md, shared by the benchmark scripts."""

from __future__ import annotations

import math
import platform
import sys
from typing import Any

import aio_ashb as aa

SPACE: dict[str, Any] = {
    "lr": aa.Float(1e-4, 1.0, log=True),
    "x": aa.Float(0.0, 1.0),
    "c": aa.Categorical(["a", "b", "c", "d"]),
}
OFFSETS = {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3}
MIN_R, MAX_R, ETA = 1, 81, 3


def curve_terms(params: dict[str, Any]) -> tuple[float, float]:
    """``loss(step) = f + g / sqrt(step)`` for these params."""
    f = (math.log10(params["lr"]) + 2) ** 2 / 4 + (params["x"] - 0.3) ** 2 + OFFSETS[params["c"]]
    g = 1 + params["x"] + 0.5 * abs(math.log10(params["lr"]) + 2)
    return f, g


def machine() -> str:
    import numpy

    return (
        f"Python {platform.python_version()} on {platform.machine()}, {sys.platform}; "
        f"aio_ashb {aa.__version__}, numpy {numpy.__version__}"
    )
