from __future__ import annotations

import math
from typing import Any

import aio_ashb as aa

SPACE: dict[str, Any] = {
    "lr": aa.Float(1e-4, 1.0, log=True),
    "x": aa.Float(0.0, 1.0),
    "c": aa.Categorical(["a", "b", "c", "d"]),
}
OFF = {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3}


def loss(params: dict[str, Any], step: int) -> float:
    """The benchmark workload's cheap deterministic learning curve."""
    f = (math.log10(params["lr"]) + 2) ** 2 / 4 + (params["x"] - 0.3) ** 2 + OFF[params["c"]]
    g = 1 + params["x"] + 0.5 * abs(math.log10(params["lr"]) + 2)
    return float(f + g / math.sqrt(step))
