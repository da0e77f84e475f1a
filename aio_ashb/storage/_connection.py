"""One SQLite connection on a daemon thread of its own; every call runs there whole.

Why not aiosqlite (which the first version used): it sends each statement to its thread
separately, so a transaction spans several awaits, and a plain ``Task.cancel()`` between them
left the connection inside an open transaction (anyio's shields do not stop asyncio's own
cancellation); and its thread is not a daemon, so a script that never closed its study never
exited. Here a *job* is a function of the ``sqlite3.Connection``: a whole transaction, with its
``BEGIN``, its reads and its ``COMMIT`` or ``ROLLBACK``, runs as one job, in order with the
others, and the task that awaits it always learns how it ended, even when it is cancelled
meanwhile (the cancellation is re-raised once the job is done). Cancellation can therefore
never split a transaction or leave one open, and the bookkeeping of what is committed is exact.

The thread is a daemon: at interpreter exit it is simply stopped, which SQLite is built for (a
transaction that did not reach ``COMMIT`` is rolled back when the file is next opened; every
committed one is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

#: Threads of open connections are named so (tests look for leaks by this prefix).
THREAD_PREFIX = "aio_ashb sqlite"


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Connection:
    """A ``sqlite3.Connection`` owned by one daemon thread; :meth:`run` sends it a job."""

    def __init__(self, label: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.Future[Any], Job] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"{THREAD_PREFIX} {label}", daemon=True)
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Start the thread and connect there (sqlite3 errors are raised as they are)."""
        self._thread.start()
        try:
            await self.run(lambda _db: self._connect(connect))
        except BaseException:
            await self.close()
            raise

    def _connect(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._db = connect()

    def _serve(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                break
            future, job = item
            try:
                value, ok = job(self._db), True  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                future.get_loop().call_soon_threadsafe(_settle, future, ok, value)
            del item, future, job, value

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job(connection)`` on the thread and return what it returned (or raise what it
        raised). The job always runs to its end: if the awaiting task is cancelled meanwhile
        (by anyio or by a plain ``Task.cancel()``), this waits for the job, then re-raises the
        cancellation."""
        if self._closed:
            raise RuntimeError("the connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, job))
        cancelled = False
        with anyio.CancelScope(shield=True):  # anyio's cancellation waits for the outcome...
            while not future.done():
                try:
                    await asyncio.shield(future)
                except asyncio.CancelledError:  # ...and so does asyncio's (Task.cancel())
                    cancelled = True
        if cancelled:
            raise asyncio.CancelledError("cancelled while a SQLite job ran; the job completed")
        return future.result()

    async def close(self) -> None:
        """Finish the queued jobs, close the connection and end the thread."""
        if self._closed:
            return
        if self._thread.is_alive():
            with anyio.CancelScope(shield=True):
                await self.run(self._disconnect)
        self._closed = True
        self._jobs.put(None)

    def _disconnect(self, db: sqlite3.Connection | None) -> None:
        if db is not None:
            self._db = None
            db.close()
