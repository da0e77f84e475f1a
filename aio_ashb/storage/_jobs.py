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
    DELETE_CHECKPOINT,
    INSERT_EVENT,
    ROWS_PER_STATEMENT,
    SELECT_LEASE,
    UPSERT_CHECKPOINT,
    UPSERT_SNAPSHOT,
    insert_rows,
)

T = TypeVar("T")
# A queued write: ("e", event row, sequence number) | ("c", checkpoint row, 0) | ("d", key, 0)
# | ("s", snapshot row, 0). Every row starts with the study's id.
Entry = tuple[str, tuple[Any, ...], int]
_SQL = {"e": INSERT_EVENT, "c": UPSERT_CHECKPOINT, "d": DELETE_CHECKPOINT, "s": UPSERT_SNAPSHOT}
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
    """Queued writes, in order, inside the caller's transaction."""
    if not rows:
        return
    if len(rows) <= ROWS_PER_STATEMENT and all(e[0] == "e" for e in rows):
        # The common batch, reports only: one multi-row INSERT.
        db.execute(insert_rows(len(rows)), [v for e in rows for v in e[1]])
        return
    # Consecutive rows of one kind go in one executemany; the order of kinds is kept.
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            db.executemany(_SQL[rows[start][0]], [e[1] for e in rows[start:i]])
            start = i
