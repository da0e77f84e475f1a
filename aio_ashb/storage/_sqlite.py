"""Durable studies in one SQLite file: an event log written by group commit.

One ``aiosqlite`` connection (its own thread) does every write of this storage. ``append``
only encodes events into rows and queues them; ``flush`` makes them durable. Flushes elect a
leader: the first caller writes everything queued so far in one transaction, while later callers
wait for it and, if their events arrived during that commit, the next of them leads the next
transaction. So events queued while a transaction runs go into the next one (group commit),
without a background task. A transaction is shielded from cancellation: a cancelled ``run()``
never leaves a batch half-known.

WAL mode lets readers (the CLI, a dashboard, another process) read a consistent snapshot while
the runner writes. ``synchronous=NORMAL`` (default) survives a crash of the process; ``FULL``
also survives a power cut, at the price of an fsync per transaction.

Checkpoints are pickled into the ``checkpoints`` table; the runner pickles them in a worker
thread before it appends them (``Pickled``), so large checkpoints are not serialized on the loop
and a checkpoint that cannot be pickled fails its trial, not the storage. Unpickling runs code
chosen by whoever wrote the file, so only ``load_checkpoint`` unpickles, and a storage opened
with ``readonly=True`` refuses to.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pickle
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import anyio
import anyio.lowlevel
import anyio.to_thread

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
from aio_ashb._exceptions import (
    ConfigError,
    CorruptDatabaseError,
    DuplicateStudyError,
    NotADatabaseError,
    SchemaVersionError,
    StateError,
    StorageError,
    StorageLocationError,
    StudyLockedError,
    StudyNotFoundError,
)
from aio_ashb.storage._base import Storage, StudyInfo, lease_message

SCHEMA_VERSION = 1
APPLICATION_ID = 0x41534842  # "ASHB", in the file header: tells our files from other SQLite files

# Each entry brings a database from version (index) to version (index + 1).
_MIGRATIONS: list[list[str]] = [
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
]

_REPORTED, _CREATED, _PROMOTED, _RESUMED, _CHECKPOINTED, _INTERRUPTED, _ENDED, _ENQUEUED = range(1, 9)

_INSERT_EVENT = (
    "INSERT INTO events (study_id, seq, kind, number, step, value, time, data) VALUES (?,?,?,?,?,?,?,?)"
)
_ROWS_PER_STATEMENT = 1000  # 8 parameters a row: well under SQLite's 32,766 per statement


@functools.lru_cache(maxsize=64)
def _insert_rows(n: int) -> str:
    return _INSERT_EVENT.replace("(?,?,?,?,?,?,?,?)", ",".join(["(?,?,?,?,?,?,?,?)"] * n))


_UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (study_id, number, step, payload) VALUES (?,?,?,?) "
    "ON CONFLICT (study_id, number) DO UPDATE SET step = excluded.step, payload = excluded.payload"
)
_DELETE_CHECKPOINT = "DELETE FROM checkpoints WHERE study_id = ? AND number = ?"
_SELECT_LEASE = "SELECT holder, expires FROM leases WHERE study_id = ?"
_UPSERT_LEASE = (
    "INSERT INTO leases (study_id, holder, expires) VALUES (?,?,?) "
    "ON CONFLICT (study_id) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
)
_LAST_SEQ = "SELECT max(seq) FROM events WHERE study_id = ?"


class Pickled:
    """A checkpoint payload already pickled (by the runner, in a worker thread): stored as is."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob


def _pickle_payload(payload: Any) -> bytes:
    if isinstance(payload, Pickled):
        return payload.blob
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickling runs user code (__reduce__): anything can come out
        raise StorageError(f"a checkpoint could not be pickled: {exc!r}") from exc


def _classify(exc: sqlite3.Error, path: str) -> StorageError:
    """Turn a sqlite3 error into the StorageError that tells the user what to do."""
    text = str(exc)
    if "file is not a database" in text:
        return NotADatabaseError(f"{path} is not a SQLite database; point aio_ashb at another file")
    if "malformed" in text or "corrupt" in text:
        return CorruptDatabaseError(
            f"{path} is damaged ({text}); restore it from a backup, or try `sqlite3 {path} .recover`"
        )
    if "readonly" in text or "read-only" in text:
        return StorageLocationError(
            f"{path} cannot be written ({text}); check the permissions of the file and its directory"
        )
    if "unable to open" in text:
        return StorageLocationError(
            f"cannot open {path} ({text}); check that its directory exists and is writable"
        )
    if "locked" in text or "busy" in text:
        return StorageError(f"{path} stayed locked by another connection ({text}); try again")
    return StorageError(f"SQLite error on {path}: {text}")


