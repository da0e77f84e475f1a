"""In-process storage: the default, durable for as long as the process lives."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aio_ashb._core import Checkpointed, Event, Reported, TrialEnded
from aio_ashb._exceptions import DuplicateStudyError, StateError, StudyLockedError, StudyNotFoundError
from aio_ashb.storage._base import Storage, StudyInfo, lease_message


@dataclass(slots=True)
class _StudyLog:
    info: StudyInfo
    # Reports, by far the most numerous events, are kept as plain tuples of numbers: less
    # memory, and the garbage collector stops tracking them (it must traverse objects).
    events: list[Event | tuple[int, int, float, float]] = field(default_factory=list)
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
        for ev in events:
            if isinstance(ev, Reported):
                curve = log.values.get(ev.number)
                if curve is None:
                    curve = log.values[ev.number] = {}
                curve[ev.step] = ev.value
                log.events.append((ev.number, ev.step, ev.value, ev.time))
            elif isinstance(ev, Checkpointed):
                log.checkpoints[ev.number] = (ev.step, ev.payload)
                log.events.append(Checkpointed(ev.number, ev.step, None, ev.time))
            else:
                if isinstance(ev, TrialEnded):
                    log.checkpoints.pop(ev.number, None)
                log.events.append(ev)
        self._seq += len(events)
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
        return [Reported(*ev) if type(ev) is tuple else ev for ev in self._log(name).events]  # type: ignore[misc]

    async def read_values(self, name: str, number: int) -> dict[int, float]:
        return dict(self._log(name).values.get(number, {}))

    async def load_checkpoint(self, name: str, number: int) -> tuple[int, Any] | None:
        return self._log(name).checkpoints.get(number)
