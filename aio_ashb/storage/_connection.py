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

The GIL handover. CPython's ``sqlite3`` releases the GIL around each SQLite call, so the thread
must take it back many times per job. A loop that is never idle (an application computing
between its awaits) releases the GIL at every turn, in its ``select`` with a timeout of 0, and
takes it back at once. Each release wakes the waiting thread, which mostly finds the GIL taken
again, and restarts the 5 ms wait after which CPython would ask the holder to drop it: that wait
never runs out. The thread gets the GIL only when it happens to win that race: a durable study
made no commit for seconds at a time (``bench/embedded.py``). So while jobs are out, a loop
timer blocks the loop on the thread's "no job left" event for up to half a millisecond, at
growing intervals: a job that only waits on the disk costs the loop a few percent, and a
starving thread gets the GIL.
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

#: Whether the loop hands the GIL over to a connection's thread whose job is late (see the
#: module's docstring). Only ``bench/embedded.py`` turns it off, to show what it prevents.
HAND_OVER = True
#: A job out this long (s) gets its first handover; the interval then doubles up to the last.
_HANDOVER_FIRST = 0.001
_HANDOVER_LAST = 0.016
#: How long (s) the loop blocks at most per handover.
_HANDOVER_WAIT = 0.0005


class _Job:
    """One call: the function, then how it ended (set on the event loop's thread)."""

    __slots__ = ("fn", "future", "waiter", "done", "ok", "value", "epoch")

    def __init__(self, fn: Job, future: asyncio.Future[None]) -> None:
        self.fn = fn
        self.future = future  # what the caller awaits
        self.waiter: asyncio.Future[None] | None = None  # what it awaits once cancelled
        self.done = False
        self.ok = False
        self.value: Any = None
        self.epoch = 0  # the connection's epoch it was counted in (see Connection.run)


class Connection:
    """A ``sqlite3.Connection`` owned by one daemon thread; :meth:`run` sends it a job."""

    def __init__(self, label: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"{THREAD_PREFIX} {label}", daemon=True)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        # The handover: jobs sent and not yet finished (counted on the loop), the timer, and
        # an event the thread sets whenever its queue is empty.
        self._unfinished = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop they are counted on
        self._epoch = 0  # one per loop the connection was used from, in turn
        self._idle = threading.Event()
        self._idle.set()

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
            # Set, then look: a job put meanwhile is either seen here or cleared by its put
            # (the other order let a put and clear fall between the look and the set).
            self._idle.set()
            if not self._jobs.empty():
                self._idle.clear()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                job.future.get_loop().call_soon_threadsafe(self._finish, job, ok, value)
            del job, value

    def _finish(self, job: _Job, ok: bool, value: Any) -> None:
        """On the loop: record the outcome, then wake whoever waits for it."""
        job.done, job.ok, job.value = True, ok, value
        for future in (job.future, job.waiter):
            if future is not None and not future.done():
                future.set_result(None)
        if job.epoch != self._epoch:  # counted on a loop the connection has left
            return
        self._unfinished -= 1
        if not self._unfinished and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_over(self, interval: float, epoch: int) -> None:
        """On the loop, while jobs are out: give the thread the GIL until it has no job left,
        or for ``_HANDOVER_WAIT`` at most; then again after twice the interval."""
        if epoch != self._epoch:  # a timer of a loop the connection has left: let it end
            return
        self._idle.wait(_HANDOVER_WAIT)
        interval = min(2 * interval, _HANDOVER_LAST)
        self._timer = asyncio.get_running_loop().call_later(interval, self._hand_over, interval, epoch)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread and return what it returned (or raise what it
        raised). The job always runs to its end: if the awaiting task is cancelled meanwhile
        (by anyio or by a plain ``Task.cancel()``), this waits for the job, then re-raises the
        cancellation."""
        if self._closed:
            raise RuntimeError("the connection is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future())
        # Put, then clear: should the thread finish the job in between and set the event, the
        # next handover waits its 0.5 ms for nothing; the other order could leave the event set
        # with a job queued, and the handover would then not hand over.
        self._jobs.put(job)
        self._idle.clear()
        if loop is not self._loop:
            # Another loop: count afresh (the jobs of a closed loop never finish there), and
            # let that loop's timer, and its jobs should it run again, count for nothing.
            self._loop, self._unfinished, self._timer = loop, 0, None
            self._epoch += 1
        job.epoch = self._epoch
        self._unfinished += 1
        if self._timer is None and HAND_OVER:
            self._timer = loop.call_later(_HANDOVER_FIRST, self._hand_over, _HANDOVER_FIRST, self._epoch)
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
