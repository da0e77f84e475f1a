"""A study's scheduler state and its log, changed together: the one path every write takes.

An event is first applied to the core (which validates it: an illegal event changes nothing and
is never logged), then appended to the storage. ``run()``, ``enqueue()``, ``ask()``, ``tell()``,
``fail()`` and recovery all write through :class:`Journal`, so the core and the log can never
disagree on what happened.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
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


# A snapshot during a run (at a lease renewal, every 10 s by default) once this many events were
# appended since the last, and no more often than every _SNAPSHOT_SHARE times the last one's
# cost: dumping 100,000 trials takes about 0.2 s of the loop, so at most ~2 % of its time.
_SNAPSHOT_EVENTS = 1000
_SNAPSHOT_SHARE = 50


class Journal:
    """The core and the log of one study. ``last_seq`` is the sequence number of the last event
    this journal appended (what a durable writer waits for)."""

    __slots__ = ("core", "storage", "name", "last_seq", "_snapshot_seq", "_snapshot_at", "_snapshot_cost")

    def __init__(self, core: Core, storage: Storage, name: str) -> None:
        self.core = core
        self.storage = storage
        self.name = name
        self.last_seq = 0
        # The last snapshot of the core stored (see snapshot): last_seq then (-1: none yet, so
        # the first one is stored even if nothing was appended: a file written before snapshots
        # existed gets one), when, and how long dumping it took.
        self._snapshot_seq = -1
        self._snapshot_at = -math.inf
        self._snapshot_cost = 0.0

    def commit(self, event: Event) -> Decision | None:
        """Apply ``event`` to the core, then append it; returns the core's decision (reports)."""
        decision = self.core.apply(event)
        self.last_seq = self.storage.append(self.name, (event,))
        return decision

    def commit_all(self, events: list[Event]) -> None:
        for event in events:
            self.core.apply(event)
        self.last_seq = self.storage.append(self.name, events)

    def stop_paused(self, numbers: list[int], time: float) -> None:
        """End the paused trials ``numbers`` as STOPPED (one TrialEnded each, applied by the
        core in one call: ``Core.stop_paused``), then append their events."""
        events = self.core.stop_paused(numbers, time)
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

    def snapshot_due(self) -> bool:
        """During a run: whether enough was appended since the last snapshot, and long enough
        ago for its cost (see _SNAPSHOT_EVENTS)."""
        return self.last_seq - self._snapshot_seq >= _SNAPSHOT_EVENTS and (
            time.perf_counter() - self._snapshot_at >= _SNAPSHOT_SHARE * self._snapshot_cost
        )

    def snapshot(self) -> None:
        """Queue a snapshot of the core, written with the next flush after the events it
        reflects: readers of the file (CLI, dashboard) start there instead of at event 1
        (``_core._snapshot``). Call it only with the core up to date under the study's lease. It
        never fails the caller: without it, readers replay the log."""
        if not self.storage.keeps_snapshots or self.last_seq == self._snapshot_seq:
            return
        from aio_ashb._core._snapshot import dump  # (here: imports stay out of cold start)

        start = time.perf_counter()
        try:
            blob = dump(self.core)
        except Exception as exc:  # a bug here must not cost a run its results
            warnings.warn(
                f"no snapshot of study {self.name!r} was written ({exc!r}); readers replay its log",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self.storage.save_snapshot(self.name, blob)
        self._snapshot_seq = self.last_seq
        self._snapshot_at = time.perf_counter()
        self._snapshot_cost = self._snapshot_at - start

    def unflushed(self) -> bool:
        """Whether an event this journal appended is not durable yet (cheap: checked on every
        report; a storage durable at once, as MemoryStorage is, never has one)."""
        return self.last_seq > self.storage.durable_seq

    async def flush(self) -> None:
        """Return once every event this journal appended is durable."""
        if self.unflushed():
            await self.storage.flush(self.last_seq)
