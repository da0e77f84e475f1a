"""A study on SQLite keeps going next to an application whose event loop is never idle.

Such a loop takes the GIL back at every turn, and CPython then never asks it to let the
connection's thread have it (see aio_ashb/storage/_connection.py): without the handover this
study made no commit in seconds, and the test fails at its deadline."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import aio_ashb as aa
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
    try:
        async with study:
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(30):  # seconds; it takes about one with the handover
                    await study.run(objective, max_trials=20, concurrency=4)
            except TimeoutError:
                done = len([t for t in study.trials if t.state.is_finished])
                pytest.fail(f"20 trials on SQLite did not finish in 30 s next to a busy loop ({done} did)")
            elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        await asyncio.gather(*apps)
        await storage.close()
    assert len(study.trials) == 20
    assert elapsed < 30
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
            assert conn._unfinished == 0 and conn._timer is None
            # A slow job is handed over to, then the timer goes with it.
            await conn.run(lambda db: time.sleep(0.02))
            assert conn._unfinished == 0 and conn._timer is None
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
        seen = conn._unfinished, conn._timer
        await conn.close()
        return seen

    left: list[asyncio.Task[None]] = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()  # with that job still out: its outcome has nowhere to go
    assert asyncio.run(second()) == (0, None)
    assert not left[0].done()
