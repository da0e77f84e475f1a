"""The SQLite file's layout: tables, migrations, and events as rows (no I/O here)."""

from __future__ import annotations

import functools
import json
import math
import sqlite3
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
from aio_ashb._exceptions import CorruptDatabaseError, StateError

SCHEMA_VERSION = 3
#: Readers (read-only storages) understand files from this version on: the tables they read
#: have not changed since.
OLDEST_READABLE = 1
APPLICATION_ID = 0x41534842  # "ASHB", in the file header: tells our files from other SQLite files

# Each entry brings a database from version (index) to version (index + 1), in one transaction.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE studies (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            config TEXT NOT NULL,
            created REAL NOT NULL)""",
        # One row per event. Reports (most rows) use the typed columns only; other events keep
        # their fields in `data` (JSON). A NaN value is stored as NULL, which SQLite does anyway.
        """CREATE TABLE events (
            study_id INTEGER NOT NULL REFERENCES studies(id),
            seq INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            number INTEGER,
            step INTEGER,
            value REAL,
            time REAL NOT NULL,
            data TEXT,
            PRIMARY KEY (study_id, seq)) WITHOUT ROWID""",
        "CREATE INDEX events_by_trial ON events (study_id, number, kind)",
        """CREATE TABLE checkpoints (
            study_id INTEGER NOT NULL REFERENCES studies(id),
            number INTEGER NOT NULL,
            step INTEGER NOT NULL,
            payload BLOB NOT NULL,
            PRIMARY KEY (study_id, number))""",
        """CREATE TABLE leases (
            study_id INTEGER PRIMARY KEY REFERENCES studies(id),
            holder TEXT NOT NULL,
            expires REAL NOT NULL)""",
    ],
    # Version 2: who holds a lease (pid, machine, process start time), so that the lease of a
    # process that died on this machine is taken over at once.
    [
        "ALTER TABLE leases ADD COLUMN pid INTEGER",
        "ALTER TABLE leases ADD COLUMN machine TEXT",
        "ALTER TABLE leases ADD COLUMN started INTEGER",
    ],
    # Version 3: the latest snapshot of each study's scheduler state (``_core._snapshot``), with
    # the sequence number of the last event it reflects: readers start there, not at event 1.
    # A file of version 1 or 2 has no such table; readers of it replay the whole log.
    [
        """CREATE TABLE snapshots (
            study_id INTEGER PRIMARY KEY REFERENCES studies(id),
            seq INTEGER NOT NULL,
            data BLOB NOT NULL)""",
    ],
]

# ---------------------------------------------------------------------- opening a file
# These run on the storage's connection thread.


def inspect(db: sqlite3.Connection) -> tuple[int, int, int]:
    """(tables, application id, schema version). Tables first: they appear in the same commit
    that sets the application id and the version, so reading those after cannot see another
    process's half-created file."""
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    return tables, app_id, version


def configure(db: sqlite3.Connection, *, synchronous: str, new: bool) -> None:
    """The connection's settings; for a new file, incremental auto-vacuum (chosen before WAL
    and the first table: the only moment it is cheap)."""
    if new:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    # After a checkpoint the WAL file is cut back to this size (large checkpoints grow it).
    db.execute("PRAGMA journal_size_limit=16777216")


def quick_check(db: sqlite3.Connection) -> list[str]:
    """SQLite's structural check, its first problems (or ``["ok"]``)."""
    return [str(row[0]) for row in db.execute("PRAGMA quick_check(3)").fetchall()]


def migrate(db: sqlite3.Connection) -> bool:
    """Bring the file to this schema (in the caller's write transaction). True for a file made
    before space was reclaimed, which :func:`vacuum` switches over once."""
    # Read again under the write lock: another process may have just migrated this file.
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for v in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[v]:
            db.execute(statement)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return bool(version) and db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0


def vacuum(db: sqlite3.Connection) -> None:
    db.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")


def studies_and_ends(db: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
    """The studies (id, name), and the last sequence number of each study's log."""
    ids = db.execute("SELECT id, name FROM studies").fetchall()
    # One max() per study, which SQLite answers from the primary key's b-tree: a GROUP BY over
    # the events scanned them all (0.28 s for a million events, on every open).
    tops = db.execute(
        "SELECT id, (SELECT max(seq) FROM events WHERE study_id = studies.id) AS top FROM studies "
        "WHERE top IS NOT NULL"
    ).fetchall()
    return ids, tops


# ---------------------------------------------------------------------- events as rows
REPORTED, CREATED, PROMOTED, RESUMED, CHECKPOINTED, INTERRUPTED, ENDED, ENQUEUED = range(1, 9)

INSERT_EVENT = (
    "INSERT INTO events (study_id, seq, kind, number, step, value, time, data) VALUES (?,?,?,?,?,?,?,?)"
)
ROWS_PER_STATEMENT = 1000  # 8 parameters a row: well under SQLite's 32,766 per statement


@functools.lru_cache(maxsize=64)
def insert_rows(n: int) -> str:
    """One INSERT of ``n`` event rows (a batch of reports is one statement)."""
    return INSERT_EVENT.replace("(?,?,?,?,?,?,?,?)", ",".join(["(?,?,?,?,?,?,?,?)"] * n))


UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (study_id, number, step, payload) VALUES (?,?,?,?) "
    "ON CONFLICT (study_id, number) DO UPDATE SET step = excluded.step, payload = excluded.payload"
)
DELETE_CHECKPOINT = "DELETE FROM checkpoints WHERE study_id = ? AND number = ?"


