"""Handing the GIL to the library's worker threads next to an event loop that never idles.

A thread of ours (a SQLite connection's, or one of anyio's running a fold of the dashboard or a
checkpoint's pickling) must take the GIL back after every blocking call it makes. A loop that
always has a ready task (an application computing between its awaits) releases the GIL at every
turn, in its ``select`` with a timeout of 0, and takes it back at once. Each release wakes the
waiting thread, which mostly finds the GIL taken again, and restarts the 5 ms wait after which
CPython would ask the holder to drop it: that wait never runs out. The thread gets the GIL only
when it happens to win the race, so its job stalls for seconds at a time (a durable study made
no commit in 5 s, ``bench/embedded.py``; a dashboard page took 1.5-12 s,
``tests/web/test_dashboard_busy_loop.py``).

So while jobs of ours are out, a timer of the loop blocks the loop on an event that the threads
set when none of their jobs is running any more, for up to half a millisecond, after 1, 2, 4
and 8 ms, then every 16 ms. The thread gets the GIL there and usually finishes within the wait.
A job that only waits on a disk costs the loop about 3 % (0.5 ms every 16 ms), and an idle loop
pays nothing: jobs done within 1 ms cancel the timer before it fires. There is one
:class:`Handover` per event loop (a connection used from two loops in turn counts each job on
the loop that sent it).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

T = TypeVar("T")

#: Whether the loop hands the GIL over (``bench/embedded.py`` turns it off to show why it is on).
HAND_OVER = True
#: Jobs out this long (s) get the first handover; the interval then doubles up to the last.
FIRST = 0.001
LAST = 0.016
#: How long (s) the loop blocks at most per handover.
WAIT = 0.0005

_handovers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Handover] = weakref.WeakKeyDictionary()


class Handover:
    """The handover of one event loop: :meth:`sent` and :meth:`back` on the loop around each
    job, :meth:`ran` on the thread when the job is done."""

    __slots__ = ("_out", "_timer", "_lock", "_running", "_idle")

    # No reference to its loop: the registry is weak by loop, and a value holding its key would
    # keep every loop that ever used one alive. Its loop-side methods run on that loop.
    def __init__(self) -> None:
        self._out = 0  # jobs sent whose outcome is not back yet (counted on the loop)
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()
        self._running = 0  # jobs sent that have not run to their end (counted under the lock)
        self._idle = threading.Event()  # set while none runs
        self._idle.set()

    def sent(self) -> None:
        """On the loop: a job goes to a thread."""
        with self._lock:
            self._running += 1
            self._idle.clear()
        self._out += 1
        if self._timer is None and HAND_OVER:
            self._timer = asyncio.get_running_loop().call_later(FIRST, self._hand_over, FIRST)

    def ran(self) -> None:
        """On the thread (or on the loop, for a job that never started): the job is over."""
        with self._lock:
            self._running -= 1
            if not self._running:
                self._idle.set()

    def back(self) -> None:
        """On the loop: the job's outcome is back."""
        self._out -= 1
        if not self._out and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_over(self, interval: float) -> None:
        self._idle.wait(WAIT)  # the GIL is free meanwhile: a starving thread takes it
        interval = min(2 * interval, LAST)
        self._timer = asyncio.get_running_loop().call_later(interval, self._hand_over, interval)


def handover() -> Handover:
    """The running loop's handover."""
    loop = asyncio.get_running_loop()
    found = _handovers.get(loop)
    if found is None:
        found = _handovers[loop] = Handover()
    return found


# Where a to_thread job stands; it changes under its handover's lock.
_QUEUED, _STARTED, _LEFT, _DONE, _GIVEN_UP = "queued", "started", "left running", "done", "given up"


async def to_thread(fn: Callable[..., T], *args: object) -> T:
    """``anyio.to_thread.run_sync(fn, *args)``, the GIL handed over until its outcome is back.
    An anyio cancellation waits for ``fn`` to end, as that call does; asyncio's own
    ``Task.cancel()`` returns at once and leaves ``fn`` running, handed over to until it ends.

    The job counts as running until the caller has its outcome, not until ``fn`` returns: anyio's
    worker still needs the GIL to hand the outcome to the loop, and with the job counted as done
    the handover would stop waiting for it (a dashboard page then took seconds in CI)."""
    h = handover()
    loop = asyncio.get_running_loop()
    state = [_QUEUED]

    def job() -> T | None:
        with h._lock:  # started, or given up by the caller first: one or the other
            if state[0] is _GIVEN_UP:
                return None
            state[0] = _STARTED
        try:
            return fn(*args)
        finally:
            with h._lock:
                left = state[0] is _LEFT
                state[0] = _DONE
            if left:  # the caller is gone (asyncio cancelled it): the job's end counts here
                h.ran()
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(h.back)

    h.sent()
    try:
        result: T = await anyio.to_thread.run_sync(job)  # type: ignore[arg-type]  # (None: given up)
        return result
    finally:
        with h._lock:
            was = state[0]
            if was is _QUEUED:  # cancelled before a thread took it: it never runs
                state[0] = _GIVEN_UP
            elif was is _STARTED:  # still running: it counts its own end
                state[0] = _LEFT
        if was is _QUEUED or was is _DONE:
            h.ran()
            h.back()