def _encode(study_id: int, seq: int, ev: Event) -> tuple[Any, ...]:
    if isinstance(ev, Reported):
        value = None if math.isnan(ev.value) else ev.value
        return (study_id, seq, _REPORTED, ev.number, ev.step, value, ev.time, None)
    if isinstance(ev, TrialCreated):
        data = json.dumps({"bracket": ev.bracket, "params": ev.params, "rng_state": ev.rng_state})
        return (study_id, seq, _CREATED, ev.number, None, None, ev.time, data)
    if isinstance(ev, TrialPromoted):
        return (study_id, seq, _PROMOTED, ev.number, ev.rung, None, ev.time, None)
    if isinstance(ev, TrialResumed):
        return (study_id, seq, _RESUMED, ev.number, None, None, ev.time, None)
    if isinstance(ev, Checkpointed):
        return (study_id, seq, _CHECKPOINTED, ev.number, ev.step, None, ev.time, None)
    if isinstance(ev, TrialInterrupted):
        return (study_id, seq, _INTERRUPTED, ev.number, None, None, ev.time, None)
    if isinstance(ev, TrialEnded):
        data = json.dumps({"state": ev.state.value, "error": ev.error})
        return (study_id, seq, _ENDED, ev.number, None, None, ev.time, data)
    if isinstance(ev, Enqueued):
        return (study_id, seq, _ENQUEUED, None, None, None, ev.time, json.dumps(ev.params))
    raise StateError(f"not an event: {ev!r}")


def _decode(row: tuple[Any, ...]) -> Event:
    kind, number, step, value, t, data = row
    if kind == _REPORTED:
        return Reported(number, step, math.nan if value is None else value, t)
    if kind == _CREATED:
        d = json.loads(data)
        return TrialCreated(number, d["bracket"], d["params"], d["rng_state"], t)
    if kind == _PROMOTED:
        return TrialPromoted(number, step, t)
    if kind == _RESUMED:
        return TrialResumed(number, t)
    if kind == _CHECKPOINTED:
        return Checkpointed(number, step, None, t)
    if kind == _INTERRUPTED:
        return TrialInterrupted(number, t)
    if kind == _ENDED:
        d = json.loads(data)
        return TrialEnded(number, TrialState(d["state"]), d["error"], t)
    if kind == _ENQUEUED:
        return Enqueued(json.loads(data), t)
    raise CorruptDatabaseError(f"unknown event kind {kind!r} in the events table")


