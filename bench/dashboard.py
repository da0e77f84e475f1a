"""The dashboard at scale, and what it costs a running study.

    python bench/dashboard.py                      # 34,000 trials (~200,000 events); 3 rounds
    python bench/dashboard.py --trials 2000 --rounds 1

1. Scale: a study of ``--trials`` trials (ASHA(1, 27, 3), a report at every step) is written to a
   fresh file, then a :class:`Dashboard` of it is timed: opening (reading and folding in every
   event), building the first full update a study page asks for (and its JSON size), an
   update when nothing changed, and one after another run appended more events.
2. Overhead: the same running study (durable commits, ``--overhead-trials`` trials that each
   sleep 5 ms per step) is timed alone and while another process polls it through a dashboard
   every ``--poll`` seconds (a page polls every second; 0.2 s is five open pages), alternating,
   ``--rounds`` times each; the table has the median wall time of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/dashboard.py` works

import anyio

import aio_ashb as aa
from aio_ashb.web import Dashboard
from aio_ashb.web.dashboard import StudyView
from bench._workload import SPACE, curve_terms, machine


async def write_study(db: Path, trials: int, step_time: float, durability: str) -> float:
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(1, 27, 3),
        sampler=aa.RandomSampler(0),
        storage=f"sqlite:///{db}",
        name="big",
        load_if_exists=True,
        durability=durability,  # type: ignore[arg-type]
    )

    async def objective(trial: aa.Trial) -> None:
        floor, scale = curve_terms(trial.params)
        async for step in trial.steps():
            if step_time:
                await anyio.sleep(step_time)
            await trial.report(floor + scale / step**0.5)

    start = time.perf_counter()
    async with study:
        await study.run(objective, max_trials=trials, concurrency=16)
    return time.perf_counter() - start


def _size(update: dict[str, Any]) -> int:
    return len(json.dumps(update, separators=(",", ":")))


async def scale(db: Path, trials: int) -> list[tuple[str, str]]:
    t0 = time.perf_counter()
    await write_study(db, trials, 0.0, "buffered")
    written = time.perf_counter() - t0
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        t0 = time.perf_counter()
        await storage.read_events_after("big", 0)
        reading = time.perf_counter() - t0
    dashboard = Dashboard(db)
    try:
        t0 = time.perf_counter()
        seq = await dashboard.read("big", lambda v: v.seq)
        opened = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = await dashboard.read("big", lambda v: v.update(0))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        await dashboard.read("big", lambda v: v.update(seq))
        idle = time.perf_counter() - t0
        await write_study(db, trials + 100, 0.0, "buffered")
        t0 = time.perf_counter()
        more = await dashboard.read("big", lambda v: v.update(seq))
        after = time.perf_counter() - t0
    finally:
        await dashboard.aclose()
    return [
        ("trials / events", f"{full['summary']['trials']:,} / {seq:,} (written in {written:.1f} s)"),
        ("open: read + fold every event", f"{opened:.2f} s"),
        ("  of which reading and decoding the rows", f"{reading:.2f} s (measured alone)"),
        ("first full update (a page opens)", f"{first:.2f} s, {_size(full) / 1e6:.1f} MB of JSON"),
        ("update, nothing new", f"{idle * 1000:.1f} ms"),
        (
            f"update after {more['seq'] - seq:,} new events",
            f"{after * 1000:.1f} ms, {len(more['trials'])} trials, {_size(more) / 1e3:.0f} kB of JSON",
        ),
    ]


def _poll(view: StudyView, since: int) -> int:
    view.update(since)
    return view.seq


def _poller(db: str, every: float, stop: Any, polls: Any) -> None:
    async def go() -> None:
        dashboard = Dashboard(db)
        seq = 0
        try:
            while not stop.is_set():
                # What a study page asks for: the changes since the last sequence number it saw.
                seq = await dashboard.read("big", partial(_poll, since=seq))
                polls.value += 1
                await anyio.sleep(every)
        finally:
            await dashboard.aclose()

    asyncio.run(go())


def overhead(trials: int, rounds: int, every: float) -> list[tuple[str, str]]:
    alone: list[float] = []
    watched: list[float] = []
    polls_total = 0
    ctx = mp.get_context("spawn")
    for _ in range(rounds):
        for polled in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                db = Path(tmp) / "run.db"
                asyncio.run(write_study(db, 0, 0.0, "durable"))  # the study exists, with no trials
                stop, polls = ctx.Event(), ctx.Value("i", 0)
                proc = ctx.Process(target=_poller, args=(str(db), every, stop, polls)) if polled else None
                if proc is not None:
                    proc.start()
                    while polls.value == 0:  # polling before the run starts
                        time.sleep(0.01)
                took = asyncio.run(write_study(db, trials, 0.005, "durable"))
                if proc is not None:
                    stop.set()
                    proc.join(30)
                    polls_total += polls.value
                (watched if polled else alone).append(took)
    a, w = statistics.median(alone), statistics.median(watched)
    return [
        ("running study alone (median)", f"{a:.2f} s  ({', '.join(f'{x:.2f}' for x in alone)})"),
        (
            f"while a dashboard polls every {every} s",
            f"{w:.2f} s  ({', '.join(f'{x:.2f}' for x in watched)}; {polls_total} polls)",
        ),
        ("overhead", f"{(w / a - 1) * 100:+.1f} %"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=34_000)  # about 200,000 events
    parser.add_argument("--overhead-trials", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    print(f"# bench/dashboard.py on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(scale(Path(tmp) / "big.db", args.trials))
    rows += overhead(args.overhead_trials, args.rounds, args.poll)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()
