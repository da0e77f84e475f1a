"""SQLite errors as the StorageErrors that tell the user what to do, and who holds a lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio.to_thread

from aio_ashb._exceptions import CorruptDatabaseError, NotADatabaseError, StorageError, StorageLocationError
from aio_ashb.storage import _owner
from aio_ashb.storage._schema import printable


def classify(exc: sqlite3.Error, path: Path, busy_timeout: float) -> StorageError:
    """A sqlite3 error as the StorageError that tells the user what to do."""
    where = str(path)
    text = printable(str(exc))
    if "file is not a database" in text:
        return NotADatabaseError(f"{where} is not a SQLite database; point aio_ashb at another file")
    if "malformed" in text or "corrupt" in text or "Could not decode" in text:
        return CorruptDatabaseError(
            f"{where} is damaged ({text}); restore it from a backup, or recover what is left: "
            f"sqlite3 {where} .recover"
        )
    if "full" in text:
        return StorageError(
            f"the disk holding {where} is full ({text}); nothing acknowledged was lost: free some "
            "space and run the study again"
        )
    if "readonly" in text or "read-only" in text:
        return StorageLocationError(
            f"{where} cannot be written ({text}); check the permissions of the file and its directory"
        )
    if "unable to open" in text:
        return StorageLocationError(f"cannot open {where} ({text}); check that its directory exists")
    if "locked" in text or "busy" in text:
        return StorageError(f"{where} stayed locked by another connection for {busy_timeout:g} s ({text}).")
    if "disk I/O error" in text:
        return StorageError(f"{where}: {text}; check the disk (is it full, or gone?)")
    return StorageError(f"SQLite error on {where}: {text}")


def open_error(exc: sqlite3.Error, path: Path, readonly: bool, busy_timeout: float) -> StorageError:
    """Why SQLite could not open the file."""
    if "unable to open" not in str(exc):
        return classify(exc, path, busy_timeout)
    if readonly:
        return StorageLocationError(f"cannot read {path} ({exc}); check its permissions")
    return StorageLocationError(
        f"cannot write {path}: {exc}; check the permissions of the file and its directory, or "
        "open it with SQLiteStorage(..., readonly=True)"
    )


async def who_locks(path: Path) -> str:
    """Who holds the write lock, and whether it is stopped (best effort, for the message)."""
    pids = await anyio.to_thread.run_sync(_owner.write_lock_holders, path)
    if not pids:
        return "Try again, or find the process that keeps it open."
    parts = []
    for pid in pids:
        stopped = _owner.state_letter(pid) in ("T", "t")
        parts.append(
            f"pid {pid} on this machine holds its write lock"
            + (
                f" and is stopped (SIGSTOP or Ctrl-Z): resume it with `kill -CONT {pid}`, or end it"
                if stopped
                else "; wait for it, or end it"
            )
        )
    return "; ".join(parts) + "."
