"""Fixtures for every test; shared helpers (the space, the loss, a study factory) are in
tests/helpers.py."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import aio_ashb as aa
from aio_ashb.storage._connection import THREAD_PREFIX
from tests.helpers import new_study


@pytest_asyncio.fixture
async def study() -> AsyncIterator[aa.Study]:
    """A study of the shared space in memory (tests/helpers.py ``new_study``), closed after."""
    async with await new_study() as made:
        yield made


@pytest.fixture(autouse=True)
def no_leaked_sqlite_threads() -> Iterator[None]:
    """Every SQLite connection a test opens is closed by the end of the test (an open one
    keeps its file open, and its thread, until the process ends)."""
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"{len(leaked)} SQLite connection(s) left open: {leaked}"
