"""MemoryStorage's log: events kept as plain tuples that the garbage collector stops tracking,
so that a long study's full collections do not traverse its whole history."""

from __future__ import annotations

import gc
from typing import Any

import pytest

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
from tests.helpers import SPACE, loss

CONFIG = {"format": 1, "space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False}}}


@pytest.mark.asyncio
async def test_the_log_of_a_run_is_left_untracked_by_the_collector() -> None:
    storage = aa.MemoryStorage()
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(0), storage=storage
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step), checkpoint={"step": step})

    async with study:
        await study.enqueue({"lr": 0.01, "x": 0.5, "c": "a"})
        await study.run(objective, max_trials=60, concurrency=4)
    rows = storage._studies[study.name].events
    kinds = {row[0] if isinstance(row[0], str) else "reported" for row in rows}
    assert {"reported", "c", "p", "e", "k", "q"} <= kinds
    for _ in range(3):  # a collection untracks a tuple once what it holds is: one level each
        gc.collect()
    assert [row for row in rows if gc.is_tracked(row)] == []
    # ... and read back as the events they were: the study loads from them.
    again = await aa.load_study(name=study.name, storage=storage)
    assert [(t.state, t.params, t.rung_values) for t in again.trials] == [
        (t.state, t.params, t.rung_values) for t in study.trials
    ]


@pytest.mark.asyncio
async def test_every_kind_of_event_reads_back_equal() -> None:
    storage = aa.MemoryStorage()
    await storage.create_study("s", CONFIG)
    events: list[Event] = [
        Enqueued({"x": 0.5, "c": ("a", 1)}, 1.0),
        TrialCreated(0, 1, {"x": 0.5, "c": ("a", 1)}, ("PCG64", 2**127 + 1, 3, 0, 0), 2.0),
        Reported(0, 1, 0.25, 3.0),
        Checkpointed(0, 1, {"w": 1}, 4.0),
        TrialPromoted(0, 1, 5.0),
        TrialInterrupted(0, 6.0),
        TrialResumed(0, 7.0),
        TrialEnded(0, TrialState.FAILED, "ValueError: boom", 8.0),
    ]
    assert storage.append("s", events) == len(events)
    got = await storage.read_events("s")
    assert got == [*events[:3], Checkpointed(0, 1, None, 4.0), *events[4:]]
    assert got[1].params == {"x": 0.5, "c": ("a", 1)}  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_what_is_not_an_event_is_refused_by_name_and_its_batch_stores_nothing() -> None:
    storage = aa.MemoryStorage()
    await storage.create_study("s", CONFIG)
    storage.append("s", [Reported(0, 1, 0.5)])
    bad: list[Any] = [Reported(0, 2, 0.25), TrialEnded(0, TrialState.COMPLETE), ("not", "an event")]
    with pytest.raises(aa.StateError, match=r"not an event: \('not', 'an event'\)"):
        storage.append("s", bad)
    assert await storage.read_events("s") == [Reported(0, 1, 0.5)]
    assert storage.durable_seq == 1
    assert await storage.read_values("s", 0) == {1: 0.5}
