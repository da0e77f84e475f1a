"""What the tests share: the benchmark workload's space and learning curve, a study factory, and
objectives that report it. (Fixtures are in tests/conftest.py.)"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
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


@contextlib.contextmanager
def connect(path: Any, **kw: Any) -> Iterator[sqlite3.Connection]:
    """An outside connection to a study file, as ``with sqlite3.connect(path) as conn`` (a
    transaction committed, or rolled back on an error) that is also closed at the end: the
    connection's own ``with`` never closes it, and CPython 3.13 warns of one left to the
    collector (a ResourceWarning, an error under this suite's warning filter)."""
    conn = sqlite3.connect(path, **kw)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


async def new_study(**kw: Any) -> aa.Study:
    """A study of SPACE (ASHA 1-3-9-27, seed 0, in memory unless ``storage`` says otherwise)."""
    args: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 27, 3), "sampler": aa.RandomSampler(0)}
    return await aa.create_study(**{**args, **kw})


async def reporting(trial: aa.Trial) -> None:
    """An objective that reports ``loss`` at every step, with a small checkpoint."""
    async for step in trial.steps():
        await trial.report(loss(trial.params, step), checkpoint={"step": step})
