"""The study file under unhappy paths, in this process: odd paths, a removed directory, plain
asyncio cancellation, a full disk, a stopped lock holder, missing, empty and damaged files, and
space given back. (tests/storage/test_crash.py does the same with real processes and signals.)"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import aio_ashb as aa
from aio_ashb.storage._sqlite import SQLiteStorage
from tests.helpers import SPACE, connect, loss


async def _reporting(trial: aa.Trial) -> None:
    async for step in trial.steps():
        await trial.report(loss(trial.params, step), checkpoint={"step": step})


def _names(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir())


def _integrity(path: Path) -> str:
    with connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


# ---------------------------------------------------------------- paths
@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["run#1.db", "what?.db", "100%41.db", "a b&c=d.db", "naïve.db"])
async def test_a_path_is_taken_literally(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    storage = SQLiteStorage(path)
    async with await aa.create_study(space=SPACE, storage=storage, name="s") as study:
        await study.run(_reporting, max_trials=3)
    await storage.close()
    assert _names(tmp_path) == [name]
    async with SQLiteStorage(path, readonly=True) as ro:
        assert [s.name for s in await ro.list_studies()] == ["s"]
        # Read-only for SQLite itself, not only for aio_ashb: mode=ro survived the '#' or '?'.
        with pytest.raises(aa.StorageLocationError, match="cannot be written"):
            await ro._call(lambda db: db.execute("CREATE TABLE t (x)"))


@pytest.mark.asyncio
async def test_a_sqlite_url_with_odd_characters(tmp_path: Path) -> None:
    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{tmp_path}/run#1.db", name="s")
    await study.close()
    assert (tmp_path / "run#1.db").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a removed directory
@pytest.mark.asyncio
async def test_removing_the_directory_mid_run_fails_the_run_and_acknowledges_nothing_after(
    tmp_path: Path,
) -> None:
    where = tmp_path / "runs"
    where.mkdir()
    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{where}/s.db", name="s")
    reports = 0
    acknowledged_after = 0

    async def objective(trial: aa.Trial) -> None:
        nonlocal reports, acknowledged_after
        async for step in trial.steps():
            after = reports > 200  # this report starts once the file is gone
            await trial.report(loss(trial.params, step))
            acknowledged_after += after
            reports += 1
            if reports == 200:
                shutil.rmtree(where)

    with pytest.raises(aa.StorageError, match=r"s\.db was removed .* The run stops"):
        await study.run(objective, max_trials=10_000, concurrency=4)
    assert acknowledged_after == 0
    assert study.counts[aa.TrialState.RUNNING] == 0  # interrupted, in memory at least
    await study.close()  # quietly: run() said what happened
    with pytest.raises(aa.StateError, match="closed"):
        study.storage.append("s", [])


# ---------------------------------------------------------------- plain asyncio cancellation
@pytest.mark.asyncio
async def test_plain_asyncio_cancellation_never_breaks_the_storage(tmp_path: Path) -> None:
    # Task.cancel(), asyncio.wait_for and Ctrl-C under asyncio.run are not stopped by anyio's
    # shields: they must still never split a transaction, leave one open or leave a lease.
    path = tmp_path / "cancel.db"
    rng = np.random.default_rng(0)
    storage = SQLiteStorage(path)
    study = await aa.create_study(space=SPACE, storage=storage, name="s", scheduler=aa.ASHA(1, 27, 3))
    outcomes: set[str] = set()
    for i in range(300):
        delay = float(rng.uniform(0, 0.01))
        run = study.run(_reporting, concurrency=4)
        try:
            if i % 2:
                task = asyncio.ensure_future(run)
                await asyncio.sleep(delay)
                task.cancel()
                await task
            else:
                await asyncio.wait_for(run, timeout=delay)
        except (asyncio.CancelledError, TimeoutError) as exc:
            outcomes.add(type(exc).__name__)
    assert outcomes == {"CancelledError", "TimeoutError"}
    assert study.counts[aa.TrialState.RUNNING] == 0
    n = len(study.trials)
    await study.run(_reporting, max_trials=n + 10, concurrency=4)  # the storage works
    await study.close()
    await storage.close()
    assert _integrity(path) == "ok"
    with connect(path) as db:
        assert db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    again = await aa.load_study(name="s", storage=f"sqlite:///{path}")
    assert len(again.trials) == n + 10 and again.counts[aa.TrialState.RUNNING] == 0
    await again.close()


# ---------------------------------------------------------------- a full disk
def _check_full_disk_error(exc: BaseException) -> None:
    text = str(exc)
    assert "is full" in text and "free some space" in text, text
    assert "rollback" not in text, text


@pytest.mark.asyncio
async def test_a_database_that_cannot_grow_says_so_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    storage = SQLiteStorage(path)
    study = await aa.create_study(space=SPACE, storage=storage, name="s")
    await study.run(_reporting, max_trials=5)
    pages = await storage._call(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    await storage._call(lambda db: db.execute(f"PRAGMA max_page_count={pages + 2}"))
    with pytest.raises(aa.StorageError) as info:
        await study.run(_reporting, max_trials=2000, concurrency=4)
    _check_full_disk_error(info.value)
    await storage._call(lambda db: db.execute("PRAGMA max_page_count=1073741823"))
    await study.run(_reporting, max_trials=300, concurrency=4)  # space again: it goes on
    assert len(study.trials) == 300 and study.counts[aa.TrialState.RUNNING] == 0
    await study.close()
    await storage.close()
    assert _integrity(path) == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB file system (tmpfs): needs root; skipped where mounting is not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the page-limit test covers it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.asyncio
async def test_a_full_disk_is_reported_as_such_and_the_study_goes_on_once_there_is_space(
    small_disk: Path,
) -> None:
    path = small_disk / "study.db"
    acked: dict[tuple[int, int], float] = {}

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            value = loss(trial.params, step)
            await trial.report(value, checkpoint=lambda: os.urandom(20_000))
            acked[(trial.number, step)] = value

    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{path}", name="s")
    disk = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (disk.f_bavail * disk.f_frsize - 400_000))
    with pytest.raises(aa.StorageError) as info:
        await study.run(objective, max_trials=5000, concurrency=4)
    _check_full_disk_error(info.value)
    (small_disk / "filler").unlink()
    n = len(study.trials)
    await study.run(objective, max_trials=n + 3, concurrency=4)  # resumes what was interrupted
    await study.close()
    assert _integrity(path) == "ok"
    with connect(path) as db:
        rows = db.execute("SELECT number, step, value FROM events WHERE kind = 1").fetchall()
    stored = {(num, st): v for num, st, v in rows}
    assert all(stored[key] == value for key, value in acked.items())


# ---------------------------------------------------------------- a stopped lock holder
def _hold_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process that takes the file's write lock and keeps it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.asyncio
async def test_a_stopped_process_holding_the_write_lock_is_named(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{path}", name="s")
    await study.close()
    holder = _hold_write_lock(path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        holder.send_signal(signal.SIGSTOP)
        storage = SQLiteStorage(path, busy_timeout=0.3)
        with pytest.raises(
            aa.StorageError,
            match=rf"stayed locked .* pid {holder.pid} on this machine holds its write lock and is "
            rf"stopped .* `kill -CONT {holder.pid}`",
        ):
            await aa.create_study(space=SPACE, storage=storage, name="other")
        await storage.close()
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.communicate()


# ---------------------------------------------------------------- missing, empty, damaged
@pytest.mark.asyncio
async def test_load_study_never_creates_a_file(tmp_path: Path) -> None:
    with pytest.raises(aa.StudyNotFoundError, match=r"no study named 'missing': .*fresh\.db does not exist"):
        await aa.load_study(name="missing", storage=f"sqlite:///{tmp_path}/fresh.db")
    with pytest.raises(aa.StudyNotFoundError):
        await aa.delete_study(name="missing", storage=f"sqlite:///{tmp_path}/fresh.db")
    assert _names(tmp_path) == []


@pytest.mark.asyncio
async def test_an_empty_file_holds_no_studies_and_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with SQLiteStorage(path, readonly=True) as ro:
        assert await ro.list_studies() == []
        with pytest.raises(aa.StudyNotFoundError, match="the file is empty"):
            await ro.get_study("s")
    with pytest.raises(aa.StudyNotFoundError, match="no study named 's'"):
        await aa.load_study(name="s", storage=f"sqlite:///{path}")
    assert path.stat().st_size == 0 and _names(tmp_path) == ["empty.db"]
    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{path}", name="s")  # created here
    await study.close()
    assert path.stat().st_size > 0


async def _a_study_file(path: Path) -> None:
    study = await aa.create_study(space=SPACE, storage=SQLiteStorage(path), name="s")
    await study.run(_reporting, max_trials=300, concurrency=4)
    await study.close()
    await study.storage.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.asyncio
async def test_a_damaged_file_is_never_written_into(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    await _a_study_file(path)
    with connect(path) as db:  # a page in the middle that holds the events table
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    data = bytearray(path.read_bytes())
    offset = (root - 1) * 4096  # 32 bytes over its header
    data[offset : offset + 32] = bytes(range(200, 232))
    path.write_bytes(bytes(data))
    before = _digest(path)
    with pytest.raises(aa.CorruptDatabaseError, match=r"damaged\.db is damaged \(SQLite's quick_check"):
        await aa.create_study(space=SPACE, storage=f"sqlite:///{path}", name="new")
    with pytest.raises(aa.CorruptDatabaseError, match="will not write into it"):
        await aa.load_study(name="s", storage=f"sqlite:///{path}")
    assert _digest(path) == before
    wal = tmp_path / "damaged.db-wal"  # SQLite's own, from reading a WAL file: nothing in it
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.asyncio
async def test_damaged_text_gives_a_one_line_printable_error(tmp_path: Path) -> None:
    path = tmp_path / "garbled.db"
    await _a_study_file(path)
    with connect(path) as db:  # invalid UTF-8 where JSON was: content, not structure
        db.execute(
            "UPDATE events SET data = CAST(X'7B22FF00FE1B5B3331' AS TEXT) WHERE kind = 2 AND number = 3"
        )
        # Without its snapshot, which covers that event: opening reads the log whole.
        db.execute("DELETE FROM snapshots")
    async with SQLiteStorage(path, readonly=True) as ro:
        with pytest.raises(aa.CorruptDatabaseError) as info:
            await aa.load_study(name="s", storage=ro)
    text = str(info.value)
    assert "garbled.db is damaged" in text and text.isprintable(), text


@pytest.mark.asyncio
async def test_a_malformed_configuration_row_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    await _a_study_file(path)
    for bad in ('{"space": {}}', "[1, 2]", '{"space": {"x": {"type": "float", "low": 0, "high": 1e999}}}'):
        with connect(path) as db:
            db.execute("UPDATE studies SET config = ?", (bad,))
        async with SQLiteStorage(path, readonly=True) as ro:
            with pytest.raises(aa.CorruptDatabaseError, match=r"study 's' .* malformed"):
                await aa.load_study(name="s", storage=ro)


# ---------------------------------------------------------------- space
@pytest.mark.asyncio
async def test_space_of_dropped_checkpoints_is_given_back(tmp_path: Path) -> None:
    path = tmp_path / "space.db"

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step), checkpoint=lambda: os.urandom(100_000))

    async with await aa.create_study(
        space=SPACE, storage=f"sqlite:///{path}", name="s", scheduler=aa.ASHA(1, 27, 3)
    ) as study:
        await study.run(objective, max_trials=200, concurrency=8)
    # 200 trials paused with a 100 KB checkpoint each at some point (20 MB and more); at the end
    # every one was dropped (trials stopped or completed) and the file gave the space back.
    with connect(path) as db:
        assert db.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = path.stat().st_size
    assert size < 2_000_000, f"{size:,} bytes, {free} free pages"
    assert math.isfinite(size)
