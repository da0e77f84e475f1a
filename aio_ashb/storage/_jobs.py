"""Jobs for the connection's thread: each runs whole there (see ``_connection``), so a
transaction is never split by a cancellation on the event loop."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aio_ashb.storage import _owner
from aio_ashb.storage._schema import (
    ROWS_PER_STATEMENT,
    SELECT_LEASE,
    UPSERT_CHECKPOINT,
    UPSERT_SNAPSHOT,
    delete_checkpoints,
    insert_rows,
)

T = TypeVar("T")
# A queued write: ("e", event row, sequence number) | ("c", checkpoint row, 0) | ("d", key, 0)
# | ("s", snapshot row, 0). Every row starts with the study's id.
Entry = tuple[str, tuple[Any, ...], int]
_SQL = {"c": UPSERT_CHECKPOINT, "s": UPSERT_SNAPSHOT}  # the kinds written a statement per row
# Space: once a commit has freed pages (dropped checkpoints), reclaim them when they are more than
# this many pages and half the file, this many pages per commit (a few ms each).
_RECLAIM_PAGES = 1024


class FileGone(Exception):
    """Raised in the connection's thread: the path no longer leads to the open file."""


@dataclass(slots=True)
class Outcome:
    """What a write job did, filled in on the connection's thread: read after the job ended,
    even if the task that awaited it was cancelled meanwhile."""

    committed: bool = False
    fenced: dict[int, str | None] = field(default_factory=dict)  # study id -> current holder


def transaction(
    db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], check: Callable[[], None]
) -> T:
    """One write transaction, run whole on the connection's thread. BEGIN IMMEDIATE: other
    writers wait, so there are never two winners. On any error the transaction is rolled back if
    SQLite has not done it already (a failed COMMIT on a full disk has), and the first error is
    the one raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body(db)
        check()
        db.execute("COMMIT")
        return result
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def snapshot(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Several reads from one snapshot of the file (one read transaction)."""
    db.execute("BEGIN")
    try:
        return body(db)
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("COMMIT")


def lease_row(db: sqlite3.Connection, sid: int) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = db.execute(SELECT_LEASE, (sid,)).fetchone()
    return row


def owner_of(row: tuple[Any, ...]) -> _owner.Owner:
    return _owner.Owner(row[2], row[3], row[4])


def reclaim(db: sqlite3.Connection, *, everything: bool = False) -> None:
    """Give free pages back to the file system (auto_vacuum=INCREMENTAL): after a commit, a
    bounded number, once they are many and half the file; at close, all of them."""
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if everything and free:
        db.executescript("PRAGMA incremental_vacuum;")  # executescript steps it to its end
    elif free >= _RECLAIM_PAGES and 2 * free >= db.execute("PRAGMA page_count").fetchone()[0]:
        db.executescript(f"PRAGMA incremental_vacuum({_RECLAIM_PAGES * 4});")


def write_rows(db: sqlite3.Connection, rows: list[Entry]) -> None:
    """Queued writes, inside the caller's transaction, in few statements.

    The events go first, in multi-row INSERTs of up to ROWS_PER_STATEMENT rows (another table
    than the checkpoints': what the transaction commits is what the queue's order would), then
    the checkpoint writes and drops in queue order, drops many per statement. A statement per
    row, as a run's end (a TrialEnded and a drop per paused trial) was written before, took
    twice as long, and each statement is one more wait of this thread for the GIL while the
    event loop is busy.
    """
    events = [e[1] for e in rows if e[0] == "e"]
    for i in range(0, len(events), ROWS_PER_STATEMENT):
        chunk = events[i : i + ROWS_PER_STATEMENT]
        db.execute(insert_rows(len(chunk)), [v for row in chunk for v in row])
    others = [e for e in rows if e[0] != "e"] if len(events) < len(rows) else []
    start = 0
    for i in range(1, len(others) + 1):  # runs of one kind, in order
        if i == len(others) or others[i][0] != others[start][0]:
            kind, run = others[start][0], [e[1] for e in others[start:i]]
            if kind == "d":
                for j in range(0, len(run), ROWS_PER_STATEMENT):
                    chunk = run[j : j + ROWS_PER_STATEMENT]
                    db.execute(delete_checkpoints(len(chunk)), [v for key in chunk for v in key])
            else:
                db.executemany(_SQL[kind], run)
            start = i
