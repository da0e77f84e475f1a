"""How a batch of queued writes becomes statements: as few as can be, with the same result."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import pytest

from aio_ashb.storage._jobs import Entry, write_rows
from aio_ashb.storage._schema import DELETE_CHECKPOINT, INSERT_EVENT, MIGRATIONS, UPSERT_CHECKPOINT


def _one_by_one(db: sqlite3.Connection, rows: list[Entry]) -> None:
    """The reference: every queued write as its own statement, in queue order."""
    sql = {"e": INSERT_EVENT, "c": UPSERT_CHECKPOINT, "d": DELETE_CHECKPOINT}
    for kind, row, _ in rows:
        db.execute(sql[kind], row)


def _database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            db.execute(statement)
    db.executemany("INSERT INTO studies VALUES (?, ?, '{}', 0)", [(1, "a"), (2, "b")])
    return db


def _contents(db: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
    return (
        db.execute("SELECT * FROM events ORDER BY study_id, seq").fetchall(),
        db.execute("SELECT * FROM checkpoints ORDER BY study_id, number").fetchall(),
    )


@pytest.mark.parametrize("n", [1, 7, 999, 1000, 1001, 2600])
def test_a_batch_of_writes_leaves_what_its_writes_one_by_one_do(n: int) -> None:
    """Events go first, in statements of up to 1,000 rows, and checkpoint writes and drops
    after them in their order, drops many per statement: the same rows as one statement per
    write in queue order. The batch mixes two studies; a checkpoint is replaced, then dropped,
    then written again, and trials are dropped without one, as runs do."""
    rows: list[Entry] = []
    seq = {1: 0, 2: 0}
    for i in range(n):
        sid = 1 + i % 2
        seq[sid] += 1
        number = i % 37
        rows.append(("e", (sid, seq[sid], 2, number, i, 0.5 * i, 1.0, None), 0))
        if i % 3 == 0:
            rows.append(("c", (sid, number, i, b"payload %d" % i), 0))
        if i % 5 == 0:
            rows.append(("d", (sid, number), 0))
    with contextlib.closing(_database()) as batched, contextlib.closing(_database()) as reference:
        write_rows(batched, rows)
        _one_by_one(reference, rows)
        assert _contents(batched) == _contents(reference)
        assert len(_contents(batched)[0]) == n
