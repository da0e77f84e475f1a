"""Snapshots of a study's core in the SQLite file: written by the study's writer (at the end of
a run, when ask/tell closes, now and then during a long run), under its lease only, ordered after
the events they reflect; read by the CLI (and the dashboard) instead of the whole log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb import _journal
from aio_ashb._core import TrialCreated
from aio_ashb._factory import read_core
from tests.helpers import SPACE, connect, loss, new_study


async def run(db: Path, trials: int, **kw: Any) -> None:
    storage, scheduler, sampler = f"sqlite:///{db}", aa.ASHA(1, 9, 3), aa.RandomSampler(2)
    study = await new_study(
        storage=storage, scheduler=scheduler, sampler=sampler, name="s", load_if_exists=True, **kw
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    async with study:
        await study.run(objective, max_trials=trials, concurrency=4)


def rows(db: Path) -> list[tuple[Any, ...]]:
    with connect(db) as conn:
        return conn.execute(
            "SELECT s.study_id, s.seq, (SELECT max(seq) FROM events) FROM snapshots s"
        ).fetchall()


async def same_as_the_log(db: Path) -> None:
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        info, core, _ = await read_core("s", storage)
        info, events = await storage.read_study("s")
    replayed = aa._factory.core_from_config("s", storage, info.config)
    replayed.replay(events)
    assert repr(core.trials()) == repr(replayed.trials())
    assert repr(core.best()) == repr(replayed.best())


@pytest.mark.asyncio
async def test_a_run_ends_with_a_snapshot_of_everything_it_wrote(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run(db, 30)
    [(_, seq, top)] = rows(db)
    assert seq == top
    await run(db, 50)  # the next run replaces it
    [(_, seq, top)] = rows(db)
    assert seq == top
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        _, state, last, events = await storage.read_from_snapshot("s")
        assert state is not None and state[0] == last == top and events == []
    await same_as_the_log(db)


@pytest.mark.asyncio
async def test_ask_and_tell_leave_a_snapshot_when_the_study_closes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{db}", name="s"
    )
    async with study:
        for _ in range(6):
            job = await study.ask()
            await study.tell(job, 0.5)
    [(_, seq, top)] = rows(db)
    assert seq == top
    await same_as_the_log(db)


@pytest.mark.asyncio
async def test_a_long_run_stores_snapshots_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lease renewals every 0.1 s, and a snapshot at any of them after 50 new events.
    monkeypatch.setattr(_journal, "_SNAPSHOT_EVENTS", 50)
    db = tmp_path / "s.db"
    seen: list[tuple[Any, ...]] = []
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{db}", name="s", lease_ttl=0.3
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(0.01)
            await trial.report(loss(trial.params, step))

    async def watch() -> None:
        while True:
            await anyio.sleep(0.05)
            seen.extend(rows(db))

    async with study, anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await study.run(objective, max_trials=250, concurrency=8)  # about a second
        tg.cancel_scope.cancel()
    mid_run = {seq for _, seq, top in seen if seq < top}
    assert len(mid_run) >= 2, seen  # several, each behind the log it was read with


@pytest.mark.asyncio
async def test_a_writer_that_lost_its_lease_writes_no_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run(db, 10)
    [(_, before, _)] = rows(db)
    async with aa.SQLiteStorage(db) as a, aa.SQLiteStorage(db) as b:
        await a.acquire_lease("s", "runner A", ttl=0.001)
        await anyio.sleep(0.01)
        await b.acquire_lease("s", "runner B", ttl=30)  # A's lease expired: B holds the study
        a.append("s", [TrialCreated(10, 0, {"lr": 0.1, "x": 0.5, "c": "a"}, ("PCG64", 1, 1, 0, 0), 1.0)])
        a.save_snapshot("s", b"anything")
        with pytest.raises(aa.StudyLockedError):
            await a.flush(a._seq)
        await a.flush()
        await b.release_lease("s", "runner B")
    assert rows(db)[0][1] == before  # neither the event nor the snapshot was written
    with connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM snapshots WHERE data = ?", (b"anything",)).fetchone() == (
            0,
        )


@pytest.mark.asyncio
async def test_deleting_a_study_deletes_its_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run(db, 10)
    assert len(rows(db)) == 1
    await aa.delete_study(name="s", storage=f"sqlite:///{db}")
    assert rows(db) == []


@pytest.mark.asyncio
async def test_a_file_from_before_snapshots_is_read_whole_and_migrated_by_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run(db, 20)
    with connect(db) as conn:  # as schema version 2 made it
        conn.execute("DROP TABLE snapshots")
        conn.execute("PRAGMA user_version=2")
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        _, state, _, events = await storage.read_from_snapshot("s")
        assert state is None and events
    await same_as_the_log(db)
    await run(db, 20)  # a writer migrates the file (version 3) and stores a snapshot
    with connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    assert len(rows(db)) == 1


@pytest.mark.asyncio
async def test_a_snapshot_the_log_does_not_fit_is_ignored(tmp_path: Path) -> None:
    # A snapshot older than events that contradict it (hand-made here: the file was edited)
    # makes the reader replay the log, which is the truth.
    db = tmp_path / "s.db"
    await run(db, 20)
    with connect(db) as conn:
        (top,) = conn.execute("SELECT max(seq) FROM events").fetchone()
        conn.execute("UPDATE snapshots SET seq = ?", (top - 5,))  # re-apply 5 events: they do not fit
    async with aa.SQLiteStorage(db, readonly=True) as storage:
        _, state, _, events = await storage.read_from_snapshot("s")
        assert state is not None and len(events) == 5
    await same_as_the_log(db)


@pytest.mark.asyncio
async def test_a_run_refused_by_another_runners_lease_writes_no_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run(db, 10)
    with connect(db) as conn:
        conn.execute("DELETE FROM snapshots")
    async with aa.SQLiteStorage(db) as other:
        await other.acquire_lease("s", "runner B", ttl=30)
        with pytest.raises(aa.StudyLockedError):
            await run(db, 20)
        await other.release_lease("s", "runner B")
    assert rows(db) == []


@pytest.mark.asyncio
async def test_a_snapshot_that_does_not_fit_never_holds_the_events_back(tmp_path: Path) -> None:
    # A snapshot is megabytes where a report is bytes: on a file that cannot grow by much, the
    # events are committed and the snapshot is dropped (readers use the older one and the log).
    db = tmp_path / "s.db"
    await run(db, 3000)
    [(_, old_seq, _)] = rows(db)
    storage = aa.SQLiteStorage(db)
    study = await aa.load_study(name="s", storage=storage)
    pages = await storage._call(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    free = await storage._call(lambda c: c.execute("PRAGMA freelist_count").fetchone()[0])
    # Room for a few reports, not for a second copy of a 3,000-trial snapshot.
    await storage._call(lambda c: c.execute(f"PRAGMA max_page_count={pages + 4}"))
    assert free < 30
    async with study:
        for _ in range(5):
            job = await study.ask()
            await study.tell(job, 0.5)
    await storage.close()
    with connect(db) as conn:
        (top,) = conn.execute("SELECT max(seq) FROM events").fetchone()
        (snap,) = conn.execute("SELECT seq FROM snapshots").fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert snap == old_seq < top  # the events are there; the snapshot is the old one
    await same_as_the_log(db)


@pytest.mark.asyncio
async def test_a_run_that_cannot_read_the_log_writes_no_snapshot(tmp_path: Path) -> None:
    # The study was opened, then the log changed under it into something it cannot read: its
    # core is stale, and must not be stored as the state of the log's end.
    db = tmp_path / "s.db"
    await run(db, 10)
    study = await aa.load_study(name="s", storage=f"sqlite:///{db}")
    with connect(db) as conn:
        conn.execute("DELETE FROM snapshots")
        conn.execute(
            "INSERT INTO events (study_id, seq, kind, number, step, value, time, data) "
            "SELECT study_id, max(seq) + 1, 99, 0, 1, 0.5, 1.0, NULL FROM events"
        )

    async def objective(trial: aa.Trial) -> None:
        await trial.report(0.5)

    async with study:
        with pytest.raises(aa.CorruptDatabaseError):
            await study.run(objective, max_trials=20)
    assert rows(db) == []
