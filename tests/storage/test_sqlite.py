"""SQLite specifics: errors that tell the user what to do, read-only safety, resume, cancellation."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._core import Checkpointed, Reported
from aio_ashb.storage._schema import APPLICATION_ID, SCHEMA_VERSION
from tests.helpers import SPACE, connect, loss

CONFIG = {"format": 1}


async def _noop(trial: aa.Trial) -> None:
    async for step in trial.steps():
        await trial.report(loss(trial.params, step), checkpoint=lambda s=step: {"step": s})


# ---------------------------------------------------------------- errors
@pytest.mark.asyncio
async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(aa.NotADatabaseError, match=r"notes\.db is not a SQLite database"):
        await aa.SQLiteStorage(path).open()


@pytest.mark.asyncio
async def test_another_programs_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(aa.NotADatabaseError, match="database of another program"):
        await aa.SQLiteStorage(path).open()


@pytest.mark.asyncio
async def test_a_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with aa.SQLiteStorage(path):
        pass
    with connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(aa.SchemaVersionError, match=r"written by a newer aio_ashb .* upgrade aio_ashb"):
        await aa.SQLiteStorage(path).open()


@pytest.mark.asyncio
async def test_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(aa.StorageLocationError, match="does not exist; create it first"):
        await aa.SQLiteStorage(tmp_path / "no" / "such" / "dir" / "s.db").open()


@pytest.mark.asyncio
async def test_a_read_only_location() -> None:
    # /proc is a read-only file system even for root, so this is a real refusal.
    with pytest.raises(
        aa.StorageLocationError, match=r"cannot write /proc/aio_ashb_test\.db: .*; check the permissions"
    ):
        await aa.SQLiteStorage("/proc/aio_ashb_test.db").open()


@pytest.mark.asyncio
async def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(aa.StorageLocationError, match="is a directory"):
        await aa.SQLiteStorage(tmp_path).open()


@pytest.mark.asyncio
async def test_a_corrupted_database(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    study = await aa.create_study(space=SPACE, storage=aa.SQLiteStorage(path), name="s")
    await study.run(_noop, max_trials=300, concurrency=4)
    await study.close()
    await study.storage.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 40_000
    for offset in range(8192, len(data) - 4096, 4096):  # scribble over every page but the first
        data[offset + 100 : offset + 400] = b"\xff" * 300
    path.write_bytes(bytes(data))
    with pytest.raises(aa.CorruptDatabaseError, match=r"damaged\.db is damaged .* \.recover"):
        async with aa.SQLiteStorage(path) as storage:
            await storage.read_events("s")


@pytest.mark.asyncio
async def test_sqlite_errors_never_leak_raw(tmp_path: Path) -> None:
    for case in (b"garbage" * 1000,):
        path = tmp_path / "x.db"
        path.write_bytes(case)
        with pytest.raises(aa.StorageError) as info:
            await aa.SQLiteStorage(path).open()
        assert not isinstance(info.value, sqlite3.Error)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(aa.ConfigError, match="synchronous must be 'normal' or 'full', got 'off'"):
        aa.SQLiteStorage(tmp_path / "a.db", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(aa.ConfigError, match="busy_timeout must be a number >= 0, got -1"):
        aa.SQLiteStorage(tmp_path / "a.db", busy_timeout=-1)


# ---------------------------------------------------------------- the file
@pytest.mark.asyncio
async def test_schema_pragmas_and_several_studies(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    storage = aa.SQLiteStorage(path, synchronous="full")
    async with storage:
        for name in ("a", "b", "c"):
            study = await aa.create_study(space=SPACE, storage=storage, name=name)
            await study.run(_noop, max_trials=5)
        await storage.delete_study("b")
        assert [s.name for s in await storage.list_studies()] == ["a", "c"]
    with connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM events WHERE study_id = 2").fetchone()[0] == 0
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.asyncio
async def test_a_study_reopens_from_its_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reopen.db'}"
    async with await aa.create_study(
        space=SPACE, storage=url, name="s", sampler=aa.RandomSampler(3), scheduler=aa.ASHA(1, 9, 3)
    ) as study:
        await study.run(_noop, max_trials=30, concurrency=4)
        before = study.trials
        curve = await study.learning_curve(before[0].number)
    async with await aa.load_study(name="s", storage=url) as again:
        assert again.trials == before
        assert await again.learning_curve(before[0].number) == curve
        await again.run(_noop, max_trials=45, concurrency=4)
        assert len(again.trials) == 45


@pytest.mark.asyncio
async def test_nan_and_inf_survive_the_round_trip(tmp_path: Path) -> None:
    async with aa.SQLiteStorage(tmp_path / "f.db") as storage:
        await storage.create_study("s", CONFIG)
        storage.append("s", [Reported(0, 1, math.nan), Reported(0, 2, math.inf), Reported(0, 3, -math.inf)])
        await storage.flush()
        curve = await storage.read_values("s", 0)
    assert math.isnan(curve[1]) and curve[2] == math.inf and curve[3] == -math.inf


class _Tripwire:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.marker).write_text, ("unpickled!",))


@pytest.mark.asyncio
async def test_reads_never_unpickle_and_readonly_refuses_to(tmp_path: Path) -> None:
    path = tmp_path / "ck.db"
    marker = tmp_path / "marker"
    async with aa.SQLiteStorage(path) as storage:
        await storage.create_study("s", CONFIG)
        storage.append("s", [Checkpointed(0, 1, _Tripwire(str(marker)))])
        await storage.flush()
    assert not marker.exists()
    async with aa.SQLiteStorage(path, readonly=True) as ro:
        assert [s.name for s in await ro.list_studies()] == ["s"]
        events = await ro.read_events("s")
        assert events == [Checkpointed(0, 1, None, events[0].time)]
        with pytest.raises(aa.StateError, match="never unpickles"):
            await ro.load_checkpoint("s", 0)
        with pytest.raises(aa.StateError, match="read-only"):
            ro.append("s", [])
    assert not marker.exists()
    async with aa.SQLiteStorage(path) as storage:
        await storage.load_checkpoint("s", 0)  # the runner's own load does unpickle
    assert marker.read_text() == "unpickled!"


@pytest.mark.asyncio
async def test_checkpoints_are_removed_when_their_trial_can_never_resume(tmp_path: Path) -> None:
    path = tmp_path / "gc.db"
    async with await aa.create_study(
        space=SPACE, storage=f"sqlite:///{path}", name="s", scheduler=aa.ASHA(1, 9, 3)
    ) as study:
        await study.run(_noop, max_trials=27, concurrency=3)
        assert all(t.state.is_finished for t in study.trials)
    with connect(path) as db:
        assert db.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM events WHERE kind = 5").fetchone()[0] > 0


# ---------------------------------------------------------------- exact resume
def _decisions(events: list[Any]) -> list[Any]:
    """What the scheduler decided, without bookkeeping that depends on when it was killed."""
    out = []
    for e in events:
        name = type(e).__name__
        if name in ("TrialInterrupted", "TrialResumed", "Checkpointed"):
            continue
        fields = {k: getattr(e, k) for k in e.__dataclass_fields__ if k not in ("time", "rng_state")}
        out.append((name, fields))
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_killed_and_resumed_many_times_decides_as_if_never_interrupted(
    tmp_path: Path, seed: int
) -> None:
    import numpy as np

    kill_rng = np.random.default_rng(seed)
    scheduler = aa.ASHA(1, 27, 3, brackets=2)

    async def run_to_end(path: Path, kill: bool) -> list[Any]:
        kills = 0
        while True:
            study = await aa.create_study(
                space=SPACE,
                storage=aa.SQLiteStorage(path),
                name="s",
                sampler=aa.RandomSampler(seed),
                scheduler=scheduler,
                load_if_exists=True,
            )
            reports_left = int(kill_rng.integers(1, 40)) if kill else -1
            with anyio.CancelScope() as scope:

                async def objective(trial: aa.Trial) -> None:
                    nonlocal reports_left
                    async for step in trial.steps():
                        reports_left -= 1
                        if reports_left == 0:
                            scope.cancel()  # lands in the report's commit, or just before it
                        await trial.report(loss(trial.params, step), checkpoint={"step": step})

                await study.run(objective, max_trials=40, concurrency=1)
            events = await study.storage.read_events("s")
            await study.close()
            await study.storage.close()
            if not scope.cancelled_caught:
                return [kills, events]
            kills += 1

    kills, interrupted = await run_to_end(tmp_path / "killed.db", kill=True)
    _, straight = await run_to_end(tmp_path / "straight.db", kill=False)
    assert kills >= 5
    assert _decisions(interrupted) == _decisions(straight)


@pytest.mark.asyncio
async def test_cancelling_run_mid_commit_loses_nothing(tmp_path: Path) -> None:
    acknowledged: list[tuple[int, int, float]] = []
    path = tmp_path / "cancel.db"
    for attempt in range(15):
        study = await aa.create_study(
            space=SPACE,
            storage=aa.SQLiteStorage(path),
            name="s",
            load_if_exists=True,
            sampler=aa.RandomSampler(0),
        )
        with anyio.CancelScope() as scope:

            async def objective(trial: aa.Trial) -> None:
                async for step in trial.steps():
                    value = loss(trial.params, step)
                    await trial.report(value)
                    acknowledged.append((trial.number, step, value))

            async def canceller(delay: float) -> None:
                await anyio.sleep(delay)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(canceller, 0.002 * (attempt + 1))
                await study.run(objective, max_trials=400, concurrency=8)
        storage = study.storage
        assert storage.durable_seq == storage.append("s", [])  # nothing left unwritten
        await study.close()
        await storage.close()
    async with aa.SQLiteStorage(path) as storage:
        events = await storage.read_events("s")
    stored = {(e.number, e.step): e.value for e in events if isinstance(e, Reported)}
    assert acknowledged
    for number, step, value in acknowledged:
        assert stored[(number, step)] == value


@pytest.mark.asyncio
async def test_a_cancelled_writer_of_a_group_commit_costs_the_others_nothing(tmp_path: Path) -> None:
    """Durable reports share a commit: the first writer leads, the others wait for its outcome.
    A follower cancelled stops waiting alone; a leader cancelled before it writes hands over, and
    its event goes with the next commit."""
    async with aa.SQLiteStorage(tmp_path / "group.db") as storage:
        await storage.create_study("s", CONFIG)
        outcome: dict[str, str] = {}

        async def writer(name: str, number: int) -> None:
            seq = storage.append("s", [Reported(number, 1, 0.5 + number, 0.0)])
            try:
                await storage.flush(seq)
                outcome[name] = "durable" if storage.durable_seq >= seq else "returned early"
            except asyncio.CancelledError:
                outcome[name] = "cancelled"
                raise

        leader = asyncio.create_task(writer("leader", 0))
        await asyncio.sleep(0)  # it leads: waiting one loop turn for more events to join
        followers = [asyncio.create_task(writer(f"follower {n}", n)) for n in (1, 2, 3)]
        await asyncio.sleep(0)  # they wait for its commit
        leader.cancel()
        followers[0].cancel()
        await asyncio.gather(leader, *followers, return_exceptions=True)
        assert outcome == {
            "leader": "cancelled",
            "follower 1": "cancelled",
            "follower 2": "durable",
            "follower 3": "durable",
        }
        # Every event appended was committed, the cancelled writers' too.
        assert storage.durable_seq == storage.append("s", [])
        events = await storage.read_events("s")
        assert sorted(e.number for e in events if isinstance(e, Reported)) == [0, 1, 2, 3]


# ---------------------------------------------------------------- one runner per study
@pytest.mark.asyncio
async def test_a_second_runner_fails_fast_naming_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    first = await aa.create_study(space=SPACE, storage=url, name="s")
    second = await aa.load_study(name="s", storage=url)
    started = anyio.Event()

    async def slow(trial: aa.Trial) -> None:
        started.set()
        async for step in trial.steps():
            await anyio.sleep(0.01)
            await trial.report(loss(trial.params, step))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: first.run(slow, max_trials=50, concurrency=2))
        await started.wait()
        with anyio.fail_after(2):
            with pytest.raises(
                aa.StudyLockedError, match=r"being run by pid \d+ on .* \(runner [0-9a-f]{12}\)"
            ):
                await second.run(slow, max_trials=50)
        first.stop()
    await second.run(_noop, max_trials=55)  # the lease was released when the first run ended
    assert len(second.trials) == 55
    await first.close()
    await second.close()


# ---------------------------------------------------------------- regressions from review
class _Unpicklable:
    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("this object refuses to be pickled")


@pytest.mark.asyncio
async def test_a_checkpoint_that_cannot_be_pickled_fails_its_trial_only(tmp_path: Path) -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            bad = trial.number == 1
            await trial.report(loss(trial.params, step), checkpoint=_Unpicklable() if bad else {"s": step})

    url = f"sqlite:///{tmp_path / 'p.db'}"
    async with await aa.create_study(space=SPACE, storage=url, name="s", scheduler=aa.ASHA(1, 9, 3)) as study:
        await study.run(objective, max_trials=12, concurrency=3)
        failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
        assert [t.number for t in failed] == [1]
        assert failed[0].error is not None and "cannot be pickled" in failed[0].error
        assert all(t.state.is_finished for t in study.trials)


def _explode() -> None:
    raise RuntimeError("this checkpoint's class is gone")


class _Fragile:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


@pytest.mark.asyncio
async def test_a_checkpoint_that_cannot_be_unpickled_stops_the_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    async with await aa.create_study(space=SPACE, storage=url, name="s", scheduler=aa.ASHA(1, 9, 3)) as study:
        paused = 0
        with anyio.CancelScope() as scope:

            async def first(trial: aa.Trial) -> None:
                nonlocal paused
                if await trial.report(1.0 + trial.number, checkpoint=_Fragile()) is aa.Decision.PAUSE:
                    paused += 1
                    if paused == 6:
                        scope.cancel()  # six trials paused, with checkpoints, no coroutine left
                await anyio.sleep_forever()

            await study.run(first, max_trials=6, concurrency=6)
        # The next run promotes a paused trial: calling it again means unpickling its checkpoint.
        with pytest.raises(aa.StorageError, match="could not be unpickled"):
            await study.run(_noop, max_trials=6)


@pytest.mark.asyncio
async def test_taking_the_lease_never_reuses_sequence_numbers_of_queued_events(tmp_path: Path) -> None:
    async with aa.SQLiteStorage(tmp_path / "q.db") as storage:
        await storage.create_study("s", CONFIG)
        storage.append("s", [Reported(0, 1, 0.1), Reported(0, 2, 0.2)])  # queued, not committed
        await storage.acquire_lease("s", "me", ttl=30)
        storage.append("s", [Reported(0, 3, 0.3)])
        await storage.flush()
        assert await storage.read_values("s", 0) == {1: 0.1, 2: 0.2, 3: 0.3}


@pytest.mark.asyncio
async def test_ask_after_run_takes_the_lease_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    a = await aa.create_study(space=SPACE, storage=url, name="s")
    b = await aa.load_study(name="s", storage=url)
    try:
        await a.tell(await a.ask(), 0.5)
        await a.run(_noop, max_trials=3)  # ends by releasing the lease
        await b.tell(await b.ask(), 0.4)  # b holds it now
        with pytest.raises(aa.StudyLockedError, match="being run by"):
            await a.ask()
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_concurrent_opens_share_one_connection(tmp_path: Path) -> None:
    storage = aa.SQLiteStorage(tmp_path / "o.db")
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(storage.open)
    await storage.create_study("s", CONFIG)
    await storage.close()  # the fixture checks that no connection thread is left


@pytest.mark.asyncio
async def test_checkpoints_of_trials_stopped_at_the_end_are_dropped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(0), storage=url
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step), checkpoint=lambda: b"x" * 1000)

    async with study:
        await study.run(objective, max_trials=12, concurrency=3)
        assert study.counts[aa.TrialState.STOPPED] > 0
        for t in study.trials:
            assert await study.storage.load_checkpoint(study.name, t.number) is None, t


@pytest.mark.asyncio
async def test_two_creators_of_one_study_on_a_new_file_both_get_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    studies: list[aa.Study] = []

    async def create() -> None:
        studies.append(await aa.create_study(space=SPACE, storage=url, name="s", load_if_exists=True))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(create)
    assert [s.name for s in studies] == ["s"] * 4
    for s in studies:
        await s.close()
