"""In-process storage: the default, durable for as long as the process lives."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from aio_ashb._exceptions import DuplicateStudyError, StateError, StudyLockedError, StudyNotFoundError
from aio_ashb.storage._base import Storage, StudyInfo, lease_message

# The log keeps events as plain tuples of numbers and strings, not as event objects: the
# garbage collector stops tracking such a tuple after it has seen it once, while every event
# object stays tracked and is traversed by each full collection. A 20,000-trial study left 2.6
# tracked objects per trial in the log, and a full collection took 58 ms; a study's full
# collections then grow with its length. A report is (number, step, value, time); any other
# event starts with its kind's code (a str). A trial's params (a copy) are kept apart, in a list
# its row indexes, since a tuple that holds a dict is never untracked even when the dict is; an
# enqueued configuration's go in as a tuple of items.
_Row = tuple[Any, ...]


# Each kind's row but a creation's (it also needs its params' index). Looked up by exact type:
# events are final classes.
_ROWS: dict[type, Callable[[Any], _Row]] = {
    TrialPromoted: lambda ev: ("p", ev.number, ev.rung, ev.time),
    TrialEnded: lambda ev: ("e", ev.number, ev.state._value_, ev.error, ev.time),  # (.value: 10x)
    Checkpointed: lambda ev: ("k", ev.number, ev.step, ev.time),  # (the payload is kept apart)
    TrialResumed: lambda ev: ("r", ev.number, ev.time),
    TrialInterrupted: lambda ev: ("i", ev.number, ev.time),
    Enqueued: lambda ev: ("q", tuple(ev.params.items()), ev.time),
}


def _event(row: _Row, log: _StudyLog) -> Event:
    code = row[0]
    if type(code) is int:
        return Reported(*row)
    if code == "c":
        return TrialCreated(row[1], row[2], dict(log.params[row[5]]), row[3], row[4])
    if code == "p":
        return TrialPromoted(*row[1:])
    if code == "e":
        return TrialEnded(row[1], TrialState(row[2]), row[3], row[4])
    if code == "k":
        return Checkpointed(row[1], row[2], None, row[3])
    if code == "r":
        return TrialResumed(*row[1:])
    if code == "i":
        return TrialInterrupted(*row[1:])
    return Enqueued(dict(row[1]), row[2])


@dataclass(slots=True)
class _StudyLog:
    info: StudyInfo
    events: list[_Row] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)  # of creations, by row
    values: dict[int, dict[int, float]] = field(default_factory=dict)
    checkpoints: dict[int, tuple[int, Any]] = field(default_factory=dict)
    lease: tuple[str, float] | None = None  # (holder, expires)


class MemoryStorage(Storage):
    """Keeps every study in this process's memory; everything appended is durable at once.

    Lost when the process exits: use SQLite for studies that must survive a crash.
    """

    def __init__(self) -> None:
        self._studies: dict[str, _StudyLog] = {}
        self._seq = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStorage(studies={len(self._studies)})"

    async def open(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StateError("this MemoryStorage is closed")

    def _log(self, name: str) -> _StudyLog:
        self._check_open()
        try:
            return self._studies[name]
        except KeyError:
            raise StudyNotFoundError(f"no study named {name!r} in this MemoryStorage") from None

    async def create_study(self, name: str, config: Mapping[str, Any]) -> StudyInfo:
        self._check_open()
        if name in self._studies:
            raise DuplicateStudyError(
                f"a study named {name!r} already exists; pass load_if_exists=True to continue it"
            )
        info = StudyInfo(name=name, config=dict(config), created=time.time())
        self._studies[name] = _StudyLog(info)
        return info

    async def get_study(self, name: str) -> StudyInfo:
        return self._log(name).info

    async def list_studies(self) -> list[StudyInfo]:
        self._check_open()
        return [log.info for log in self._studies.values()]

    async def delete_study(self, name: str) -> None:
        log = self._log(name)
        now = time.time()
        if log.lease is not None and log.lease[1] > now:
            raise StudyLockedError(lease_message(name, log.lease[0], log.lease[1], now))
        del self._studies[name]

    def append(self, name: str, events: Sequence[Event]) -> int:
        log = self._log(name)
        if len(events) == 1:  # most appends: one event, without the batch's two passes
            ev = events[0]
            if type(ev) is Reported:
                log.events.append((ev.number, ev.step, ev.value, ev.time))
                curve = log.values.get(ev.number)
                if curve is None:
                    curve = log.values[ev.number] = {}
                curve[ev.step] = ev.value
            elif type(ev) is TrialCreated:
                log.events.append(("c", ev.number, ev.bracket, ev.rng_state, ev.time, len(log.params)))
                log.params.append(dict(ev.params))
            else:
                row = _ROWS.get(type(ev))
                if row is None:
                    raise StateError(f"not an event: {ev!r}")
                log.events.append(row(ev))
                if type(ev) is Checkpointed:
                    log.checkpoints[ev.number] = (ev.step, ev.payload)
                elif type(ev) is TrialEnded:
                    log.checkpoints.pop(ev.number, None)
            self._seq += 1
            return self._seq
        # The rows first, whole: a batch with something that is not an event stores nothing.
        rows: list[_Row] = []
        add = rows.append
        created: list[dict[str, Any]] = []
        for ev in events:
            if type(ev) is Reported:
                add((ev.number, ev.step, ev.value, ev.time))
            elif type(ev) is TrialCreated:
                add(("c", ev.number, ev.bracket, ev.rng_state, ev.time, len(log.params) + len(created)))
                created.append(dict(ev.params))  # a copy: the caller's dict stays the caller's
            else:
                row = _ROWS.get(type(ev))
                if row is None:
                    raise StateError(f"not an event: {ev!r}")
                add(row(ev))
        log.params += created
        log.events += rows
        self._seq += len(rows)
        # Then what the log indexes: the curves, and each trial's latest checkpoint.
        values, checkpoints = log.values, log.checkpoints
        for ev in events:
            if type(ev) is Reported:
                curve = values.get(ev.number)
                if curve is None:
                    curve = values[ev.number] = {}
                curve[ev.step] = ev.value
            elif type(ev) is Checkpointed:
                checkpoints[ev.number] = (ev.step, ev.payload)
            elif type(ev) is TrialEnded:
                checkpoints.pop(ev.number, None)
        return self._seq

    @property
    def durable_seq(self) -> int:
        return self._seq

    async def flush(self, seq: int | None = None) -> None:
        self._check_open()

    def drop_checkpoint(self, name: str, number: int) -> int:
        self._log(name).checkpoints.pop(number, None)
        return self._seq

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> None:
        log = self._log(name)
        now = time.time()
        if log.lease is not None and log.lease[0] != holder and log.lease[1] > now:
            raise StudyLockedError(lease_message(name, log.lease[0], log.lease[1], now))
        log.lease = (holder, now + ttl)

    async def renew_lease(self, name: str, holder: str, ttl: float) -> None:
        log = self._log(name)
        if log.lease is None or log.lease[0] != holder:  # compare and swap: never re-created
            other = "ended by another runner" if log.lease is None else f"taken over by {log.lease[0]}"
            raise StudyLockedError(f"study {name!r}: this runner's lease was {other}; it stops")
        log.lease = (holder, time.time() + ttl)

    async def release_lease(self, name: str, holder: str) -> None:
        log = self._log(name)
        if log.lease is not None and log.lease[0] == holder:
            log.lease = None

    async def read_events(self, name: str) -> list[Event]:
        log = self._log(name)
        return [_event(row, log) for row in log.events]

    async def read_values(self, name: str, number: int) -> dict[int, float]:
        return dict(self._log(name).values.get(number, {}))

    async def load_checkpoint(self, name: str, number: int) -> tuple[int, Any] | None:
        return self._log(name).checkpoints.get(number)
