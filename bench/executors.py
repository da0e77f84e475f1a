"""What each executor costs on CPU-bound trials, against the serial time of the same work.

    python bench/executors.py                  # 1 and 2 workers; Dask if installed
    python bench/executors.py --trials 48 --unit-ms 20

A budget-style objective burns ``unit_ms`` of pure-Python CPU per unit of resource, resuming
from its checkpoint (so a promoted trial only does the new units). Each executor runs the same
promotion study (ASHA 1-3-9, seed 0) with 1 and 2 workers. ASHA's choices depend on the order
results arrive, so runs differ slightly in the work they do: each row's serial time is that
run's own work (its units) times the cost of one unit measured serially in this process, in the
same run. Pools are started (and warmed) before the clock starts; their start-up is its own
column.

- speed-up = serial / wall; efficiency = speed-up / workers;
- overhead per call = (wall * workers - serial) / calls, the time a worker is not doing the
  objective's own work, per call (dispatch, pickling, the runner; for threads, the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/executors.py` works

import aio_ashb as aa
from bench._workload import machine

SCHED = aa.ASHA(1, 9, 3)
SPACE = {"x": aa.Float(0.0, 1.0), "unit": 0.02}


def burn(seconds: float) -> None:
    """Pure-Python CPU work for about ``seconds`` (holds the GIL, like most Python code)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(i * i for i in range(200))


def objective(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, bytes]:
    start = int(checkpoint) if checkpoint else 0
    burn(params["unit"] * (budget - start))
    return (params["x"] - 0.3) ** 2 + 1 / budget, str(budget).encode()


def unit_cost(unit: float, repeats: int = 20) -> float:
    """Seconds one unit takes, run serially here (median)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        burn(unit)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@asynccontextmanager
async def dask_executor(workers: int) -> AsyncIterator[aa.Executor]:
    from distributed import LocalCluster

    async with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            asynchronous=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        aa.DaskExecutor(cluster.scheduler_address) as ex,
    ):
        yield ex


@asynccontextmanager
async def plain(executor: aa.Executor) -> AsyncIterator[aa.Executor]:
    async with executor:
        yield executor


async def measure(
    name: str, make: Callable[[int], AbstractAsyncContextManager[aa.Executor]], workers: int, args: Any
) -> list[str]:
    space = {**SPACE, "unit": args.unit_ms / 1000}
    t0 = time.perf_counter()
    async with make(workers) as executor:
        # Warm every worker (process start, imports) so the clock sees steady-state dispatch.
        warm = {"x": 0.5, "unit": 0.0}
        await asyncio.gather(*(executor.submit(objective, warm, 1, None) for _ in range(workers)))
        started = time.perf_counter() - t0
        study = await aa.create_study(space=space, scheduler=SCHED, sampler=aa.RandomSampler(0))
        t0 = time.perf_counter()
        await study.run(objective, max_trials=args.trials, concurrency=workers, executor=executor)
        wall = time.perf_counter() - t0
    trials = study.trials
    units = sum(max(t.rung_values, default=0) for t in trials)
    calls = sum(len(t.rung_values) for t in trials)
    serial = units * args.per_unit
    speedup = serial / wall
    overhead = (wall * workers - serial) / calls
    return [
        name,
        str(workers),
        str(calls),
        str(units),
        f"{started:.2f}",
        f"{serial:.2f}",
        f"{wall:.2f}",
        f"{speedup:.2f}",
        f"{speedup / workers:.0%}",
        f"{overhead * 1000:.1f}",
    ]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])


async def amain(args: Any) -> None:
    args.per_unit = unit_cost(args.unit_ms / 1000)
    print(machine())
    print(
        f"{args.trials} trials, ASHA(1, 9, 3), {args.unit_ms} ms of CPU per unit; "
        f"one unit serially: {args.per_unit * 1000:.2f} ms\n"
    )
    executors: list[tuple[str, Callable[[int], AbstractAsyncContextManager[aa.Executor]]]] = [
        ("threads", lambda w: plain(aa.ThreadExecutor())),
        ("processes", lambda w: plain(aa.ProcessExecutor(w))),
    ]
    try:
        from importlib.metadata import version

        import distributed  # noqa: F401

        executors.append(("dask", dask_executor))
        print(f"Dask distributed {version('distributed')}, LocalCluster of worker processes on loopback\n")
    except ImportError:
        print("dask: not installed (pip install -e '.[dask]')\n")
    rows = []
    for name, make in executors:
        for workers in args.workers:
            rows.append(await measure(name, make, workers, args))
    header = [
        "executor",
        "workers",
        "calls",
        "units",
        "start s",
        "serial s",
        "wall s",
        "speed-up",
        "efficiency",
        "overhead/call ms",
    ]
    print(table(rows, header))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=36)
    parser.add_argument("--unit-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
