from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from aio_ashb.storage._connection import THREAD_PREFIX


@pytest.fixture(autouse=True)
def no_leaked_sqlite_threads() -> Iterator[None]:
    """Every SQLite connection a test opens is closed by the end of the test (an open one
    keeps a thread alive, and the interpreter waits for it at exit)."""
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"{len(leaked)} SQLite connection(s) left open: {leaked}"
