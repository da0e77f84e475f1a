"""A durable SQLite study inside an application whose event loop is never idle.

    python bench/embedded.py                 # 5 s per row
    python bench/embedded.py --seconds 10

The case of a web backend that embeds a study: the same event loop serves the application.
Here the application is two tasks that each compute for 1 ms, then give the loop a turn
(``await asyncio.sleep(0)``), so the loop never waits in ``select`` with a timeout. Beside
them runs a durable SQLite study (ASHA stopping mode, 8 trials at once, each step a 1 ms sleep
then a report). Each row prints the study's reports and commits per second, the longest
commit, and how much of each second the application computed.

The rows are: the study alone (the application's tasks not started); the study next to the
busy application; and the same with the storage's GIL handover turned off (what every release
before it did: the connection's thread cannot get the GIL back from a loop that takes it
again at every turn, so the study all but stops).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/embedded.py` works

import aio_ashb as aa
from aio_ashb import _handover
from aio_ashb.storage import _connection
from bench._workload import ETA, MAX_R, MIN_R, SPACE, curve_terms, machine

APP_TASKS = 2
SLICE = 0.001  # the application's compute per turn of the loop


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def row(seconds: float, busy: bool) -> tuple[float, float, float, float]:
    """Reports/s, commits/s, longest commit (ms), application compute (ms per second)."""
    commits: list[float] = []
    running: dict[int, float] = {}  # calls not yet done: when each began
    keys = itertools.count()
    original = _connection.Connection.run

    async def timed_run(self: _connection.Connection, fn: _connection.Job) -> object:
        t0 = time.perf_counter()
        key = next(keys)
        running[key] = t0
        try:
            return await original(self, fn)
        finally:
            del running[key]
            commits.append(time.perf_counter() - t0)

    _connection.Connection.run = timed_run  # type: ignore[assignment,method-assign]
    computed = 0.0
    stop = False

    async def application() -> None:
        nonlocal computed
        while not stop:
            spin(SLICE)
            computed += SLICE
            await asyncio.sleep(0)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            study = await aa.create_study(
                space=SPACE,
                storage=f"sqlite:///{tmp}/embedded.db",
                scheduler=aa.ASHA(MIN_R, MAX_R, ETA, mode="stopping"),
                sampler=aa.RandomSampler(0),
                durability="durable",
            )
            reports = 0

            async def objective(trial: aa.Trial) -> None:
                nonlocal reports
                f, g = curve_terms(trial.params)
                async for step in trial.steps():
                    await asyncio.sleep(0.001)
                    await trial.report(f + g / step**0.5)
                    reports += 1

            async with study:
                apps = [asyncio.create_task(application()) for _ in range(APP_TASKS if busy else 0)]
                commits.clear()
                t0 = time.perf_counter()
                run = asyncio.create_task(study.run(objective, concurrency=8))
                await asyncio.sleep(seconds)
                elapsed = time.perf_counter() - t0
                done_reports, done_commits = reports, list(commits)
                # A call still waiting counts for as long as it has waited so far.
                waiting = [t0 + elapsed - began for began in running.values()]
                done_computed = computed
                run.cancel()
                stop = True
                await asyncio.gather(run, *apps, return_exceptions=True)
    finally:
        _connection.Connection.run = original  # type: ignore[method-assign]
    longest = max(done_commits + waiting, default=float("nan")) * 1000
    return (
        done_reports / elapsed,
        len(done_commits) / elapsed,
        longest,
        done_computed / elapsed * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per row (default 5)")
    args = parser.parse_args()
    print(f"# {machine()}, SQLite {__import__('sqlite3').sqlite_version}, {args.seconds:g} s per row\n")
    print("| case | reports/s | storage calls/s | longest call (ms) | application compute (ms per s) |")
    print("| --- | --- | --- | --- | --- |")
    cases = [
        ("study alone", False, True),
        ("next to a busy application", True, True),
        ("next to a busy application, handover off", True, False),
    ]
    for name, busy, handover in cases:
        _handover.HAND_OVER = handover
        reports, calls, longest, computed = asyncio.run(row(args.seconds, busy))
        print(f"| {name} | {reports:,.0f} | {calls:,.1f} | {longest:,.0f} | {computed:,.0f} |")
    _handover.HAND_OVER = True


if __name__ == "__main__":
    main()
