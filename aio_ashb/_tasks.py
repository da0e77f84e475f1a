"""The tasks of one run's trials, owned as a task group would own them, at a fraction of the cost.

A trial is one asyncio task (several, one after another, when a task takes the next job itself);
in promotion mode most trials keep theirs, suspended, until the study ends. A task either runs
the runner's worker coroutine, or the objective's coroutine itself, with the worker's end
(``on_end``) called back when it is done: such a paused trial keeps one coroutine less. anyio's task group
gives each child a cancel scope and task state of its own: 50 µs to start one on the development
machine, against 7 µs for ``loop.create_task``, and more objects for every paused trial to keep.
:class:`TrialTasks` keeps what the group gives, with ``asyncio.TaskGroup``'s semantics.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

_HEARD = object()  # a direct task whose end on_end was told of already (end_now)


class TrialTasks:
    """The trials' tasks. An error that escapes a task ends the run (``on_error``); :meth:`stop`
    cancels every task once and waits for all of them, even if the run itself is cancelled
    again meanwhile."""

    __slots__ = (
        "loop",
        "tasks",
        "on_error",
        "on_end",
        "contexts",
        "empty",
        "cancelled",
        "_on_done",
        "_callback_context",
        "_run_context",
    )

    def __init__(
        self,
        on_error: Callable[[BaseException], None],
        on_end: Callable[[asyncio.Task[Any], Any], None] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        # Each trial starts from the context run() was called in (a web request's, a tracing
        # span's), not from whichever trial's report happened to start it.
        self._run_context = contextvars.copy_context()
        # Each task, and what on_end is told when it is done (None: nothing, a worker task).
        self.tasks: dict[asyncio.Task[Any], Any] = {}
        self.on_error = on_error
        self.on_end = on_end
        self.contexts: dict[asyncio.Task[Any], contextvars.Context] = {}  # tasks with an owner
        self.empty: asyncio.Future[None] | None = None  # set when the last task ends
        self.cancelled: set[asyncio.Task[Any]] = set()  # cancelled once: never again
        self._on_done = self._done
        self._callback_context = contextvars.Context()

    def start(self, coro: Coroutine[Any, Any, Any], name: str, owner: Any = None) -> asyncio.Task[Any]:
        """Run ``coro`` in a task of its own; once it is done, ``on_end(task, owner)`` is called
        first if ``owner`` is not None."""
        context = self._run_context.copy()
        task = self.loop.create_task(coro, name=name, context=context)
        self.tasks[task] = owner
        # One callback object and one context for all tasks: a paused trial holds no copies.
        # (A direct task's end runs user code, callbacks and checkpoint providers: in its context.)
        if owner is None:
            task.add_done_callback(self._on_done, context=self._callback_context)
        else:
            self.contexts[task] = context  # (Task.get_context() is 3.12's)
            task.add_done_callback(self._on_done, context=context)
        return task

    def end_now(self, task: asyncio.Task[Any]) -> None:
        """``task`` is done: tell on_end now rather than in its done callback (in the task's
        context all the same: it is not entered, the task being done)."""
        owner = self.tasks.get(task)
        if owner is not None and owner is not _HEARD:
            self.tasks[task] = _HEARD
            self.contexts[task].run(self._end, task, owner)

    def _end(self, task: asyncio.Task[Any], owner: Any) -> None:
        if self.on_end is None:
            return
        try:
            self.on_end(task, owner)
        except BaseException as error:  # as if it had escaped the task: it ends the run
            self.on_error(error)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise

    def _done(self, task: asyncio.Task[Any]) -> None:
        owner = self.tasks.pop(task)
        self.contexts.pop(task, None)
        if owner is not None and owner is not _HEARD:
            self._end(task, owner)  # (it may start tasks: before the check for none left)
        self.cancelled.discard(task)  # (after: on_end asks whether the run cancelled it)
        if not task.cancelled():
            exc = task.exception()
            # An objective's own exception is its trial's failure: on_end's to record.
            if exc is not None and (owner is None or not isinstance(exc, Exception)):
                self.on_error(exc)
        if not self.tasks and self.empty is not None and not self.empty.done():
            self.empty.set_result(None)

    def cancel(self) -> None:
        """Cancel each task once: a second cancellation would interrupt the cleanup the first
        one started (a trial's interrupted checkpoint, an objective's ``finally``)."""
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current and task not in self.cancelled:
                self.cancelled.add(task)
                task.cancel()

    async def wait(self) -> None:
        """Return once every task has ended."""
        while self.tasks:
            self.empty = self.loop.create_future()
            await self.empty

    async def stop(self) -> None:
        """Cancel every task and return once all have ended. Run it shielded from anyio's
        cancellation; asyncio's own (``Task.cancel()`` of the run) is held off here, and
        raised once no task is left."""
        self.cancel()
        cancelled = False
        while self.tasks:
            try:
                await self.wait()
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
