"""The dashboard at scale, and what it costs a running study.

    python bench/dashboard.py                  # 100,000 trials (~1,150,000 events); 3 rounds
    python bench/dashboard.py --trials 2000 --rounds 1
    python bench/dashboard.py --fold           # also open it without its snapshot (slow)

1. Scale: a study of ``--trials`` trials (ASHA(3, 81, 3), a report at every step) is written to
   a fresh file (its run ends by storing a snapshot), then a :class:`Dashboard` of it is timed:
   opening (from the snapshot), the first full update a study page asks for (and its JSON
   size), a page of the table, the background count of the reports, an update when nothing
   changed, one after another run appended more events, and the CLI's ``status`` and ``best``
   in a fresh process.
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
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/dashboard.py` works

import anyio

import aio_ashb as aa
from aio_ashb._core._snapshot import dump as dump_core
from aio_ashb._core._snapshot import load as load_snapshot
from aio_ashb._factory import core_from_config
from aio_ashb.web import Dashboard
from aio_ashb.web.dashboard import StudyView
from aio_ashb.web.dashboard import _app as dashboard_app
from bench._workload import SPACE, curve_terms, machine


async def write_study(db: Path, trials: int, step_time: float, durability: str) -> float:
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(3, 81, 3),
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


async def _timed(what: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = await what
    return result, time.perf_counter() - t0


def _cli(db: Path, *args: str) -> float:
    """Wall time of one ``aio-ashb`` command in a fresh interpreter (imports included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aio_ashb", *args, str(db)], check=True, capture_output=True)
    return time.perf_counter() - t0


async def scale(db: Path, trials: int, fold: bool) -> list[tuple[str, str]]:
    _, written = await _timed(write_study(db, trials, 0.0, "buffered"))
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        info, state, last, _ = await storage.read_from_snapshot("big")
        core = core_from_config("big", storage, info.config)
    assert state is not None
    _, loading = await _timed(anyio.to_thread.run_sync(load_snapshot, core, state[1]))
    dump_start = time.perf_counter()
    dump_core(core)
    dumping = time.perf_counter() - dump_start
    rows = [
        ("trials / events", f"{trials:,} / {last:,} (written in {written:.1f} s)"),
        (
            "snapshot (written at the run's end)",
            f"{len(state[1]) / 1e6:.1f} MB; dump {dumping:.2f} s, load {loading:.2f} s",
        ),
    ]
    dashboard = Dashboard(db)
    try:
        seq, opened = await _timed(dashboard.read("big", lambda v: v.seq))
        full, first = await _timed(dashboard.read("big", lambda v: v.update(0)))
        page, paged = await _timed(dashboard.read("big", lambda v: v.table(sort="value", limit=200)))
        _, idle = await _timed(dashboard.read("big", lambda v: v.update(seq)))
        t0 = time.perf_counter()
        for _ in range(100_000):  # polled, as a page polls
            if (await dashboard.read("big", lambda v: v.summary()))["reports"] is not None:
                break
            await anyio.sleep(0.01)
        counted = time.perf_counter() - t0 + opened
        await write_study(db, trials + 100, 0.0, "buffered")
        more, after = await _timed(dashboard.read("big", lambda v: v.update(seq)))
    finally:
        await dashboard.aclose()
    rows += [
        ("open (from the snapshot)", f"{opened:.2f} s"),
        ("first full update (a page opens)", f"{first:.2f} s, {_size(full) / 1e6:.2f} MB of JSON"),
        ("  open + first update", f"{opened + first:.2f} s"),
        ("a table page (200 rows, sorted by value)", f"{paged * 1000:.0f} ms, {_size(page) / 1e3:.0f} kB"),
        ("report count and best line (background scan)", f"complete {counted:.1f} s after opening"),
        ("update, nothing new", f"{idle * 1000:.1f} ms"),
        (
            f"update after {more['seq'] - seq:,} new events",
            f"{after * 1000:.1f} ms, {len(more['trials'])} trials, {_size(more) / 1e3:.0f} kB of JSON",
        ),
    ]
    for command in ("status", "best"):
        rows.append((f"aio-ashb {command} (a fresh process)", f"{_cli(db, command):.2f} s"))
    if fold:  # the path without a snapshot, for comparison
        dashboard = Dashboard(db)
        old = dashboard_app.RESTORE_FROM
        dashboard_app.RESTORE_FROM = 2**62
        try:
            _, folded = await _timed(dashboard.read("big", lambda v: v.seq))
        finally:
            dashboard_app.RESTORE_FROM = old
            await dashboard.aclose()
        rows.append(("open by folding every event (no snapshot)", f"{folded:.2f} s"))
    return rows


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
    parser.add_argument("--trials", type=int, default=100_000)  # about 1,150,000 events
    parser.add_argument("--fold", action="store_true", help="also time opening without the snapshot")
    parser.add_argument("--overhead-trials", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    print(f"# bench/dashboard.py on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(scale(Path(tmp) / "big.db", args.trials, args.fold))
    rows += overhead(args.overhead_trials, args.rounds, args.poll)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()
