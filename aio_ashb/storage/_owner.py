"""Who holds a study: this process's identity, and whether another holder still lives.

A lease row records the holder's pid, a *machine* key and the process's start time. When a lease
that has not expired names a process on this machine, its state decides: a process that is gone
(or a zombie, or a new process that reused the pid: its start time differs) cannot be running
the study, so its lease is taken over at once instead of after ``lease_ttl``. A lease from
another machine, or from a system without ``/proc``, is only ever trusted to its expiry.

The machine key is the host name, the kernel's boot id and the pid namespace: two containers on
one kernel see different processes under the same pid, so they must not judge each other's.
Linux only (``/proc``); elsewhere the key is ``None`` and leases simply expire.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

_PROC = Path("/proc")


class Liveness(Enum):
    DEAD = "dead"
    ALIVE = "alive"
    STOPPED = "stopped"  # SIGSTOP or Ctrl-Z: alive, holding whatever it held
    UNKNOWN = "unknown"  # another machine, or no /proc: trust the lease's expiry


@dataclass(frozen=True, slots=True)
class Owner:
    pid: int
    machine: str | None
    started: int | None  # the process's start time, in clock ticks since boot


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None or ")" not in text:
        return None
    return text[text.rindex(")") + 2 :].split()


def _machine() -> str | None:
    boot = _read(_PROC / "sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    if boot is None:
        return None
    return f"{socket.gethostname()}|{boot.strip()}|{namespace}"


_cache: tuple[int, Owner] | None = None


def this_process() -> Owner:
    """This process (computed again after a fork, when the pid changes)."""
    global _cache
    pid = os.getpid()
    if _cache is None or _cache[0] != pid:
        fields = _stat_fields(pid)
        started = int(fields[19]) if fields is not None and len(fields) > 19 else None
        _cache = (pid, Owner(pid, _machine(), started))
    return _cache[1]


def state_letter(pid: int) -> str | None:
    """The state of process ``pid`` on this machine ('R', 'S', 'T', 'Z'...), None if gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def liveness(owner: Owner) -> Liveness:
    """Whether ``owner`` (read from a lease row) can still be running."""
    me = this_process()
    if owner.machine is None or me.machine is None or owner.machine != me.machine:
        return Liveness.UNKNOWN
    fields = _stat_fields(owner.pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return Liveness.DEAD
    if owner.started is not None and len(fields) > 19 and int(fields[19]) != owner.started:
        return Liveness.DEAD  # the pid now belongs to another process
    return Liveness.STOPPED if fields[0] in ("T", "t") else Liveness.ALIVE


def write_lock_holders(path: Path) -> list[int]:
    """Pids that hold SQLite's write lock on the database at ``path`` (Linux, from /proc/locks).

    In WAL mode the writer locks byte 120 of the ``-shm`` file; in rollback mode, the RESERVED
    byte (0x40000001) of the database file. Empty when unknown."""
    targets: dict[int, set[int]] = {}
    for file, offset in ((Path(f"{path}-shm"), 120), (path, 0x40000001)):
        try:
            targets.setdefault(os.stat(file).st_ino, set()).add(offset)
        except OSError:
            continue
    text = _read(_PROC / "locks")
    if not targets or text is None:
        return []
    pids: list[int] = []
    for line in text.splitlines():
        parts = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"
        if len(parts) < 8 or parts[1] != "POSIX" or parts[3] != "WRITE":
            continue
        try:
            pid, inode, start = int(parts[4]), int(parts[5].rsplit(":", 1)[1]), int(parts[6])
        except ValueError:
            continue
        if start in targets.get(inode, ()) and pid not in pids:
            pids.append(pid)
    return pids
