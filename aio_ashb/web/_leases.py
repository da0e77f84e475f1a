"""Leases on the jobs handed to remote workers: a table with no I/O and no clock of its own.

A worker that asks for a job holds it under a lease with a deadline; a heartbeat or a report
moves the deadline on, and a lease whose deadline passes is *expired*: its job is given back to
the study (``Study.release``: the trial becomes INTERRUPTED and the next ask resumes it), and a
late report under it is refused. The service passes the time in (its event loop's clock) and does
the releasing; this table only decides, so its rules are tested with plain calls.

Ended leases are remembered (the most recent ``remember`` of them) so that a late report is told
*why* its lease is gone (expired, cancelled, finished), not just that it is unknown.
"""

from __future__ import annotations

import heapq
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar

J = TypeVar("J")
Ended: TypeAlias = Literal["expired", "cancelled", "finished", "failed"]


@dataclass(slots=True)
class Lease(Generic[J]):
    """One job held by one worker until ``deadline`` (on the service's clock)."""

    id: str
    study: str
    job: J
    deadline: float


class LeaseGone(Exception):
    """The lease is not held: ``reason`` is how it ended, or None if it was never known."""

    def __init__(self, lease_id: str, reason: Ended | None) -> None:
        super().__init__(lease_id, reason)
        self.lease_id = lease_id
        self.reason = reason


class JobLeases(Generic[J]):
    """The open leases of a service; ``ttl`` seconds from grant or last renewal."""

    def __init__(self, ttl: float, *, remember: int = 10_000) -> None:
        self.ttl = ttl
        self._open: dict[str, Lease[J]] = {}
        self._by_study: dict[str, dict[str, Lease[J]]] = {}
        self._ended: OrderedDict[str, Ended] = OrderedDict()
        self._remember = remember
        # (deadline, id) of every grant and renewal; stale entries are skipped when popped, so a
        # renewal costs O(log n) and finding the expired ones never scans the table.
        self._deadlines: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._open)

    def grant(self, study: str, job: J, now: float) -> Lease[J]:
        lease = Lease(secrets.token_urlsafe(16), study, job, now + self.ttl)
        self._open[lease.id] = lease
        self._by_study.setdefault(study, {})[lease.id] = lease
        heapq.heappush(self._deadlines, (lease.deadline, lease.id))
        return lease

    def get(self, lease_id: str, now: float) -> Lease[J]:
        """The lease, if held and not past its deadline; else :class:`LeaseGone`. A lease past
        its deadline is expired by this call (the caller then releases its job)."""
        lease = self._open.get(lease_id)
        if lease is None:
            raise LeaseGone(lease_id, self._ended.get(lease_id))
        if lease.deadline <= now:
            raise LeaseGone(lease_id, "expired")
        return lease

    def peek(self, lease_id: str) -> Lease[J] | None:
        """The lease if it is still open, whatever its deadline."""
        return self._open.get(lease_id)

    def renew(self, lease_id: str, now: float) -> Lease[J]:
        lease = self.get(lease_id, now)
        lease.deadline = now + self.ttl
        heapq.heappush(self._deadlines, (lease.deadline, lease.id))
        return lease

    def end(self, lease_id: str, reason: Ended) -> Lease[J]:
        """Remove the lease (it must be open) and remember how it ended."""
        lease = self._open.pop(lease_id)
        held = self._by_study[lease.study]
        del held[lease_id]
        if not held:
            del self._by_study[lease.study]
        self._ended[lease_id] = reason
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)
        return lease

    def expired(self, now: float) -> list[Lease[J]]:
        """The open leases whose deadline has passed (still open: the caller ends each one once
        its job is released)."""
        found: list[Lease[J]] = []
        seen: set[str] = set()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, lease_id = heapq.heappop(self._deadlines)
            lease = self._open.get(lease_id)
            if lease is not None and lease.deadline == deadline and lease_id not in seen:
                found.append(lease)
                seen.add(lease_id)
        return found

    def next_deadline(self) -> float | None:
        """The earliest deadline among open leases (None when there are none)."""
        while self._deadlines:
            deadline, lease_id = self._deadlines[0]
            lease = self._open.get(lease_id)
            if lease is not None and lease.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)  # a renewed or ended lease's old entry
        return None

    def of_study(self, study: str) -> list[Lease[J]]:
        return list(self._by_study.get(study, {}).values())

    def count(self, study: str) -> int:
        return len(self._by_study.get(study, ()))
