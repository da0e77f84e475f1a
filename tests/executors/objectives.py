"""Budget-style objectives for the executor tests, at module level so that worker processes and
Dask workers can import them. Each call appends ``x start budget pid`` to the file named by the
``log`` constant, so tests can see where every segment ran and what it resumed from."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from pathlib import Path
from typing import Any


def curve(x: float, budget: int) -> float:
    return (x - 0.3) ** 2 + (1 + x) / math.sqrt(budget)


def _log(params: dict[str, Any], start: int, budget: int) -> None:
    with open(params["log"], "a") as f:
        f.write(f"{params['x']!r} {start} {budget} {os.getpid()}\n")


def train(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, bytes]:
    """Resumes from the checkpoint: trains from the budget it records up to ``budget``."""
    start = 0 if checkpoint is None else int(json.loads(checkpoint)["trained"])
    assert start < budget, (start, budget)
    _log(params, start, budget)
    time.sleep(params.get("seconds", 0.0) * (budget - start))
    return curve(params["x"], budget), json.dumps({"trained": budget}).encode()


async def train_async(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, bytes]:
    start = 0 if checkpoint is None else int(json.loads(checkpoint)["trained"])
    _log(params, start, budget)
    await asyncio.sleep(0)
    return curve(params["x"], budget), json.dumps({"trained": budget}).encode()


def value_only(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    """No checkpoint: every segment trains from scratch."""
    assert checkpoint is None
    _log(params, 0, budget)
    return curve(params["x"], budget)


def sleep_forever(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    Path(params["log"]).write_text(str(os.getpid()))
    time.sleep(600)
    return 0.0


def die_once(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    """The first call writes its pid to ``marker`` and waits to be killed; later calls finish."""
    marker = Path(params["marker"])
    try:
        with open(marker, "x") as f:  # exactly one call wins the race to create it
            f.write(str(os.getpid()))
    except FileExistsError:
        return curve(params["x"], budget)
    time.sleep(600)
    return 0.0


def raises(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    if params["x"] > 0.5:
        raise RuntimeError(f"diverged at x={params['x']:.3f}")
    return curve(params["x"], budget)


def bad_checkpoint(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, Any]:
    return 0.5, {"not": "bytes"}


def read_log(path: Path) -> dict[float, list[tuple[int, int, int]]]:
    """The calls per trial (by its x), in order: (start, budget, pid)."""
    calls: dict[float, list[tuple[int, int, int]]] = {}
    if not path.exists():
        return calls
    for line in path.read_text().splitlines():
        x, start, budget, pid = line.split()
        calls.setdefault(float(x), []).append((int(start), int(budget), int(pid)))
    return calls


def fork_then_die(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    """Like training code with a fork-based data loader whose worker process is OOM-killed: the
    forked child keeps the pipe open for 30 s after its parent died."""
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    time.sleep(0.2)
    os.kill(os.getpid(), 9)
    return 0.0


def sleep_then_value(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    time.sleep(params["seconds"])
    return curve(params["x"], budget)


def die_now(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    os.kill(os.getpid(), 9)
    return 0.0