@functools.lru_cache(maxsize=64)
def delete_checkpoints(n: int) -> str:
    """One DELETE of the checkpoints of ``n`` (study id, trial number) keys."""
    keys = ",".join(["(?,?)"] * n)
    return f"DELETE FROM checkpoints WHERE (study_id, number) IN (VALUES {keys})"


UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (study_id, seq, data) VALUES (?,?,?) "
    "ON CONFLICT (study_id) DO UPDATE SET seq = excluded.seq, data = excluded.data"
)
SELECT_SNAPSHOT = "SELECT seq, data FROM snapshots WHERE study_id = ?"
SELECT_LEASE = "SELECT holder, expires, pid, machine, started FROM leases WHERE study_id = ?"
UPSERT_LEASE = (
    "INSERT INTO leases (study_id, holder, expires, pid, machine, started) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (study_id) DO UPDATE SET holder = excluded.holder, expires = excluded.expires, "
    "pid = excluded.pid, machine = excluded.machine, started = excluded.started"
)
SELECT_EVENTS = "SELECT kind, number, step, value, time, data FROM events WHERE study_id = ? ORDER BY seq"
SELECT_EVENTS_AFTER = (
    "SELECT seq, kind, number, step, value, time, data FROM events WHERE study_id = ? AND seq > ? "
    "ORDER BY seq"
)


def encode(study_id: int, seq: int, ev: Event) -> tuple[Any, ...]:
    """An event as a row of the events table."""
    if isinstance(ev, Reported):
        value = None if math.isnan(ev.value) else ev.value
        return (study_id, seq, REPORTED, ev.number, ev.step, value, ev.time, None)
    if isinstance(ev, TrialCreated):
        data = json.dumps({"bracket": ev.bracket, "params": ev.params, "rng_state": ev.rng_state})
        return (study_id, seq, CREATED, ev.number, None, None, ev.time, data)
    if isinstance(ev, TrialPromoted):
        return (study_id, seq, PROMOTED, ev.number, ev.rung, None, ev.time, None)
    if isinstance(ev, TrialResumed):
        return (study_id, seq, RESUMED, ev.number, None, None, ev.time, None)
    if isinstance(ev, Checkpointed):
        return (study_id, seq, CHECKPOINTED, ev.number, ev.step, None, ev.time, None)
    if isinstance(ev, TrialInterrupted):
        return (study_id, seq, INTERRUPTED, ev.number, None, None, ev.time, None)
    if isinstance(ev, TrialEnded):
        data = json.dumps({"state": ev.state.value, "error": ev.error})
        return (study_id, seq, ENDED, ev.number, None, None, ev.time, data)
    if isinstance(ev, Enqueued):
        return (study_id, seq, ENQUEUED, None, None, None, ev.time, json.dumps(ev.params))
    raise StateError(f"not an event: {ev!r}")


def _decode(row: tuple[Any, ...]) -> Event:
    kind, number, step, value, t, data = row
    if kind == REPORTED:
        return Reported(number, step, math.nan if value is None else value, t)
    if kind == CREATED:
        d = json.loads(data)
        rng = d["rng_state"]  # a list (a tuple, in JSON), or numpy's dict in older logs
        return TrialCreated(number, d["bracket"], d["params"], tuple(rng) if type(rng) is list else rng, t)
    if kind == PROMOTED:
        return TrialPromoted(number, step, t)
    if kind == RESUMED:
        return TrialResumed(number, t)
    if kind == CHECKPOINTED:
        return Checkpointed(number, step, None, t)
    if kind == INTERRUPTED:
        return TrialInterrupted(number, t)
    if kind == ENDED:
        d = json.loads(data)
        return TrialEnded(number, TrialState(d["state"]), d["error"], t)
    if kind == ENQUEUED:
        return Enqueued(json.loads(data), t)
    raise ValueError(f"unknown event kind {kind!r}")


def decode_all(rows: list[tuple[Any, ...]], where: str) -> list[Event]:
    """Rows of the events table as events; a row that cannot be read means a damaged file."""
    out: list[Event] = []
    for i, row in enumerate(rows):
        try:
            out.append(_decode(row))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptDatabaseError(
                f"{where}: event {i + 1} cannot be read ({printable(repr(exc))}); the file is damaged"
            ) from None
    return out


def printable(text: str, limit: int = 300) -> str:
    """``text`` safe for one line of a terminal: control characters escaped, length bounded."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."
