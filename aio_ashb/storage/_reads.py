"""What readers ask of a study file, as jobs for the connection's thread (see ``_jobs``): the
log after a sequence number, the latest snapshot of a study's scheduler state, the events of
some trials (through the per-trial index), and the scans a dashboard runs in the background.
Rows are decoded here, on that thread, not on the event loop."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from aio_ashb._core import Event
from aio_ashb.storage._schema import (
    CREATED,
    PROMOTED,
    REPORTED,
    RESUMED,
    SELECT_EVENTS_AFTER,
    SELECT_SNAPSHOT,
    decode_all,
)


def study_row(db: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = db.execute(
        "SELECT id, name, config, created FROM studies WHERE name = ?", (name,)
    ).fetchone()
    return row


def tail(db: sqlite3.Connection, sid: int, after: int, where: str) -> tuple[int, list[Event]]:
    """The sequence number of the study's last event, and its events after ``after``."""
    rows = db.execute(SELECT_EVENTS_AFTER, (sid, after)).fetchall()
    # Sequence numbers may have gaps (events of a lost lease are never written).
    last = rows[-1][0] if rows else after
    return last, decode_all([r[1:] for r in rows], where)


def latest_snapshot(db: sqlite3.Connection, sid: int) -> tuple[int, bytes] | None:
    """(sequence number, bytes) of the study's snapshot; None without one, or in a file from
    before schema version 3 (no such table)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'snapshots'").fetchone():
        return None
    found = db.execute(SELECT_SNAPSHOT, (sid,)).fetchone()
    return None if found is None else (int(found[0]), bytes(found[1]))


def trial_events(
    db: sqlite3.Connection, sid: int, numbers: Sequence[int], upto: int, where: str
) -> dict[int, list[Event]]:
    """The events of the trials ``numbers`` up to sequence number ``upto``, per trial."""
    wanted = sorted(set(numbers))
    rows: list[Any] = []
    for i in range(0, len(wanted), 500):  # bounded parameter lists
        chunk = wanted[i : i + 500]
        rows += db.execute(
            # The index named: the planner otherwise scans the log by its primary key.
            "SELECT seq, kind, number, step, value, time, data FROM events INDEXED BY events_by_trial "
            f"WHERE study_id = ? AND number IN ({','.join('?' * len(chunk))}) AND seq <= ?",
            (sid, *chunk, upto),
        ).fetchall()
    rows.sort()
    out: dict[int, list[Event]] = {n: [] for n in wanted}
    for row, ev in zip(rows, decode_all([r[1:] for r in rows], where), strict=True):
        out[row[2]].append(ev)
    return out


def event_time(db: sqlite3.Connection, sid: int, seq: int) -> float | None:
    row = db.execute("SELECT time FROM events WHERE study_id = ? AND seq = ?", (sid, seq)).fetchone()
    return None if row is None else float(row[0])


def trials_active(db: sqlite3.Connection, sid: int, upto: int, events: int) -> list[int]:
    """The trials that ran in the last ``events`` reports, starts, promotions or resumptions up to
    ``upto`` (not ends: a promotion-mode run ends by stopping every paused trial at once)."""
    rows = db.execute(
        "SELECT DISTINCT number FROM (SELECT number FROM events WHERE study_id = ? AND seq <= ? "
        "AND kind IN (?, ?, ?, ?) ORDER BY seq DESC LIMIT ?)",
        (sid, upto, REPORTED, CREATED, PROMOTED, RESUMED, events),
    ).fetchall()
    return [r[0] for r in rows]


_FINITE = "value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"  # no NaN, no inf


def reports_summary(
    db: sqlite3.Connection, sid: int, upto: int, maximize: bool
) -> tuple[int, list[tuple[float, float]], list[tuple[int, int]]]:
    """Up to ``upto``: the number of reports, (time, value) of every report that improved on all
    finite values before it (a window function), and (trial, rung) of every promotion."""
    agg, better = ("max", ">") if maximize else ("min", "<")
    count = db.execute(
        "SELECT count(*) FROM events WHERE study_id = ? AND kind = ? AND seq <= ?", (sid, REPORTED, upto)
    ).fetchone()[0]
    best = db.execute(
        f"SELECT time, value FROM (SELECT time, value, {agg}(value) OVER (ORDER BY seq ROWS BETWEEN "
        "UNBOUNDED PRECEDING AND 1 PRECEDING) AS before FROM events WHERE study_id = ? AND kind = ? "
        f"AND seq <= ? AND {_FINITE}) WHERE before IS NULL OR value {better} before",
        (sid, REPORTED, upto),
    ).fetchall()
    promoted = db.execute(
        "SELECT number, step FROM events WHERE study_id = ? AND kind = ? AND seq <= ?", (sid, PROMOTED, upto)
    ).fetchall()
    return (
        int(count),
        [(float(t), float(v)) for t, v in best],
        [(int(n), int(r)) for n, r in promoted],
    )
