"""The leases a storage holds, and what it owes the writers of studies whose lease it lost.

A storage writes a study's events only while it holds the study's lease: every write
transaction first checks the lease rows of the studies it writes (the fence: :meth:`expected`).
Once a lease is lost, that study's unwritten events never will be: their sequence numbers are
remembered, so that ``flush(seq)`` raises why and ``durable_seq`` never passes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aio_ashb._exceptions import StudyLockedError
from aio_ashb.storage._jobs import Entry


class Fences:
    __slots__ = ("dropped", "held", "lost")

    def __init__(self) -> None:
        self.held: dict[int, str] = {}  # study id -> holder, for the leases held
        self.lost: dict[int, StudyLockedError] = {}  # study id -> why its lease is gone
        self.dropped: dict[int, int] = {}  # sequence number -> study id: events never written

    def hold(self, sid: int, holder: str) -> None:
        self.held[sid] = holder
        if self.lost.pop(sid, None) is not None:  # taken again: its old events are settled
            self.dropped = {g: s for g, s in self.dropped.items() if s != sid}

    def holds(self, sid: int, holder: str) -> bool:
        return self.held.get(sid) == holder

    def release(self, sid: int, holder: str) -> None:
        if self.held.get(sid) == holder:
            del self.held[sid]

    def expected(self, sids: Iterable[int]) -> dict[int, str]:
        """The holder each lease of these studies must still name, for those held."""
        return {sid: self.held[sid] for sid in sids if sid in self.held}

    def lose(self, sid: int, name: str, holder: str | None, entries: Sequence[Entry]) -> None:
        """The lease of study ``sid`` is gone: its events among ``entries`` are dropped."""
        self.held.pop(sid, None)
        self.lost[sid] = StudyLockedError(
            f"study {name!r}: this runner's lease was "
            + (f"taken over by {holder}" if holder else "ended by another runner, which has finished")
            + " while this runner was stalled past its lease_ttl (stopped, suspended or frozen); "
            "its work since then was not recorded, and it stops"
        )
        for kind, row, seq in entries:
            if kind == "e" and row[0] == sid:
                self.dropped[seq] = sid

    def drop(self, sid: int, seq: int) -> None:
        """An event appended for a study whose lease is lost: never written."""
        self.dropped[seq] = sid

    def durable(self, committed: int) -> int:
        """``durable_seq``: never past a dropped event (whoever waits for it must call flush,
        which raises the reason, rather than take it as durable)."""
        return min(committed, min(self.dropped) - 1) if self.dropped else committed

    def error_for(self, seq: int) -> StudyLockedError | None:
        sid = self.dropped.get(seq)
        return None if sid is None else self.lost[sid]
