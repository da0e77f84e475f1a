"""Storage backends: an append-only event log per study (see :class:`Storage`).

A backend implements :class:`Storage` over the events of :mod:`aio_ashb.events`;
:func:`open_storage` turns a storage URL into a backend.
"""

from __future__ import annotations

from aio_ashb._exceptions import ConfigError
from aio_ashb.storage._base import Storage, StudyInfo
from aio_ashb.storage._memory import MemoryStorage
from aio_ashb.storage._sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "StudyInfo", "open_storage"]


def open_storage(url: str, *, create: bool = True) -> Storage:
    """The storage a URL names: ``"memory://"`` (also ``"memory"``, ``":memory:"``) for a new
    :class:`MemoryStorage`, ``"sqlite:///path/to/file.db"`` (relative; four slashes for an
    absolute path; ``?synchronous=full`` optional) for a :class:`SQLiteStorage`. With
    ``create=False`` a missing SQLite file is never created. The storage is not opened yet."""
    if url in ("memory", "memory://", ":memory:"):
        return MemoryStorage()
    if url.startswith("sqlite://"):
        return parse_sqlite_url(url, create=create)
    raise ConfigError(
        f"unsupported storage {url!r}; pass a Storage object, None, 'memory://' or 'sqlite:///path/to/file.db'"
    )


def parse_sqlite_url(url: str, *, create: bool = True) -> SQLiteStorage:
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
    return SQLiteStorage(path, synchronous=sync, create=create)  # type: ignore[arg-type]
