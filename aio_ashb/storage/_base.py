"""The storage contract: an append-only event log per study, plus a few queries.

Every backend (``MemoryStorage`` here, ``SQLiteStorage`` next) implements :class:`Storage`, and
one conformance suite (``tests/storage/test_conformance.py``) runs against each of them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from aio_ashb._core import Event


@dataclass(frozen=True, slots=True)
class StudyInfo:
    """A study as stored: its name, its configuration (JSON-compatible) and creation time."""

    name: str
    config: dict[str, Any]
    created: float


class Storage(abc.ABC):
    """Where a study's events live.

    Contract, for every backend:

    * **Lifecycle.** ``await open()`` before use (idempotent) and ``await close()`` after; a
      closed storage raises :class:`~aio_ashb.StateError` on use. ``async with storage:`` does
      both.
    * **Studies.** ``create_study`` raises :class:`~aio_ashb.DuplicateStudyError` for a name that
      exists; ``get_study`` and ``delete_study`` raise :class:`~aio_ashb.StudyNotFoundError` for
      one that does not. Deleting a study removes its events, checkpoints and lease; it raises
      :class:`~aio_ashb.StudyLockedError` (and deletes nothing) while a runner holds the lease.
    * **Append.** ``append(name, events)`` is synchronous and never blocks: it accepts the events
      in order (one runner writes a study at a time) and returns the sequence number of the last
      one. Sequence numbers are per storage, start at 1 and increase by one per event.
    * **Durability.** ``durable_seq`` is the highest sequence number that would survive a crash
      of this process; ``await flush(seq)`` returns once ``durable_seq >= seq`` (``None``: all
      appended so far). Callers skip the await when ``durable_seq`` is already high enough,
      which keeps the hot path free of suspensions for backends that are durable at once.
    * **Replay.** ``read_events(name)`` returns every appended event of the study in append
      order, equal (``==``) to what was appended, except that :class:`Checkpointed` events come
      back with ``payload=None``: payloads are fetched with ``load_checkpoint``. Reads never see
      a partly written batch. ``read_study(name)`` returns the study's ``StudyInfo`` and its
      events from one consistent snapshot.
    * **Checkpoints.** ``load_checkpoint(name, number)`` returns ``(step, payload)`` of the
      latest :class:`Checkpointed` event of that trial, or ``None``. A :class:`TrialEnded` event
      or ``drop_checkpoint(name, number)`` (synchronous, ordered with ``append``) deletes it: the
      trial can never resume. Payloads may be pickled by a backend; ``read_events`` and every
      other read never unpickle anything.
    * **Leases.** One runner per study: ``await acquire_lease(name, holder, ttl)`` succeeds if no
      other holder has a lease that has not expired (wall clock), and raises
      :class:`~aio_ashb.StudyLockedError` naming the holder otherwise (a backend may take over
      at once a lease whose holder it knows to be dead). ``renew_lease`` extends the lease only
      if it is still ``holder``'s (compare and swap): if another holder took it over, or took it
      over and released it, it raises the same error and never re-creates the lease. A backend
      shared by processes also fences writes: once its lease is lost, it writes no more events
      of that study (``flush(seq)`` raises the error for them) until it acquires it again.
      ``release_lease`` gives it up (a no-op if not held) once the study's queued events are
      written.
    * **Learning curves.** ``read_values(name, number)`` returns ``{step: value}`` of every
      report of the trial.
    * **Errors.** Driver errors are raised as :class:`~aio_ashb.StorageError` subclasses.
    """

    #: True when checkpoints are serialized into the storage: the runner then calls
    #: :meth:`prepare_checkpoint` in a worker thread before it appends a checkpoint, so a large
    #: one is not serialized on the event loop, and one that cannot be stored fails its trial
    #: instead of the storage. False: no thread, payloads are appended as they are.
    pickles_checkpoints: ClassVar[bool] = False

    def prepare_checkpoint(self, number: int, payload: Any) -> Any:
        """What ``append`` should store for trial ``number``'s checkpoint ``payload``: called in
        a worker thread when :attr:`pickles_checkpoints`, it may be slow. Raises
        :class:`~aio_ashb.ReportError` for a checkpoint that cannot be stored. By default the
        payload itself."""
        return payload

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_study(self, name: str, config: Mapping[str, Any]) -> StudyInfo: ...

    @abc.abstractmethod
    async def get_study(self, name: str) -> StudyInfo: ...

    @abc.abstractmethod
    async def list_studies(self) -> list[StudyInfo]: ...

    @abc.abstractmethod
    async def delete_study(self, name: str) -> None: ...

    @abc.abstractmethod
    def append(self, name: str, events: Sequence[Event]) -> int: ...

    @property
    @abc.abstractmethod
    def durable_seq(self) -> int: ...

    @abc.abstractmethod
    async def flush(self, seq: int | None = None) -> None: ...

    @abc.abstractmethod
    def drop_checkpoint(self, name: str, number: int) -> int: ...

    @abc.abstractmethod
    async def read_events(self, name: str) -> list[Event]: ...

    async def read_study(self, name: str) -> tuple[StudyInfo, list[Event]]:
        """The study and its events, read from one snapshot (backends with concurrent writers
        override this)."""
        return await self.get_study(name), await self.read_events(name)

    @property
    def keeps_snapshots(self) -> bool:
        """Whether :meth:`save_snapshot` keeps anything: only worth a writer's time where
        another process reads the study back (a file), not in memory."""
        return False

    def save_snapshot(self, name: str, blob: bytes) -> None:
        """Queue ``blob``, the state of study ``name``'s scheduler after the last event appended
        to it (``_core._snapshot.dump``), to be written with the next flush, after those events.
        Readers start from it instead of replaying the whole log. Default: keep nothing."""
        return None

    async def read_from_snapshot(
        self, name: str
    ) -> tuple[StudyInfo, tuple[int, bytes] | None, int, list[Event]]:
        """The study, its latest snapshot as (sequence number of the last event it reflects,
        bytes) or None, the sequence number of its last event, and the events after the
        snapshot (all of them without one), from one read of the storage. Default: no snapshot
        (sequence numbers count events from 1)."""
        info, events = await self.read_study(name)
        return info, None, len(events), events

    @abc.abstractmethod
    async def read_values(self, name: str, number: int) -> dict[int, float]: ...

    @abc.abstractmethod
    async def load_checkpoint(self, name: str, number: int) -> tuple[int, Any] | None: ...

    @abc.abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> None: ...

    @abc.abstractmethod
    async def renew_lease(self, name: str, holder: str, ttl: float) -> None: ...

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None: ...


def lease_message(name: str, holder: str, expires: float, now: float) -> str:
    return (
        f"study {name!r} is being run by {holder}; its lease expires in {max(0.0, expires - now):.1f} s "
        f"unless renewed. Stop that runner, or wait for the lease to expire if it died."
    )
