"""The storage contract (see ``aio_ashb.storage.Storage``), run against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import aio_ashb as aa
from aio_ashb._core import (
    Checkpointed,
    Enqueued,
    Event,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
)

BACKENDS: dict[str, Callable[[Path], aa.Storage]] = {
    "memory": lambda _tmp: aa.MemoryStorage(),
    "sqlite": lambda tmp: aa.SQLiteStorage(tmp / "conformance.db"),
}
CONFIG = {"format": 1, "space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False}}}


@pytest_asyncio.fixture(params=sorted(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[aa.Storage]:
    store = BACKENDS[request.param](tmp_path)
    async with store:
        yield store


@pytest.mark.asyncio
async def test_studies_create_get_list_delete(storage: aa.Storage) -> None:
    info = await storage.create_study("a", CONFIG)
    assert info.name == "a" and info.config == CONFIG and info.created > 0
    await storage.create_study("b", CONFIG)
    assert (await storage.get_study("a")).config == CONFIG
    assert sorted(s.name for s in await storage.list_studies()) == ["a", "b"]
    with pytest.raises(aa.DuplicateStudyError, match="'a' already exists"):
        await storage.create_study("a", CONFIG)
    await storage.delete_study("a")
    with pytest.raises(aa.StudyNotFoundError, match="'a'"):
        await storage.get_study("a")
    with pytest.raises(aa.StudyNotFoundError):
        await storage.delete_study("a")
    with pytest.raises(aa.StudyNotFoundError):
        await storage.read_events("a")
    assert [s.name for s in await storage.list_studies()] == ["b"]


def _events() -> list[Event]:
    return [
        Enqueued({"x": 0.5}, 1.0),
        TrialCreated(0, 0, {"x": 0.5}, {"bit_generator": "PCG64", "state": {"state": 1, "inc": 3}}, 2.0),
        Reported(0, 1, 0.25, 3.0),
        Reported(0, 2, float("nan"), 4.0),
        Checkpointed(0, 2, {"weights": [1, 2, 3]}, 5.0),
        Reported(0, 3, float("inf"), 6.0),
        Checkpointed(0, 3, b"\x00bytes", 7.0),
        # The packed generator state of today's logs (the dict above is an older log's).
        TrialCreated(1, 0, {"x": 0.25}, ("PCG64", 2**127 + 1, 2**100 + 3, 1, 7), 8.0),
        TrialPromoted(1, 1, 9.0),
        TrialInterrupted(1, 10.0),
        TrialResumed(1, 11.0),
        TrialEnded(1, TrialState.COMPLETE, None, 12.0),
        TrialEnded(2, TrialState.FAILED, "Traceback (most recent call last):\nValueError: boom", 13.0),
    ]


@pytest.mark.asyncio
async def test_append_is_ordered_durable_and_replayable(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    await storage.create_study("other", CONFIG)
    evs = _events()
    before = storage.durable_seq
    seq = storage.append("s", evs[:3])
    assert seq == before + 3
    storage.append("other", [Reported(0, 1, 9.0)])
    seq = storage.append("s", evs[3:])
    await storage.flush(seq)
    assert storage.durable_seq >= seq
    await storage.flush()
    got = await storage.read_events("s")
    assert len(got) == len(evs)
    for a, b in zip(got, evs, strict=True):
        if isinstance(b, Checkpointed):
            assert a == Checkpointed(b.number, b.step, None, b.time)
        elif isinstance(b, Reported) and b.value != b.value:  # NaN
            assert isinstance(a, Reported) and a.value != a.value and a.step == b.step
        else:
            assert a == b
    assert await storage.load_checkpoint("s", 0) == (3, b"\x00bytes")
    assert await storage.load_checkpoint("s", 1) is None
    curve = await storage.read_values("s", 0)
    assert curve[1] == 0.25 and curve[3] == float("inf") and curve[2] != curve[2]
    assert await storage.read_values("s", 7) == {}
    assert len(await storage.read_events("other")) == 1


@pytest.mark.asyncio
async def test_events_read_back_as_appended_whatever_happens_to_their_dicts_after(
    storage: aa.Storage,
) -> None:
    """Two creations of one number (no core writes that, a caller of the storage may) each keep
    their params; a dict changed after the append, or after a read, changes nothing stored."""
    await storage.create_study("s", CONFIG)
    first, second = {"x": 0.1}, {"x": 0.2}
    evs: list[Event] = [TrialCreated(0, 0, first, None, 1.0), TrialCreated(0, 0, second, None, 2.0)]
    await storage.flush(storage.append("s", evs))
    first["x"] = 0.9
    got = await storage.read_events("s")
    assert [e.params for e in got] == [{"x": 0.1}, {"x": 0.2}]  # type: ignore[union-attr]
    got[0].params["x"] = 0.5  # type: ignore[union-attr]
    assert [e.params for e in await storage.read_events("s")] == [{"x": 0.1}, {"x": 0.2}]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_batch_with_something_that_is_not_an_event_stores_nothing(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    await storage.flush(storage.append("s", [Reported(0, 1, 0.5)]))
    seq = storage.durable_seq
    bad: list[Any] = [Reported(0, 2, 0.25), ("not", "an event")]
    with pytest.raises(aa.StateError, match="not an event"):
        storage.append("s", bad)
    await storage.flush()
    assert await storage.read_events("s") == [Reported(0, 1, 0.5)]
    assert storage.durable_seq == seq


@pytest.mark.asyncio
async def test_a_finished_trial_drops_its_checkpoint(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    storage.append("s", _events())
    storage.append("s", [TrialEnded(0, TrialState.FAILED, "boom")])
    await storage.flush()
    assert await storage.load_checkpoint("s", 0) is None  # it can never resume
    assert (await storage.read_events("s"))[-1] == TrialEnded(0, TrialState.FAILED, "boom")


@pytest.mark.asyncio
async def test_a_closed_storage_refuses_work(tmp_path: Path) -> None:
    for make in BACKENDS.values():
        store = make(tmp_path)
        await store.open()
        await store.close()
        with pytest.raises(aa.StateError, match="closed"):
            await store.list_studies()
        with pytest.raises(aa.StateError, match="closed"):
            store.append("s", [])


@pytest.mark.asyncio
async def test_drop_checkpoint_is_ordered_with_appends(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    storage.append("s", _events())
    storage.drop_checkpoint("s", 0)
    storage.append("s", [Checkpointed(0, 9, "again")])
    await storage.flush()
    assert await storage.load_checkpoint("s", 0) == (9, "again")
    storage.drop_checkpoint("s", 0)
    await storage.flush()
    assert await storage.load_checkpoint("s", 0) is None


@pytest.mark.asyncio
async def test_leases_admit_one_holder_until_they_expire(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    await storage.acquire_lease("s", "runner A", ttl=30)
    await storage.acquire_lease("s", "runner A", ttl=30)  # re-entrant for its holder
    await storage.renew_lease("s", "runner A", ttl=30)
    with pytest.raises(aa.StudyLockedError, match="being run by runner A"):
        await storage.acquire_lease("s", "runner B", ttl=30)
    await storage.release_lease("s", "runner B")  # not the holder: nothing happens
    with pytest.raises(aa.StudyLockedError):
        await storage.acquire_lease("s", "runner B", ttl=30)
    await storage.release_lease("s", "runner A")
    await storage.acquire_lease("s", "runner B", ttl=0.001)
    import anyio

    await anyio.sleep(0.01)  # B's lease expired: A takes over, and B has lost it
    await storage.acquire_lease("s", "runner A", ttl=30)
    with pytest.raises(aa.StudyLockedError, match="runner A"):
        await storage.renew_lease("s", "runner B", ttl=30)


@pytest.mark.asyncio
async def test_renewal_is_compare_and_swap_and_never_recreates_a_lease(storage: aa.Storage) -> None:
    import anyio

    await storage.create_study("s", CONFIG)
    await storage.acquire_lease("s", "runner A", ttl=0.001)
    await anyio.sleep(0.01)  # A stalled past its lease: B takes the study over, then finishes
    await storage.acquire_lease("s", "runner B", ttl=30)
    await storage.release_lease("s", "runner B")
    with pytest.raises(aa.StudyLockedError, match="this runner's lease was"):
        await storage.renew_lease("s", "runner A", ttl=30)  # A wakes up: it must not come back
    await storage.acquire_lease("s", "runner C", ttl=30)  # nobody holds it: A wrote nothing
    with pytest.raises(aa.StudyLockedError, match="taken over by runner C"):
        await storage.renew_lease("s", "runner A", ttl=30)


@pytest.mark.asyncio
async def test_a_study_is_not_deleted_while_a_runner_holds_it(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    storage.append("s", _events()[:2])
    await storage.flush()
    await storage.acquire_lease("s", "runner A", ttl=30)
    with pytest.raises(aa.StudyLockedError, match="being run by runner A"):
        await storage.delete_study("s")
    assert len(await storage.read_events("s")) == 2  # nothing was deleted
    await storage.release_lease("s", "runner A")
    await storage.delete_study("s")
    assert await storage.list_studies() == []


@pytest.mark.asyncio
async def test_read_study_is_the_configuration_and_the_log(storage: aa.Storage) -> None:
    await storage.create_study("s", CONFIG)
    storage.append("s", _events()[:3])
    await storage.flush()
    info, events = await storage.read_study("s")
    assert info.name == "s" and info.config == CONFIG
    assert events == await storage.read_events("s")
    with pytest.raises(aa.StudyNotFoundError):
        await storage.read_study("nope")