class SQLiteStorage(Storage):
    pickles_checkpoints = True

    """Studies in one SQLite file (created if missing), durable across crashes.

    ``synchronous="normal"`` (default) keeps every committed event through a crash of the process;
    ``"full"`` also through a power cut or an OS crash. ``readonly=True`` opens the file for
    reading only (the CLI and dashboards): it never writes, never migrates and never unpickles.
    ``busy_timeout`` (seconds) is how long a write waits for another connection's lock.
    Selected by ``storage="sqlite:///path/to/file.db"`` too.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["normal", "full"] = "normal",
        readonly: bool = False,
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ConfigError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        if not isinstance(busy_timeout, (int, float)) or not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be a number >= 0, got {busy_timeout!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.readonly = readonly
        self.busy_timeout = float(busy_timeout)
        self._conn: aiosqlite.Connection | None = None
        self._closed = False
        self._ids: dict[str, int] = {}  # study name -> id
        self._next_seq: dict[int, int] = {}  # study id -> next per-study seq in the file
        # Queued, not yet written: event rows, checkpoint upserts/deletes, in append order.
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._seq = 0  # appended so far (this process)
        self._durable = 0  # committed so far
        self._committing: anyio.Event | None = None
        self._write_lock: anyio.Lock | None = None
        self._opening: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._closed:
            raise StateError(f"{self!r} is closed")
        if self._conn is not None:
            return
        if self._opening is not None:  # another task is opening it: wait for that
            await self._opening.wait()
            if self._conn is None:
                raise StateError(f"{self!r} failed to open in another task")
            return
        self._opening = opening = anyio.Event()
        try:
            await self._open()
        finally:
            self._opening = None
            opening.set()

    async def _open(self) -> None:
        path = str(self.path)
        if not self.path.parent.is_dir():
            raise StorageLocationError(
                f"cannot create {path}: directory {str(self.path.parent)!r} does not exist; create it first"
            )
        if self.readonly and not self.path.exists():
            raise StorageLocationError(f"{path} does not exist")
        if self.path.is_dir():
            raise StorageLocationError(f"{path} is a directory, not a database file")
        if not self.readonly:
            # Opened (and created) here rather than left to SQLite, whose error names no cause.
            try:
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644))
            except OSError as exc:
                raise StorageLocationError(
                    f"cannot write {path}: {exc.strerror}; check the permissions of the file and its "
                    "directory, or open it with SQLiteStorage(..., readonly=True)"
                ) from None
        self._write_lock = anyio.Lock()
        uri = f"file:{self.path.resolve().as_posix()}?mode={'ro' if self.readonly else 'rwc'}"
        try:
            conn = await aiosqlite.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise _classify(exc, path) from None
        self._conn = conn
        try:
            await self._prepare()
        except BaseException:
            self._conn = None
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise

    async def _prepare(self) -> None:
        conn = self._db()
        try:
            # Tables first: they appear in the same commit that sets the application id and the
            # version, so reading those after cannot see another process's half-created file.
            tables = (await self._one("SELECT count(*) FROM sqlite_master"))[0]
            app_id = (await self._one("PRAGMA application_id"))[0]
            version = (await self._one("PRAGMA user_version"))[0]
        except sqlite3.Error as exc:
            raise _classify(exc, str(self.path)) from None
        if tables and app_id != APPLICATION_ID:
            raise NotADatabaseError(
                f"{self.path} is a SQLite database of another program (application_id {app_id:#x}); "
                "point aio_ashb at a new file"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} was written by a newer aio_ashb (schema version {version}; this version "
                f"reads up to {SCHEMA_VERSION}); upgrade aio_ashb to open it"
            )
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} has schema version {version}; open it once for writing to upgrade it"
                )
        else:
            try:
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                if version < SCHEMA_VERSION:
                    await self._migrate(version)
            except sqlite3.Error as exc:
                raise _classify(exc, str(self.path)) from None
        rows = await self._all("SELECT id, name FROM studies")
        self._ids = {name: sid for sid, name in rows}
        for sid, top in await self._all("SELECT study_id, max(seq) FROM events GROUP BY study_id"):
            self._next_seq[sid] = top + 1

    @contextlib.asynccontextmanager
    async def _immediate(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE (other processes' writers wait, so there are
        no two winners), COMMIT, or ROLLBACK on any error; sqlite3 errors are classified.
        Callers hold the write lock and shield the transaction from cancellation."""
        conn = self._writable()
        try:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _classify(exc, str(self.path)) from None

    async def _migrate(self, version: int) -> None:
        with anyio.CancelScope(shield=True):
            async with self._immediate() as conn:
                # Read again under the write lock: another process may have just created the
                # schema of this new file (then there is nothing left to do).
                async with conn.execute("PRAGMA user_version") as cursor:
                    row = await cursor.fetchone()
                version = row[0] if row is not None else version
                for v in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[v]:
                        await conn.execute(statement)
                await conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                await conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._conn is not None and not self.readonly:
                await self.flush()
        finally:
            self._closed = True
            if self._conn is not None:
                with anyio.CancelScope(shield=True):
                    await self._conn.close()
                self._conn = None

    def _db(self) -> aiosqlite.Connection:
        if self._closed:
            raise StateError(f"{self!r} is closed")
        if self._conn is None:
            raise StateError(f"{self!r} is not open; use `async with` or await open()")
        return self._conn

    def _writable(self) -> aiosqlite.Connection:
        conn = self._db()
        if self.readonly:
            raise StateError(f"{self!r} was opened read-only")
        return conn

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await fn()
        except sqlite3.Error as exc:
            raise _classify(exc, str(self.path)) from None

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._db()
        assert self._write_lock is not None
        # Under the write lock: on the writer's connection a read between two statements of a
        # transaction would see rows not yet committed.
        async with self._write_lock:
            return list(await self._call(lambda: conn.execute_fetchall(sql, params)))

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run write statements in one transaction, after the queued events (order kept)."""
        self._writable()
        assert self._write_lock is not None
        await self.flush()
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                async with self._immediate() as conn:
                    for sql, params in statements:
                        await conn.execute(sql, params)

    # ------------------------------------------------------------------ studies
    def _id(self, name: str) -> int:
        self._db()
        try:
            return self._ids[name]
        except KeyError:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path}") from None

    async def _refresh_ids(self) -> None:
        rows = await self._all("SELECT id, name FROM studies")
        self._ids = {name: sid for sid, name in rows}

    async def create_study(self, name: str, config: Mapping[str, Any]) -> StudyInfo:
        self._writable()
        await self._refresh_ids()  # another process may have created it meanwhile
        if name in self._ids:
            raise DuplicateStudyError(
                f"a study named {name!r} already exists in {self.path}; "
                "pass load_if_exists=True to continue it"
            )
        created = time.time()
        try:
            await self._transaction(
                [
                    (
                        "INSERT INTO studies (name, config, created) VALUES (?,?,?)",
                        (name, json.dumps(config), created),
                    )
                ]
            )
        except StorageError as exc:
            if "UNIQUE" in str(exc):
                raise DuplicateStudyError(f"a study named {name!r} already exists in {self.path}") from None
            raise
        await self._refresh_ids()
        self._next_seq[self._ids[name]] = 1
        return StudyInfo(name=name, config=dict(config), created=created)

    async def get_study(self, name: str) -> StudyInfo:
        self._db()
        row = await self._one("SELECT name, config, created FROM studies WHERE name = ?", (name,))
        if row is None:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path}")
        if name not in self._ids:
            await self._refresh_ids()
        return StudyInfo(name=row[0], config=json.loads(row[1]), created=row[2])

    async def list_studies(self) -> list[StudyInfo]:
        rows = await self._all("SELECT name, config, created FROM studies ORDER BY id")
        return [StudyInfo(name=n, config=json.loads(c), created=t) for n, c, t in rows]

    async def delete_study(self, name: str) -> None:
        await self._refresh_ids()
        sid = self._id(name)
        await self._transaction(
            [
                (f"DELETE FROM {table} WHERE study_id = ?", (sid,))
                for table in ("events", "checkpoints", "leases")
            ]
            + [("DELETE FROM studies WHERE id = ?", (sid,))]
        )
        del self._ids[name]
        self._next_seq.pop(sid, None)

    # ------------------------------------------------------------------ the log
    def append(self, name: str, events: Sequence[Event]) -> int:
        self._writable()
        sid = self._id(name)
        seq = self._next_seq.get(sid, 1)
        pending = self._pending
        for ev in events:
            pending.append(("e", _encode(sid, seq, ev)))
            if isinstance(ev, Checkpointed):
                pending.append(("c", (sid, ev.number, ev.step, _pickle_payload(ev.payload))))
            elif isinstance(ev, TrialEnded):
                pending.append(("d", (sid, ev.number)))
            seq += 1
        self._next_seq[sid] = seq
        self._seq += len(events)
        return self._seq

    def drop_checkpoint(self, name: str, number: int) -> int:
        self._writable()
        self._pending.append(("d", (self._id(name), number)))
        return self._seq

    @property
    def durable_seq(self) -> int:
        return self._durable

    async def flush(self, seq: int | None = None) -> None:
        if self.readonly and not self._pending:
            self._db()  # nothing can be pending on a read-only file: only check it is open
            return
        conn = self._writable()
        target = self._seq if seq is None else seq
        while self._durable < target or (seq is None and self._pending):
            if self._committing is not None:  # a leader is writing: wait for its outcome
                await self._committing.wait()
                continue
            self._committing = done = anyio.Event()
            # Let the tasks that are ready to run queue their events first (the trials that the
            # previous commit woke up all report again at once): one commit instead of two.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            batch, self._pending = self._pending, []
            last = self._seq
            try:
                assert self._write_lock is not None
                with anyio.CancelScope(shield=True):  # a batch is written whole, or not at all
                    async with self._write_lock:
                        if batch:
                            await self._write(conn, batch)
                self._durable = last
            except BaseException:
                self._pending[:0] = batch  # nothing of it was committed: keep it for a retry
                raise
            finally:
                self._committing = None
                done.set()

    async def _write(self, conn: aiosqlite.Connection, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            if len(batch) <= _ROWS_PER_STATEMENT and all(kind == "e" for kind, _ in batch):
                # The common batch, reports only: one multi-row INSERT, atomic on its own in
                # autocommit mode, so one round trip to the connection's thread.
                params = [value for _, row in batch for value in row]
                await conn.execute(_insert_rows(len(batch)), params)
                return
            # Consecutive rows of one kind go in one executemany; the order of kinds is kept.
            groups: list[tuple[str, list[tuple[Any, ...]]]] = []
            for kind, row in batch:
                if groups and groups[-1][0] == kind:
                    groups[-1][1].append(row)
                else:
                    groups.append((kind, [row]))
            sql = {"e": _INSERT_EVENT, "c": _UPSERT_CHECKPOINT, "d": _DELETE_CHECKPOINT}
        except sqlite3.Error as exc:
            raise _classify(exc, str(self.path)) from None
        async with self._immediate() as tx:
            for kind, rows in groups:
                await tx.executemany(sql[kind], rows)

    async def read_events(self, name: str) -> list[Event]:
        sid = self._id(name)
        rows = await self._all(
            "SELECT kind, number, step, value, time, data FROM events WHERE study_id = ? ORDER BY seq", (sid,)
        )
        decoded: list[Event] = await anyio.to_thread.run_sync(lambda: [_decode(r) for r in rows])
        return decoded

    async def read_values(self, name: str, number: int) -> dict[int, float]:
        sid = self._id(name)
        rows = await self._all(
            "SELECT step, value FROM events WHERE study_id = ? AND number = ? AND kind = ? ORDER BY seq",
            (sid, number, _REPORTED),
        )
        return {step: (math.nan if value is None else value) for step, value in rows}

    async def load_checkpoint(self, name: str, number: int) -> tuple[int, Any] | None:
        if self.readonly:
            raise StateError("a read-only storage never unpickles checkpoints (they can run code)")
        sid = self._id(name)
        await self.flush()
        row = await self._one(
            "SELECT step, payload FROM checkpoints WHERE study_id = ? AND number = ?", (sid, number)
        )
        if row is None:
            return None
        try:
            payload = await anyio.to_thread.run_sync(pickle.loads, row[1])
        except Exception as exc:  # a class that moved, a missing module: the file is fine
            raise StorageError(
                f"the checkpoint of trial {number} of study {name!r} could not be unpickled: {exc!r}; "
                "is the code that defined its classes importable?"
            ) from exc
        return int(row[0]), payload

    # ------------------------------------------------------------------ leases
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> None:
        await self._lease(name, holder, ttl, take=True)

    async def renew_lease(self, name: str, holder: str, ttl: float) -> None:
        await self._lease(name, holder, ttl, take=False)

    async def _lease(self, name: str, holder: str, ttl: float, *, take: bool) -> None:
        self._writable()
        sid = self._id(name)
        assert self._write_lock is not None
        if take:
            await self.flush()
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                async with self._immediate() as tx:
                    now = time.time()
                    rows = await tx.execute_fetchall(
                        "SELECT holder, expires FROM leases WHERE study_id = ?", (sid,)
                    )
                    row = next(iter(rows), None)
                    if row is not None and row[0] != holder and row[1] > now:
                        raise StudyLockedError(lease_message(name, row[0], row[1], now))
                    if row is not None and row[0] != holder and not take:
                        raise StudyLockedError(
                            f"study {name!r}: this runner's lease expired and {row[0]} took it over"
                        )
                    await tx.execute(_UPSERT_LEASE, (sid, holder, now + ttl))
                    if take:  # another process may have appended since this one opened
                        top = await tx.execute_fetchall(
                            "SELECT max(seq) FROM events WHERE study_id = ?", (sid,)
                        )
                        after_file = (next(iter(top))[0] or 0) + 1
                        self._next_seq[sid] = max(after_file, self._next_seq.get(sid, 1))

    async def release_lease(self, name: str, holder: str) -> None:
        sid = self._id(name)
        await self._transaction([("DELETE FROM leases WHERE study_id = ? AND holder = ?", (sid, holder))])


def parse_sqlite_url(url: str) -> SQLiteStorage:
    """``sqlite:///relative/or/absolute.db`` (three slashes; ``sqlite:////abs/path.db`` also works),
    with optional ``?synchronous=full``."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigError(f"a SQLite URL looks like 'sqlite:///path/to/file.db', got {url!r}")
    path, _, query = rest[1:].partition("?")
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        options[key] = value
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} in {url!r}; known: synchronous")
    sync = options.get("synchronous", "normal").lower()
    if sync not in ("normal", "full"):
        raise ConfigError(f"synchronous must be 'normal' or 'full', got {sync!r} in {url!r}")
    return SQLiteStorage(path, synchronous=sync)  # type: ignore[arg-type]
