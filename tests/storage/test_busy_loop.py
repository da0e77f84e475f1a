"""A study on SQLite keeps going next to an application whose event loop is never idle.

Such a loop takes the GIL back at every turn, and CPython then never asks it to let the
connection's thread have it (see aio_ashb/_handover.py): without the handover this
study made no commit in seconds, and the test fails at its deadline."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import aio_ashb as aa
from aio_ashb import _handover
from aio_ashb._handover import handover
from aio_ashb.storage import _connection
from aio_ashb.storage._sqlite import SQLiteStorage
from tests.helpers import SPACE, loss


def _compute(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _busy_application(stop: asyncio.Event) -> None:
    """Compute 1 ms at a time, giving the loop a turn in between, as a busy backend does."""
    while not stop.is_set():
        _compute(0.001)
        await asyncio.sleep(0)


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_durable_study_finishes_next_to_a_busy_loop(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "busy.db")
    study = await aa.create_study(
        space=SPACE,
        storage=storage,
        scheduler=aa.ASHA(1, 9, 3),
        sampler=aa.RandomSampler(0),
        durability="durable",
        name="s",
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    stop = asyncio.Event()
    apps = [asyncio.create_task(_busy_application(stop)) for _ in range(2)]
    longest = 0.0
    try:
        async with study:
            conn = storage._conn
            assert conn is not None
            send = conn.run

            async def timed(fn: _connection.Job) -> object:
                nonlocal longest
                t0 = time.perf_counter()
                try:
                    return await send(fn)
                finally:
                    longest = max(longest, time.perf_counter() - t0)

            conn.run = timed  # type: ignore[method-assign,assignment]
            try:
                async with asyncio.timeout(30):  # seconds; it takes about one with the handover
                    await study.run(objective, max_trials=20, concurrency=4)
            except TimeoutError:
                stop.set()
                done = len([t for t in study.trials if t.state.is_finished])
                pytest.fail(f"20 trials on SQLite did not finish in 30 s next to a busy loop ({done} did)")
    finally:
        stop.set()
        await asyncio.gather(*apps)
        await storage.close()
    assert len(study.trials) == 20
    # About 15 ms with the handover; without, stalls of random length, seconds at a time.
    assert longest < 1.0, f"a storage call took {longest:.2f} s"
    # Every report is in the file.
    again = await aa.load_study(name="s", storage=f"sqlite:///{tmp_path / 'busy.db'}")
    async with again:
        seen = [(t.state, t.step, t.rung_values) for t in again.trials]
    assert seen == [(t.state, t.step, t.rung_values) for t in study.trials]


@pytest.mark.asyncio
async def test_no_handover_runs_once_the_jobs_are_done(tmp_path: Path) -> None:
    """The handover's timer lives only while a job is out: an idle study costs the loop nothing."""

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    storage = SQLiteStorage(tmp_path / "idle.db")
    try:
        async with await aa.create_study(space=SPACE, storage=storage, name="s") as study:
            await study.run(objective, max_trials=3)
            conn = storage._conn
            assert isinstance(conn, _connection.Connection)
            h = handover()
            assert h._out == 0 and h._timer is None
            await conn.run(lambda db: time.sleep(0.02))  # handed over to: then the timer goes too
            assert h._out == 0 and h._timer is None
    finally:
        await storage.close()


def test_the_handover_follows_the_connection_to_another_loop(tmp_path: Path) -> None:
    """A job left out when its loop closed is not counted on the next loop: there the timer
    still stops once that loop's own jobs are done."""
    conn = _connection.Connection("loops")

    async def first() -> None:
        await conn.open(lambda: sqlite3.connect(tmp_path / "loops.db", check_same_thread=False))
        left.append(asyncio.get_running_loop().create_task(conn.run(lambda db: time.sleep(0.05))))
        await asyncio.sleep(0.01)

    async def second() -> tuple[int, object]:
        await conn.run(lambda db: time.sleep(0.02))
        seen = handover()._out, handover()._timer
        await conn.close()
        return seen

    left: list[asyncio.Task[None]] = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()  # with that job still out: its outcome has nowhere to go
    assert asyncio.run(second()) == (0, None)
    assert not left[0].done()


class _Recording:
    """The connection's idle event, with each wait of the loop on it recorded (when, how long)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.waits: list[tuple[float, float]] = []

    def wait(self, timeout: float) -> bool:
        t0 = time.perf_counter()
        try:
            return self.event.wait(timeout)
        finally:
            self.waits.append((t0, time.perf_counter() - t0))

    def set(self) -> None:
        self.event.set()

    def clear(self) -> None:
        self.event.clear()


@pytest.mark.asyncio
async def test_a_late_job_is_handed_over_to_at_growing_intervals(tmp_path: Path) -> None:
    conn = _connection.Connection("late")
    await conn.open(lambda: sqlite3.connect(tmp_path / "late.db", check_same_thread=False))
    try:
        h = handover()
        recording = _Recording(h._idle)
        h._idle = recording  # type: ignore[assignment]
        gate = threading.Event()
        sent = time.perf_counter()
        job = asyncio.create_task(conn.run(lambda db: gate.wait(5)))
        await asyncio.sleep(0.06)
        gate.set()
        await job
        out = list(recording.waits)
        await asyncio.sleep(0.05)
        assert recording.waits == out, "handovers went on after the job was done"
        assert h._out == 0 and h._timer is None
    finally:
        h._idle = recording.event
        await conn.close()
    # 1, 3, 7, 15, 31 ms after the job was sent (then every 16 ms), each a wait of the whole
    # 0.5 ms since the job is not done; late timers shift them, never bring them forward.
    starts = [t - sent for t, _ in out]
    assert len(out) >= 3, out
    assert starts[0] >= _handover.FIRST
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for i, gap in enumerate(gaps[:4]):
        assert gap >= 2 ** (i + 1) * _handover.FIRST, gaps
    assert all(blocked >= 0.9 * _handover.WAIT for _, blocked in out[:-1]), out


def test_a_loop_left_and_come_back_to_leaves_no_timer_behind(tmp_path: Path) -> None:
    """Loop A stops (not closed) with a job out; B uses the connection; then A again. Each job
    is counted by the handover of the loop that sent it, and no timer outlives its jobs."""
    conn = _connection.Connection("loops")
    a, b = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        a.run_until_complete(conn.open(lambda: sqlite3.connect(tmp_path / "l.db", check_same_thread=False)))
        out = a.create_task(conn.run(lambda db: time.sleep(0.1)))
        a.run_until_complete(asyncio.sleep(0.01))  # A stops with that job out, its timer set
        assert _handover._handovers[a]._timer is not None
        b.run_until_complete(conn.run(lambda db: None))
        back = a.create_task(conn.run(lambda db: None))
        a.run_until_complete(asyncio.gather(out, back))
        a.run_until_complete(conn.run(lambda db: None))
        for loop in (a, b):
            h = _handover._handovers[loop]
            assert h._out == 0 and h._timer is None
        recording = _Recording(_handover._handovers[a]._idle)
        _handover._handovers[a]._idle = recording  # type: ignore[assignment]
        a.run_until_complete(asyncio.sleep(0.2))  # nothing out: no handover
        assert recording.waits == []
        a.run_until_complete(conn.close())
    finally:
        a.close()
        b.close()
