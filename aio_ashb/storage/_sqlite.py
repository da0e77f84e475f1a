"""Durable studies in one SQLite file: an event log written by group commit.

One connection, on a daemon thread of its own (``_connection``), does all the work of a storage;
every transaction is one job there, so cancelling the task that waits for it can neither split
it nor leave it open. ``append`` only encodes events into rows and queues them; ``flush`` makes
them durable. Flushes elect a leader: the first caller writes everything queued so far in one
transaction, while later callers wait for it and, if their events arrived during that commit,
the next of them leads the next transaction (group commit, without a background task).

Safety rules, each learnt the hard way (docs/storage.md has the guarantees they give):

* This module never opens, closes or reads the database, ``-wal`` or ``-shm`` files itself:
  on POSIX, closing *any* descriptor of a file drops every lock the process holds on it,
  SQLite's included, and another connection may then delete the WAL under our writer. SQLite
  creates the file; diagnostics use ``stat``/``access`` only.
* Every write transaction of a study whose lease this storage holds checks that the lease is
  still its own (a fence): a runner that was stopped past its lease and then woke up can never
  write into a study another runner has taken over.
* Before each commit the file's identity (device, inode) is compared with the path's: if the
  file was removed (or replaced) under the runner, the commit fails instead of writing into a
  file nobody will ever see.
* A writable open verifies the file (``PRAGMA quick_check``, about 8 ms per MB, on the
  connection's thread) and refuses to write into a damaged one.

Checkpoints are pickled into the ``checkpoints`` table by ``prepare_checkpoint``, which the runner
calls in a worker thread before it appends them. Unpickling runs code chosen by whoever wrote the
file, so only ``load_checkpoint`` unpickles, and a storage opened with ``readonly=True`` refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import pickle
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import anyio

from aio_ashb._core import Checkpointed, Event, TrialEnded
from aio_ashb._exceptions import (
    ConfigError,
    CorruptDatabaseError,
    DuplicateStudyError,
    NotADatabaseError,
    ReportError,
    SchemaVersionError,
    StateError,
    StorageError,
    StorageLocationError,
    StudyLockedError,
    StudyNotFoundError,
)
from aio_ashb._handover import to_thread
from aio_ashb.storage import _owner, _reads
from aio_ashb.storage import _schema as schema
from aio_ashb.storage._base import Storage, StudyInfo, lease_message
from aio_ashb.storage._connection import Connection
from aio_ashb.storage._diagnose import classify, open_error, who_locks
from aio_ashb.storage._fence import Fences
from aio_ashb.storage._jobs import (
    Entry,
    FileGone,
    Outcome,
    lease_row,
    owner_of,
    reclaim,
    snapshot,
    transaction,
    write_rows,
)
from aio_ashb.storage._schema import (
    APPLICATION_ID,
    OLDEST_READABLE,
    REPORTED,
    SCHEMA_VERSION,
    SELECT_EVENTS,
    UPSERT_LEASE,
    decode_all,
    encode,
    printable,
)

T = TypeVar("T")


class Pickled:
    """A checkpoint payload already pickled (``prepare_checkpoint``, in a worker thread): stored
    as is by ``append``."""

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


class SQLiteStorage(Storage):
    """Studies in one SQLite file (created if missing), durable across crashes.

    ``synchronous="normal"`` (default) keeps every committed event through a crash of the process;
    ``"full"`` also through a power cut or an OS crash. ``readonly=True`` opens the file for
    reading only (the CLI and dashboards): it never writes, never migrates and never unpickles.
    ``create=False`` refuses to create a missing file (what :func:`load_study` does).
    ``busy_timeout`` (seconds) is how long a write waits for another connection's lock.
    Selected by ``storage="sqlite:///path/to/file.db"`` too.
    """

    pickles_checkpoints = True

    def prepare_checkpoint(self, number: int, payload: Any) -> Any:
        if isinstance(payload, Pickled):
            return payload
        try:
            return Pickled(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # pickling runs user code (__reduce__): anything can come out
            raise ReportError(f"the checkpoint of trial {number} cannot be pickled: {exc!r}") from exc

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["normal", "full"] = "normal",
        readonly: bool = False,
        busy_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ConfigError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        if not isinstance(busy_timeout, (int, float)) or not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be a number >= 0, got {busy_timeout!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.readonly = readonly
        self.busy_timeout = float(busy_timeout)
        self.create = create and not readonly
        self._conn: Connection | None = None
        self._closed = False
        self._opening: anyio.Event | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the open file
        self._blank = False  # an empty file opened without creating: no tables, no studies
        self._broken: StorageError | None = None  # the file was removed: every write fails
        self._ids: dict[str, int] = {}  # study name -> id
        self._next_seq: dict[int, int] = {}  # study id -> next per-study seq in the file
        self._snapshots_queued = False  # a snapshot entry is in _pending (see flush)
        self._pending: list[Entry] = []  # queued, not yet written, in append order
        self._seq = 0  # appended so far (this process)
        self._durable = 0  # committed so far
        # While a group commit's leader writes: the futures its followers wait on (bare
        # futures, not an anyio Event: every durable report waits here, and anyio's Event cost
        # as much as the rest of the wait; a follower cancelled cancels only its own).
        self._committing: list[asyncio.Future[None]] | None = None
        self._fences = Fences()  # the leases held, and the events of lost ones

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
        path, where = self.path, str(self.path)
        if path.is_dir():
            raise StorageLocationError(f"{where} is a directory, not a database file")
        if not path.parent.is_dir():
            raise StorageLocationError(
                f"cannot create {where}: directory {str(path.parent)!r} does not exist; create it first"
            )
        if not path.exists() and not self.create:
            raise StorageLocationError(f"{where} does not exist")
        mode = "ro" if self.readonly else "rwc" if self.create else "rw"
        # Percent-encoded: '#', '?' and '%' in a file name are taken literally.
        uri = f"file:{quote(str(path.absolute()))}?mode={mode}"
        conn = Connection(path.name)
        try:
            await conn.open(
                partial(sqlite3.connect, uri, uri=True, timeout=self.busy_timeout, isolation_level=None)
            )
        except sqlite3.Error as exc:
            raise open_error(exc, self.path, self.readonly, self.busy_timeout) from None
        self._conn = conn
        try:
            st = os.stat(path)
            self._identity = (st.st_dev, st.st_ino)
            await self._prepare()
        except BaseException:
            self._conn = None
            await conn.close()
            raise

    async def _prepare(self) -> None:
        tables, app_id, version = await self._call(schema.inspect)
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
        if not tables and (self.readonly or not self.create):
            # An empty file (a 0-byte file is a valid, empty database): it holds no studies, and
            # a storage that may not create one leaves it as it is.
            self._blank = True
            return
        if self.readonly:
            if version < OLDEST_READABLE:
                raise SchemaVersionError(f"{self.path} has schema version {version}; it cannot be read")
        else:
            await self._call(partial(schema.configure, synchronous=self.synchronous, new=not tables))
            if tables:
                await self._verify()
            if version < SCHEMA_VERSION and await self._write(schema.migrate):
                # A file from before space was reclaimed: switch it over once (VACUUM rewrites
                # it). Another connection's open read transaction makes that fail: then it waits.
                with contextlib.suppress(StorageError):
                    await self._call(schema.vacuum)
        ids, tops = await self._call(partial(snapshot, body=schema.studies_and_ends))
        self._ids = {name: sid for sid, name in ids}
        self._next_seq = {sid: top + 1 for sid, top in tops}

    async def _verify(self) -> None:
        try:
            problems = await self._call(schema.quick_check)
            found = "; ".join(printable(p, 120) for p in problems)
        except CorruptDatabaseError as exc:  # too damaged even to be checked
            problems, found = [], printable(str(exc.__cause__ or exc), 120)
        if problems != ["ok"]:
            raise CorruptDatabaseError(
                f"{self.path} is damaged (SQLite's quick_check: {found}); aio_ashb will not write into "
                f"it. Restore it from a backup, or recover what is left: sqlite3 {self.path} .recover"
            )

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._conn is not None and not self.readonly and self._broken is None:
                await self.flush()
                with contextlib.suppress(StorageError):
                    await self._call(partial(reclaim, everything=True))
        finally:
            self._closed = True
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()

    def _connection(self) -> Connection:
        if self._closed:
            raise StateError(f"{self!r} is closed")
        if self._conn is None:
            raise StateError(f"{self!r} is not open; use `async with` or await open()")
        return self._conn

    def _writable(self) -> Connection:
        conn = self._connection()
        if self.readonly:
            raise StateError(f"{self!r} was opened read-only")
        if self._broken is not None:
            raise self._broken
        return conn

    # ------------------------------------------------------------------ jobs and errors
    async def _call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on the connection's thread; driver errors become StorageErrors."""
        conn = self._connection()
        try:
            return await conn.run(job)
        except sqlite3.Error as exc:
            error = classify(exc, self.path, self.busy_timeout)
            if "locked" in str(exc) or "busy" in str(exc):
                error = StorageError(f"{error} {await who_locks(self.path)}")
            raise error from None
        except FileGone as exc:
            self._broken = StorageError(
                f"{self.path} was {exc} while this storage had it open; what was committed before "
                "went with it, and nothing more can be written. The run stops"
            )
            raise self._broken from None

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body`` in one write transaction, checked against removal of the file."""
        self._writable()
        return await self._call(partial(transaction, body=body, check=self._check_file))

    def _check_file(self) -> None:
        """On the connection's thread, before a commit: is the path still our file?"""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise FileGone("removed (or its directory was)") from None
        except OSError:
            return  # unreadable directory: SQLite itself will say what is wrong
        if (st.st_dev, st.st_ino) != self._identity:
            raise FileGone("replaced by another file")

    # ------------------------------------------------------------------ studies
    def _id(self, name: str) -> int:
        self._connection()
        try:
            return self._ids[name]
        except KeyError:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path}") from None

    def _name_of(self, sid: int) -> str:
        return next((n for n, i in self._ids.items() if i == sid), f"#{sid}")

    async def _refresh_ids(self) -> None:
        if self._blank:
            return
        rows = await self._call(lambda db: db.execute("SELECT id, name FROM studies").fetchall())
        self._ids = {name: sid for sid, name in rows}

    def _info(self, row: tuple[Any, ...]) -> StudyInfo:
        name, config, created = row
        try:
            parsed = json.loads(config)
            if not isinstance(parsed, dict):
                raise TypeError(f"a {type(parsed).__name__}, not an object")
        except (ValueError, TypeError) as exc:
            raise CorruptDatabaseError(
                f"study {printable(name)!r} in {self.path} has a malformed configuration "
                f"({printable(str(exc))})"
            ) from None
        return StudyInfo(name=name, config=parsed, created=created)

    async def create_study(self, name: str, config: Mapping[str, Any]) -> StudyInfo:
        self._writable()
        if self._blank:
            raise StorageLocationError(f"{self.path} is empty and this storage may not create studies in it")
        created = time.time()
        text = json.dumps(config)

        def insert(db: sqlite3.Connection) -> int | None:
            try:
                cursor = db.execute(
                    "INSERT INTO studies (name, config, created) VALUES (?,?,?)", (name, text, created)
                )
            except sqlite3.IntegrityError:
                return None
            return cursor.lastrowid

        sid = await self._write(insert)
        if sid is None:
            raise DuplicateStudyError(
                f"a study named {name!r} already exists in {self.path}; "
                "pass load_if_exists=True to continue it"
            )
        self._ids[name] = sid
        self._next_seq[sid] = 1
        return StudyInfo(name=name, config=dict(config), created=created)

    async def get_study(self, name: str) -> StudyInfo:
        self._connection()
        if self._blank:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path} (the file is empty)")
        row = await self._call(
            lambda db: db.execute(
                "SELECT name, config, created FROM studies WHERE name = ?", (name,)
            ).fetchone()
        )
        if row is None:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path}")
        if name not in self._ids:
            await self._refresh_ids()
        return self._info(row)

    async def list_studies(self) -> list[StudyInfo]:
        self._connection()
        if self._blank:
            return []
        rows = await self._call(
            lambda db: db.execute("SELECT name, config, created FROM studies ORDER BY id").fetchall()
        )
        return [self._info(r) for r in rows]

    async def delete_study(self, name: str) -> None:
        self._writable()
        await self._refresh_ids()
        sid = self._id(name)

        def delete(db: sqlite3.Connection) -> None:
            row = lease_row(db, sid)
            now = time.time()
            if (
                row is not None
                and row[1] > now
                and _owner.liveness(owner_of(row)) is not _owner.Liveness.DEAD
            ):
                raise StudyLockedError(lease_message(name, row[0], row[1], now))
            for table in ("events", "checkpoints", "leases", "snapshots"):
                db.execute(f"DELETE FROM {table} WHERE study_id = ?", (sid,))
            db.execute("DELETE FROM studies WHERE id = ?", (sid,))

        await self._write(delete)
        del self._ids[name]
        self._next_seq.pop(sid, None)
        self._fences.held.pop(sid, None)
        self._pending = [e for e in self._pending if e[1][0] != sid]
        with contextlib.suppress(StorageError):
            await self._call(reclaim)

    # ------------------------------------------------------------------ the log
    def append(self, name: str, events: Sequence[Event]) -> int:
        self._writable()
        sid = self._id(name)
        if sid in self._fences.lost:  # its lease was taken: never written (flush says so)
            for _ in events:
                self._seq += 1
                self._fences.drop(sid, self._seq)
            return self._seq
        seq = self._next_seq.get(sid, 1)
        g = self._seq
        entries: list[Entry] = []  # built whole first: a payload that fails to pickle queues nothing
        for ev in events:
            g += 1
            entries.append(("e", encode(sid, seq, ev), g))
            if isinstance(ev, Checkpointed):
                entries.append(("c", (sid, ev.number, ev.step, _pickle_payload(ev.payload)), 0))
            elif isinstance(ev, TrialEnded):
                entries.append(("d", (sid, ev.number), 0))
            seq += 1
        self._pending.extend(entries)
        self._next_seq[sid] = seq
        self._seq = g
        return g

    @property
    def keeps_snapshots(self) -> bool:
        return not self.readonly

    def save_snapshot(self, name: str, blob: bytes) -> None:
        self._writable()
        sid = self._id(name)
        seq = self._next_seq.get(sid, 1) - 1  # the study's last event appended (or in the file)
        if seq >= 1 and sid not in self._fences.lost:
            self._pending.append(("s", (sid, seq, blob), 0))
            self._snapshots_queued = True

    def drop_checkpoint(self, name: str, number: int) -> int:
        self._writable()
        self._pending.append(("d", (self._id(name), number), 0))
        return self._seq

    @property
    def durable_seq(self) -> int:
        # Never past an event that was dropped (its study's lease was lost): whoever waits for
        # it must call flush(), which raises the reason, instead of taking it as durable.
        return self._fences.durable(self._durable)

    async def flush(self, seq: int | None = None) -> None:
        if self.readonly:
            self._connection()  # nothing can be pending on a read-only file: only check it is open
            return
        self._writable()
        target = self._seq if seq is None else seq
        while self._durable < target or (seq is None and self._pending):
            if self._committing is not None:  # a leader is writing: wait for its outcome
                wake = asyncio.get_running_loop().create_future()
                self._committing.append(wake)
                await wake
                continue
            followers: list[asyncio.Future[None]] = []
            self._committing = followers
            batch: list[Entry] | None = None
            snapshots: list[Entry] = []
            outcome = Outcome()
            last = self._seq
            try:
                # Let the tasks that are ready to run queue their events first (the trials that
                # the previous commit woke up all report again at once): one commit, not two.
                # Not shielded: a leader cancelled here commits nothing and hands over (finally),
                # as a plain Task.cancel() did under anyio's shield; its events stay pending.
                await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                last = self._seq
                if self._snapshots_queued:  # (a flag: the report path does not scan its batch)
                    self._snapshots_queued = False
                    snapshots = [e for e in batch if e[0] == "s"]
                    batch = [e for e in batch if e[0] != "s"]
                if batch:
                    await self._commit(batch, outcome)
            finally:
                if batch is not None:
                    if outcome.committed or not batch:
                        self._durable = max(self._durable, last)
                        for sid, holder in outcome.fenced.items():
                            self._lose(sid, holder, batch)
                    else:  # nothing of it was committed: keep it for the next attempt
                        self._pending[:0] = batch
                        snapshots = []  # (a newer one will come)
                self._committing = None
                for wake in followers:
                    if not wake.done():  # (done: that follower was cancelled)
                        wake.set_result(None)
            if snapshots:
                await self._write_snapshots(snapshots)
        error = None if seq is None else self._fences.error_for(seq)
        if error is not None:
            raise error

    async def _write_snapshots(self, entries: list[Entry]) -> None:
        """Snapshots (the latest of each study), in a transaction of their own, after the events
        they reflect were committed: a snapshot is megabytes where events are bytes, and one
        that does not fit (a full disk) must never hold the events back. One that cannot be
        written is dropped: readers use the previous one, or the log. Only studies whose lease
        this storage holds get one, and the write is fenced as events are."""
        latest = {e[1][0]: e for e in entries if e[1][0] in self._fences.held}
        if latest:
            with contextlib.suppress(StorageError):
                await self._commit(list(latest.values()), Outcome())

    async def _commit(self, batch: list[Entry], outcome: Outcome) -> None:
        fences = self._fences.expected({e[1][0] for e in batch})

        def body(db: sqlite3.Connection) -> None:
            for sid, holder in fences.items():  # the fence: is each lease still ours?
                row = lease_row(db, sid)
                if row is None or row[0] != holder:
                    outcome.fenced[sid] = None if row is None else row[0]
            write_rows(
                db, batch if not outcome.fenced else [e for e in batch if e[1][0] not in outcome.fenced]
            )

        frees = any(e[0] != "e" for e in batch)

        def job(db: sqlite3.Connection) -> None:
            transaction(db, body, self._check_file)
            outcome.committed = True
            if frees:  # checkpoints replaced or dropped: maybe give the space back
                with contextlib.suppress(sqlite3.Error):
                    reclaim(db)

        await self._call(job)

    def _lose(self, sid: int, holder: str | None, pending: Sequence[Entry] = ()) -> None:
        """This storage no longer holds the lease of study ``sid``: its events that were not
        written never will be (``flush`` raises for them), nor will any appended later."""
        self._fences.lose(sid, self._name_of(sid), holder, [*pending, *self._pending])
        self._pending = [e for e in self._pending if e[1][0] != sid]

    async def read_events(self, name: str) -> list[Event]:
        sid = self._id(name)
        where = f"study {name!r} in {self.path}"
        # Decoded on the connection's thread: a long log is not parsed on the event loop.
        return await self._call(lambda db: decode_all(db.execute(SELECT_EVENTS, (sid,)).fetchall(), where))

    async def _read_study(
        self, name: str, body: Callable[[sqlite3.Connection, int, str], T]
    ) -> tuple[StudyInfo, T]:
        """The study ``name`` and ``body(db, study id, where)``, from one read transaction."""
        self._connection()
        if self._blank:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path} (the file is empty)")
        where = f"study {name!r} in {self.path}"

        def read(db: sqlite3.Connection) -> tuple[tuple[Any, ...], T] | None:
            row = _reads.study_row(db, name)
            return None if row is None else (row, body(db, row[0], where))

        found = await self._call(partial(snapshot, body=read))
        if found is None:
            raise StudyNotFoundError(f"no study named {name!r} in {self.path}")
        row, result = found
        self._ids[name] = row[0]
        return self._info(row[1:]), result

    async def read_study(self, name: str) -> tuple[StudyInfo, list[Event]]:
        return await self._read_study(
            name, lambda db, sid, where: decode_all(db.execute(SELECT_EVENTS, (sid,)).fetchall(), where)
        )

    async def read_events_after(self, name: str, after: int) -> tuple[StudyInfo, int, list[Event]]:
        """The study, the sequence number (in the file, per study) of its last event, and its
        events after sequence number ``after``, from one snapshot: a reader that keeps the
        returned number and passes it back reads each event once (the dashboard). Read-only."""
        info, (last, events) = await self._read_study(
            name, lambda db, sid, where: _reads.tail(db, sid, after, where)
        )
        return info, last, events

    async def read_from_snapshot(
        self, name: str
    ) -> tuple[StudyInfo, tuple[int, bytes] | None, int, list[Event]]:
        def read(db: sqlite3.Connection, sid: int, where: str) -> tuple[Any, int, list[Event]]:
            state = _reads.latest_snapshot(db, sid)
            return (state, *_reads.tail(db, sid, state[0] if state else 0, where))

        info, (state, last, events) = await self._read_study(name, read)
        return info, state, last, events

    # Readers' queries (the dashboard's): see _reads. Read-only.
    async def read_trial_events(self, name: str, numbers: Sequence[int], upto: int) -> dict[int, list[Event]]:
        """The events of the trials ``numbers`` up to sequence number ``upto``, per trial (found
        through the per-trial index: a reader restored from a snapshot loads the curves it shows,
        not the whole log)."""
        sid, where = self._id(name), f"study {name!r} in {self.path}"
        return await self._call(lambda db: _reads.trial_events(db, sid, numbers, upto, where))

    async def event_time(self, name: str, seq: int) -> float | None:
        """The time of event ``seq`` of study ``name`` (None if there is none)."""
        sid = self._id(name)
        return await self._call(lambda db: _reads.event_time(db, sid, seq))

    async def trials_active(self, name: str, upto: int, events: int) -> list[int]:
        """See ``_reads.trials_active``."""
        sid = self._id(name)
        return await self._call(lambda db: _reads.trials_active(db, sid, upto, events))

    async def read_reports_summary(
        self, name: str, upto: int, maximize: bool
    ) -> tuple[int, list[tuple[float, float]], list[tuple[int, int]]]:
        """See ``_reads.reports_summary``: scans of the log (seconds for millions of events), on
        the connection's thread, which does not hold the GIL while SQLite works: the event loop
        is not slowed. The study is looked up afresh (this may be a second connection, opened
        before the study was created)."""
        await self._refresh_ids()
        sid = self._id(name)
        return await self._call(
            partial(snapshot, body=lambda db: _reads.reports_summary(db, sid, upto, maximize))
        )

    async def read_values(self, name: str, number: int) -> dict[int, float]:
        sid = self._id(name)
        rows = await self._call(
            lambda db: db.execute(
                "SELECT step, value FROM events WHERE study_id = ? AND number = ? AND kind = ? ORDER BY seq",
                (sid, number, REPORTED),
            ).fetchall()
        )
        return {step: (math.nan if value is None else value) for step, value in rows}

    async def load_checkpoint(self, name: str, number: int) -> tuple[int, Any] | None:
        if self.readonly:
            raise StateError("a read-only storage never unpickles checkpoints (they can run code)")
        sid = self._id(name)
        await self.flush()
        row = await self._call(
            lambda db: db.execute(
                "SELECT step, payload FROM checkpoints WHERE study_id = ? AND number = ?", (sid, number)
            ).fetchone()
        )
        if row is None:
            return None
        try:
            payload = await to_thread(pickle.loads, row[1])
        except Exception as exc:  # a class that moved, a missing module: the file is fine
            raise StorageError(
                f"the checkpoint of trial {number} of study {name!r} could not be unpickled: {exc!r}; "
                "is the code that defined its classes importable?"
            ) from exc
        return int(row[0]), payload

    # ------------------------------------------------------------------ leases
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> None:
        sid = self._id(name)
        await self.flush()
        me = _owner.this_process()

        def take(db: sqlite3.Connection) -> int:
            row = lease_row(db, sid)
            now = time.time()
            if row is not None and row[0] != holder and row[1] > now:
                alive = _owner.liveness(owner_of(row))
                if alive is not _owner.Liveness.DEAD:  # a dead process on this machine runs nothing
                    message = lease_message(name, row[0], row[1], now)
                    if alive is _owner.Liveness.STOPPED:
                        message += (
                            f" Its process is stopped (SIGSTOP or Ctrl-Z): `kill -CONT {row[2]}` resumes it."
                        )
                    raise StudyLockedError(message)
            db.execute(UPSERT_LEASE, (sid, holder, now + ttl, me.pid, me.machine, me.started))
            top = db.execute("SELECT max(seq) FROM events WHERE study_id = ?", (sid,)).fetchone()[0]
            return (top or 0) + 1

        after_file = await self._write(take)
        # Another process may have appended since this one opened.
        self._next_seq[sid] = max(after_file, self._next_seq.get(sid, 1))
        self._fences.hold(sid, holder)

    async def renew_lease(self, name: str, holder: str, ttl: float) -> None:
        sid = self._id(name)
        if sid in self._fences.lost:
            raise self._fences.lost[sid]

        def renew(db: sqlite3.Connection) -> tuple[bool, str | None]:
            # Compare and swap: only a lease that is still this holder's is extended; one that was
            # taken over, or released by the runner that took over, is never re-created.
            done = db.execute(
                "UPDATE leases SET expires = ? WHERE study_id = ? AND holder = ?",
                (time.time() + ttl, sid, holder),
            ).rowcount
            row = None if done else lease_row(db, sid)
            return bool(done), (None if row is None else row[0])

        renewed, other = await self._write(renew)
        if not renewed:
            self._lose(sid, other)
            raise self._fences.lost[sid]

    async def release_lease(self, name: str, holder: str) -> None:
        sid = self._id(name)
        if self._fences.holds(sid, holder):
            # Never give the study up with events of it still unwritten: another runner could
            # take over, and they would interleave with its own.
            await self.flush()
        await self._write(
            lambda db: db.execute("DELETE FROM leases WHERE study_id = ? AND holder = ?", (sid, holder))
        )
        self._fences.release(sid, holder)
