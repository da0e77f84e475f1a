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

Next to an event loop that never idles the thread would starve for the GIL: each job is
counted by the loop's GIL handover (``aio_ashb/_handover.py``), which blocks the loop briefly
while jobs are late.
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

from aio_ashb._handover import Handover, handover

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

#: Threads of open connections are named so (tests look for leaks by this prefix).
THREAD_PREFIX = "aio_ashb sqlite"


class _Job:
    """One call: the function, then how it ended (set on the event loop's thread)."""

    __slots__ = ("fn", "future", "waiter", "done", "ok", "value", "handover")

    def __init__(self, fn: Job, future: asyncio.Future[None], handover: Handover) -> None:
        self.fn = fn
        self.future = future  # what the caller awaits
        self.handover = handover  # the sending loop's, which counts the job
        self.waiter: asyncio.Future[None] | None = None  # what it awaits once cancelled
        self.done = False
        self.ok = False
        self.value: Any = None


def _finish(job: _Job, ok: bool, value: Any) -> None:
    """On the loop: record the outcome, then wake whoever waits for it."""
    job.done, job.ok, job.value = True, ok, value
    for future in (job.future, job.waiter):
        if future is not None and not future.done():
            future.set_result(None)
    job.handover.back()


class Connection:
    """A ``sqlite3.Connection`` owned by one daemon thread; :meth:`run` sends it a job."""

    def __init__(self, label: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
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
            job = self._jobs.get()
            if job is None:
                break
            try:
                value, ok = job.fn(self._db), True  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                job.future.get_loop().call_soon_threadsafe(_finish, job, ok, value)
            # Only once the outcome is on its way: until then this thread needs the GIL, and a
            # job counted as done would no longer be handed it.
            job.handover.ran()
            del job, value

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread and return what it returned (or raise what it
        raised). The job always runs to its end: if the awaiting task is cancelled meanwhile
        (by anyio or by a plain ``Task.cancel()``), this waits for the job, then re-raises the
        cancellation."""
        if self._closed:
            raise RuntimeError("the connection is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), handover())
        job.handover.sent()  # (before the put: the thread's ran() must come after it)
        self._jobs.put(job)
        try:
            await job.future
        except asyncio.CancelledError:
            # The job runs on regardless: wait for its outcome, against anyio's cancellation
            # (the shield) and asyncio's (each Task.cancel() cancels one waiter, not the job).
            with anyio.CancelScope(shield=True):
                while not job.done:
                    job.waiter = loop.create_future()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job.waiter
            raise
        if not job.ok:
            raise job.value
        result: T = job.value
        return result

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
