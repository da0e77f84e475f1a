"""Worker threads for ``def`` objectives, whose calls can be abandoned.

A thread cannot be killed. When the task waiting for a call is cancelled (``trial_timeout``,
Ctrl-C, ``Task.cancel()``), :func:`run_in_thread` stops waiting at once and the call is
*abandoned*: it runs on, its result is dropped, and the trial handle refuses its reports. So
``run()`` never hangs on a blocked objective.

The threads are daemons, so a thread blocked forever cannot keep the interpreter alive. But an
abandoned call may still be writing a file of its own, so at exit the interpreter waits for the
abandoned calls that still run, saying which, and a Ctrl-C ends that wait at once (the second
Ctrl-C of a user who interrupted a run). Idle threads are reused, and end after a while.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_IDLE_SECONDS = 10.0

_lock = threading.Lock()
_idle: list[_Worker] = []
_abandoned: dict[int, str] = {}  # id of a call -> what it is, while it still runs
_exit_hook = False


class _Call:
    __slots__ = ("fn", "args", "future", "label", "finished", "abandoned")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any], label: str
    ):
        self.fn = fn
        self.args = args
        self.future = future
        self.label = label
        self.finished = False
        self.abandoned = False


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="aio_ashb worker", daemon=True)
        self.calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            try:
                call = self.calls.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with _lock:
                    if self in _idle:  # nobody took it meanwhile: end
                        _idle.remove(self)
                        return
                continue  # taken just now: its call is on the way
            try:
                value, ok = call.fn(*call.args), True
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                value, ok = exc, False
            with _lock:
                call.finished = True
                abandoned = call.abandoned
                _abandoned.pop(id(call), None)
                _idle.append(self)
            if not abandoned:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    call.future.get_loop().call_soon_threadsafe(_settle, call.future, ok, value)
            del call, value


async def run_in_thread(fn: Callable[..., Any], *args: Any, label: str) -> Any:
    """Call ``fn(*args)`` in a worker thread and return its result; abandon it if cancelled.

    ``label`` names the call in the message printed at exit if it was abandoned and still runs.
    """
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    call = _Call(fn, args, future, label)
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    worker.calls.put(call)
    try:
        return await future
    except asyncio.CancelledError:
        with _lock:
            if not call.finished:
                call.abandoned = True
                _abandoned[id(call)] = label
                _watch_exit()
        raise


def abandoned() -> list[str]:
    """Labels of the abandoned calls that are still running."""
    with _lock:
        return list(_abandoned.values())


def _watch_exit() -> None:
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_wait_at_exit)


def _wait_at_exit() -> None:
    running = abandoned()
    if not running:
        return
    try:  # the Ctrl-C that ends the wait may come at any moment, even during the first print
        print(
            f"aio_ashb: waiting for {len(running)} abandoned call(s) still running in threads "
            f"({', '.join(running)}): a thread cannot be stopped. Press Ctrl-C to exit without them.",
            file=sys.stderr,
            flush=True,
        )
        while abandoned():
            time.sleep(0.05)
    except KeyboardInterrupt:
        print(
            f"aio_ashb: exiting; abandoned and unfinished: {', '.join(abandoned())}",
            file=sys.stderr,
            flush=True,
        )
