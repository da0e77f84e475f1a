"""A study's scheduler state and its log, changed together: the one path every write takes.

An event is first applied to the core (which validates it: an illegal event changes nothing and
is never logged), then appended to the storage. ``run()``, ``enqueue()``, ``ask()``, ``tell()``,
``fail()`` and recovery all write through :class:`Journal`, so the core and the log can never
disagree on what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aio_ashb._core import Core, Decision, Event, Job
from aio_ashb._exceptions import ReportError, StateError
from aio_ashb.storage import Storage, StudyInfo


async def read_state(
    storage: Storage, name: str, make: Callable[[StudyInfo], Core]
) -> tuple[StudyInfo, Core, list[Event]]:
    """Study ``name`` as its log says now: a core (``make`` builds a fresh one from the study's
    configuration) restored from the study's latest snapshot plus the events after it, or from
    the whole log when there is no snapshot or it does not fit (the log is the truth; see
    ``_core._snapshot``). Also returns the events it replayed."""
    info, state, _, events = await storage.read_from_snapshot(name)
    core = make(info)
    if state is not None:
        from aio_ashb._core._snapshot import load  # (here: imports stay out of cold start)

        try:
            load(core, state[1])
            core.replay(events)
            return info, core, events
        except (StateError, ReportError):  # (SnapshotError is a StateError)
            info, events = await storage.read_study(name)
            core = make(info)
    core.replay(events)
    return info, core, events


def loop_clock() -> Callable[[], float]:
    """Wall-clock seconds (epoch) that advance with the running event loop's clock.

    On a real loop this is the wall clock; on a ``VirtualTimeLoop`` events carry simulated time
    (the wall time when the clock was made, plus the virtual seconds since), so a simulated
    study is recorded on its own time axis."""
    loop = asyncio.get_running_loop()
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.time  # a real loop's clock is the machine's: read the wall clock directly
    origin = time.time() - loop.time()
    return lambda: origin + loop.time()


class Journal:
    """The core and the log of one study. ``last_seq`` is the sequence number of the last event
    this journal appended (what a durable writer waits for)."""

    __slots__ = ("core", "storage", "name", "last_seq")

    def __init__(self, core: Core, storage: Storage, name: str) -> None:
        self.core = core
        self.storage = storage
        self.name = name
        self.last_seq = 0

    def commit(self, event: Event) -> Decision | None:
        """Apply ``event`` to the core, then append it; returns the core's decision (reports)."""
        decision = self.core.apply(event)
        self.last_seq = self.storage.append(self.name, (event,))
        return decision

    def commit_all(self, events: list[Event]) -> None:
        for event in events:
            self.core.apply(event)
        self.last_seq = self.storage.append(self.name, events)

    def next_job(self, *, can_start: bool, time: float) -> Job | None:
        """The scheduler's next job (``get_job``), decided and applied by the core, then logged."""
        job = self.core.next_job(can_start=can_start, time=time)
        if job is not None:
            self.last_seq = self.storage.append(self.name, (job,))
        return job

    def drop_checkpoint(self, number: int) -> None:
        """Trial ``number`` can never resume: its checkpoint's space is freed (ordered with the
        events). Ending it with a ``TrialEnded`` event does this already."""
        if self.core.has_checkpoint(number):
            self.storage.drop_checkpoint(self.name, number)

    def unflushed(self) -> bool:
        """Whether an event this journal appended is not durable yet (cheap: checked on every
        report; a storage durable at once, as MemoryStorage is, never has one)."""
        return self.last_seq > self.storage.durable_seq

    async def flush(self) -> None:
        """Return once every event this journal appended is durable."""
        if self.unflushed():
            await self.storage.flush(self.last_seq)
