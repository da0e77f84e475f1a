"""Executors in this process: the event loop itself, and worker threads."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aio_ashb._exceptions import ObjectiveMisuseError
from aio_ashb._executors._base import Executor
from aio_ashb._objective import describe
from aio_ashb._threads import run_in_thread


class LoopExecutor(Executor):
    """Runs coroutine functions on the study's own event loop (the default for ``async def``).

    Cancellation cancels the coroutine at its next ``await``; nothing outlives ``run()``.
    """

    runs_trials = True
    runs_sync = False
    awaits_in_place = True

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        return await fn(*args)


class ThreadExecutor(Executor):
    """Runs plain functions in worker threads (the default for ``def`` objectives).

    The number of threads in use is the run's ``concurrency``: a trial-style objective that is
    paused keeps its (sleeping) thread, so the pool itself has no bound that could deadlock it.
    A thread cannot be interrupted: on cancellation or ``trial_timeout`` the call is
    *abandoned* (``run()`` stops waiting for it at once; it runs on, its result is dropped and
    its reports are refused). The threads are daemons; at exit the interpreter waits for
    abandoned calls that still run, naming them, until they end or Ctrl-C is pressed. Use
    :class:`ProcessExecutor` when calls must really stop.
    """

    runs_trials = True
    runs_async = False

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        trial = args[0] if args else None
        number = getattr(trial, "number", None)
        label = f"trial {number}" if isinstance(number, int) else describe(fn)
        result = await run_in_thread(fn, *args, label=label)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ObjectiveMisuseError(
                f"the objective returned {result!r} instead of running: it looks like a plain "
                "function (a lambda?) wrapping an async one. Pass the async function itself, or "
                "a functools.partial of it"
            )
        return result
