"""The handle an objective receives: ``Trial`` for coroutines, ``ThreadTrial`` for plain functions.

A trial talks to whoever runs it through :class:`TrialHost`, a small protocol (record a report,
keep a checkpoint, wait for durability, wait at a rung); the runner implements it. Each call of
the objective is an :class:`Invocation`, in one :class:`Phase` at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from enum import Enum
from typing import Any, NoReturn, Protocol, TypeVar

from aio_ashb._core import Decision, check_step, check_value
from aio_ashb._exceptions import ObjectiveMisuseError, ReportError, TrialStopped
from aio_ashb._handover import to_thread

T = TypeVar("T")


class Phase(Enum):
    """Where one invocation of the objective stands."""

    RUNNING = "running"  # computing, in a worker slot
    PAUSED = "paused"  # at a rung, waiting for a promotion; its slot is given back
    # let go while paused (max_paused, the trial can never be promoted in this run, the study is
    # over): steps() ends
    RELEASED = "released"
    ENDED = "ended"  # stopped or complete: steps() ends; it keeps its slot until it returns
    OVER = "over"  # the call returned, was abandoned, or the run is cancelled: no more reports


_RUNNING = Phase.RUNNING  # a global: the hot paths compare with it on every report and step


# Where a paused invocation's wait stands (Invocation._wait).
_IDLE = 0  # not waiting
_WAITING = 1  # suspended at the gate
_WOKEN = 2  # promoted or released: the waiting task resumes at its next turn
_CANCELLED = 3  # its task was cancelled while it waited


class Invocation:
    """The runner's side of one call of the objective for one trial.

    It is also what the call waits on while it is paused, and the iterator of
    ``Trial.steps()``: to asyncio's Task the wait is a future (the ``_asyncio_future_blocking``
    protocol of Future-like objects, as in ``asyncio.isfuture``). One object where a future,
    its iterator, a coroutine and an iterator object were: a promotion-mode study keeps tens of
    thousands of calls paused, and CPython's collector walks every object of each of them,
    again and again (docs/architecture.md, "The garbage collector").
    """

    __slots__ = (
        "number",
        "host",
        "phase",
        "holds_slot",
        "provider",
        "provider_step",
        "step",
        "suspended_key",
        "task",
        "last",
        "_wait",
        "_yields_step",
        "_callback",
        "_context",
        "_cancel_message",
        "_blocking",
    )

    def __init__(self, number: int, host: TrialHost) -> None:
        self.number = number
        self.host = host
        self.phase = Phase.RUNNING
        self.holds_slot = True
        self.provider: Any = None  # latest checkpoint value or callable
        self.provider_step = 0
        self.step = 0  # the invocation's latest step
        self.suspended_key: tuple[Any, ...] | None = None  # its place among suspended ones
        # The task, when the objective's coroutine is the task's own (no worker around it):
        # once it is done, the call has returned, though the runner hears of it a turn later.
        self.task: asyncio.Task[Any] | None = None
        self.last = 0  # the last step steps() gave
        self._wait = _IDLE
        self._yields_step = False  # the wait is steps()'s: it ends with the next step
        self._callback: Callable[[Any], object] | None = None  # the waiting task's wake-up
        self._context: contextvars.Context | None = None
        self._cancel_message: Any = None
        self._blocking: bool | None = None

    def __repr__(self) -> str:
        return f"<Invocation of trial {self.number}, {self.phase.value}>"

    # -------------------------------------------------------------- the runner's side
    def start_wait(self) -> None:
        """The call is suspended at the gate from now on: awaiting this object waits."""
        self._wait = _WAITING
        self._yields_step = False

    @property
    def waiting(self) -> bool:
        return self._wait == _WAITING

    @property
    def returned(self) -> bool:
        """The call has returned (or raised), though the runner may not have heard of it yet."""
        return self.phase is Phase.OVER or (self.task is not None and self.task.done())

    def wake_up(self) -> None:
        """Let a suspended call go on (promoted, released, or the run is over)."""
        if self._wait == _WAITING:
            self._wait = _WOKEN
            self._end_wait()

    def _end_wait(self) -> None:
        self.host.unsuspend(self)
        callback = self._callback
        if callback is not None:
            context, self._callback, self._context = self._context, None, None
            self.host.loop.call_soon(callback, self, context=context)

    # -------------------------------------------------------------- Trial.steps()
    def __aiter__(self) -> Invocation:
        return self

    def __anext__(self) -> Awaitable[int]:
        if self.phase is not _RUNNING:
            # Paused: the wait starts (or it need not). Either way the end of the iteration is
            # raised once awaited, never by this call: `anext(it, default)` on an __anext__
            # that raises crashes CPython 3.11, 3.12 < .10 and 3.13 < .3 (gh-131670).
            try:
                self.host.suspend(self)
            except Exception as exc:
                return _raising(exc)
            self._yields_step = True
            return self
        return _next_step(self)

    # -------------------------------------------------------------- awaited: the wait itself
    def __await__(self) -> Generator[Any, None, Any]:
        return self  # type: ignore[return-value]  # an iterator, as awaiting needs: __next__

    def __next__(self) -> Any:
        if self._wait == _WAITING:
            if self._callback is not None:  # a second awaiter: its error, not the first's
                raise ObjectiveMisuseError(
                    f"trial {self.number} is already waiting at its rung in another task"
                )
            self._blocking = True
            return self  # to the task, which registers its wake-up and sleeps
        # Resumed (a cancelled wait resumes with CancelledError thrown at the await instead).
        self._wait = _IDLE
        if not self._yields_step:
            raise StopIteration
        self._yields_step = False
        if self.phase is not _RUNNING:
            raise StopAsyncIteration
        self.last = last = max(self.last, self.step) + 1
        raise StopIteration(last)

    # send and throw: what an awaiting wrapper that is not a coroutine (the awaitable of
    # `anext(it, default)`) passes on; a coroutine awaiting this object calls __next__ instead.
    def send(self, value: Any) -> Any:
        return self.__next__()

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> NoReturn:
        self._drop_wait()  # (not through cancel(): the wait ends here)
        self._wait = _IDLE  # (also a woken or cancelled one: this exception replaces its end)
        self._yields_step = False
        if val is None:
            val = typ() if isinstance(typ, type) else typ
        elif not isinstance(val, BaseException):  # (a generator's throw(type, args))
            val = typ(*val) if isinstance(val, tuple) else typ(val)
        raise val.with_traceback(tb) if tb is not None else val

    def close(self) -> None:
        """The awaiting coroutine is closed mid-wait (its task was destroyed, never resumed)."""
        self._drop_wait()

    def _drop_wait(self) -> None:
        """End the wait without waking anyone: its awaiter is gone or already running."""
        if self._wait == _WAITING:
            self._wait = _IDLE
            self._callback = self._context = None
            self.host.unsuspend(self)

    # -------------------------------------------------------------- what asyncio's Task calls
    @property
    def _asyncio_future_blocking(self) -> bool | None:
        return self._blocking

    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None:
        # A future to asyncio only while yielded to a task: otherwise ensure_future, wait_for,
        # gather and shield would take it for a future, whose result is not the step.
        self._blocking = True if value else None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.host.loop

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._wait == _WAITING and self._callback is None:
            self._callback, self._context = fn, context
        elif self._wait == _WAITING:  # one waiter only: the invocation's own task
            raise RuntimeError(f"{self!r} is already awaited")
        else:
            self.host.loop.call_soon(fn, self, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._callback is not None and self._callback == fn:
            self._callback = self._context = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        if self._wait != _WAITING:
            return False
        self._wait = _CANCELLED
        self._cancel_message = msg
        self._end_wait()
        return True

    def done(self) -> bool:
        return self._wait != _WAITING

    def cancelled(self) -> bool:
        return self._wait == _CANCELLED

    def result(self) -> None:
        if self._wait == _CANCELLED:
            self._wait = _IDLE
            self._yields_step = False
            msg, self._cancel_message = self._cancel_message, None
            raise asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)

    def exception(self) -> BaseException | None:
        self.result()
        return None


async def _raising(exc: Exception) -> NoReturn:
    raise exc


async def _next_step(inv: Invocation) -> int:
    """``Trial.steps()``'s next step when there is no wait: a coroutine is the cheapest
    awaitable that returns at once (an iterator raising StopIteration costs twice as much)."""
    inv.last = last = max(inv.last, inv.step) + 1
    return last


class TrialHost(Protocol):
    """What a trial needs from whoever runs it (the runner)."""

    loop: asyncio.AbstractEventLoop  # where a thread trial's calls hop to
    prepares_checkpoints: bool  # prepare_checkpoint must run (off the loop) before saving

    def record(self, inv: Invocation, step: int, value: float) -> Decision:
        """Record a report and return the scheduler's decision (the invocation's phase follows)."""

    def prepare_checkpoint(self, number: int, payload: Any) -> Any:
        """Serialize a checkpoint for the storage (in a worker thread: it may be slow)."""

    def save_checkpoint(self, inv: Invocation, payload: Any) -> None:
        """Keep ``payload`` as the trial's checkpoint."""

    def unsettled(self) -> bool:
        """Whether a report of this run is not durable yet (cheap: checked on every report)."""

    async def settle(self) -> None:
        """Return once every report of this run is durable."""

    async def proceed(self, inv: Invocation) -> bool:
        """The gate: wait while ``inv`` is paused; return whether it may report again."""

    def suspend(self, inv: Invocation) -> bool:
        """The gate, for callers that await in their own frame: whether a paused ``inv`` must
        wait (then it has started its wait: await ``inv``)."""

    def unsuspend(self, inv: Invocation) -> None:
        """``inv``'s wait is over (woken, or cancelled while waiting)."""


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From a worker thread: run ``fn(*args)`` on the run's event loop and wait for its result.

    An abandoned thread can outlive its run, and even its loop: then this raises
    :class:`TrialStopped` instead of waiting for a loop that will never answer. The coroutine
    is made on the loop, when the loop gets to it: one made here and never run (the loop
    stopped first) would warn that it was never awaited."""
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        if not result.cancelled():  # (the thread gave up before the loop got here)
            loop.create_task(fn(*args)).add_done_callback(finish)

    def finish(task: asyncio.Task[T]) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # given up meanwhile
            if task.cancelled():
                result.cancel()
            elif (exc := task.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(task.result())

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop is closed
        raise TrialStopped("the run this trial belonged to is over") from None
    while True:
        try:
            return result.result(timeout=0.5)
        except TimeoutError:
            if not loop.is_running():
                result.cancel()
                raise TrialStopped("the run this trial belonged to is over") from None


def materialize(checkpoint: Any) -> Any:
    """A checkpoint as given: a callable is a provider, called now; anything else is the value."""
    return checkpoint() if callable(checkpoint) else checkpoint


def _refusal(number: int, phase: Phase) -> TrialStopped:
    if phase is Phase.OVER:
        return TrialStopped(f"trial {number} was abandoned by the runner; it takes no more reports")
    if phase is Phase.RELEASED:
        return TrialStopped(f"trial {number} was not promoted; it takes no more reports")
    return TrialStopped(f"trial {number} has ended; it takes no more reports")


class Trial:
    """One configuration being trained, as seen by a coroutine objective.

    ``params`` are the hyperparameters (the trial's own copy), ``checkpoint`` the checkpoint this
    invocation starts from (``None`` for a fresh start) and ``step`` the last step reported (or
    the checkpoint's step).
    """

    __slots__ = ("number", "params", "bracket", "checkpoint", "_step", "_skip_until", "_host", "_inv")

    def __init__(
        self,
        host: TrialHost,
        inv: Invocation,
        params: dict[str, Any],
        bracket: int,
        *,
        checkpoint: Any = None,
        step: int = 0,
        skip_until: int = 0,
    ) -> None:
        self.number = inv.number
        self.params = params
        self.bracket = bracket
        self.checkpoint = checkpoint
        self._step = step
        # Re-invoked after a release: steps up to here are recorded already and not sent again.
        self._skip_until = skip_until
        self._host = host
        self._inv = inv

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, params={self.params!r}, step={self._step})"

    @property
    def step(self) -> int:
        """The last step reported in this invocation (or the step of the starting checkpoint)."""
        return self._step

    def steps(self) -> AsyncIterator[int]:
        """Iterate ``step + 1, step + 2, ...``; suspend while paused at a rung; end when done.

        Ends when the trial is stopped, completes ``max_resource``, or is released while paused
        (``max_paused``, a trial the run can never promote, or the end of the study).
        """
        inv = self._inv
        inv.last = self._step
        return inv

    async def report(self, value: float, *, step: int | None = None, checkpoint: Any = None) -> Decision:
        """Record ``value`` at ``step`` (default: the previous step + 1) and return the decision.

        ``checkpoint`` is a value, or a zero-argument callable called only when a checkpoint is
        needed (when the trial pauses at a rung, or is interrupted). Returns once the report is
        durable. Raises :class:`ReportError` for a value that is not a real number or a step that
        does not increase, and :class:`TrialStopped` if the trial has already ended.
        """
        inv, host = self._inv, self._host
        if inv.phase is not _RUNNING:  # the gate, awaited in this frame (no frame more to keep)
            if host.suspend(inv):
                await inv
            if inv.phase is not _RUNNING:
                raise _refusal(self.number, inv.phase)
        decision, payload_needed = self._record(value, step, checkpoint)
        if payload_needed:
            payload = materialize(inv.provider)
            if host.prepares_checkpoints:  # pickled off the loop; failing fails the trial
                payload = await to_thread(host.prepare_checkpoint, self.number, payload)
            host.save_checkpoint(inv, payload)
        if host.unsettled():
            await host.settle()
        return decision

    def _record(self, value: object, step: int | None, checkpoint: Any) -> tuple[Decision, bool]:
        v = check_value(value)
        if step is None:
            s = self._step + 1
        else:
            s = check_step(step)
            if s <= self._step:
                raise ReportError(
                    f"trial {self.number} reported step {s} after step {self._step}; steps must increase"
                )
        self._step = s
        inv = self._inv
        inv.step = s
        if checkpoint is not None:
            inv.provider = checkpoint
            inv.provider_step = s
        if s <= self._skip_until:
            return Decision.CONTINUE, False
        decision = self._host.record(inv, s, v)
        return decision, decision is Decision.PAUSE and inv.provider is not None


class ThreadTrial:
    """The same trial for a plain ``def`` objective running in a worker thread.

    ``report`` and ``steps`` block the thread, never the event loop: each call hops to the loop
    (:func:`on_loop`). A checkpoint callable runs in this thread, not on the loop.
    """

    __slots__ = ("_trial",)

    def __init__(self, trial: Trial) -> None:
        self._trial = trial

    def __repr__(self) -> str:
        return f"ThreadTrial(number={self.number}, params={self.params!r}, step={self.step})"

    @property
    def number(self) -> int:
        return self._trial.number

    @property
    def params(self) -> dict[str, Any]:
        return self._trial.params

    @property
    def bracket(self) -> int:
        return self._trial.bracket

    @property
    def checkpoint(self) -> Any:
        return self._trial.checkpoint

    @property
    def step(self) -> int:
        return self._trial.step

    def steps(self) -> Iterator[int]:
        """Blocking twin of :meth:`Trial.steps`."""
        t = self._trial
        inv, host = t._inv, t._host
        last = t.step
        # Hop to the loop only when the trial may have to wait: a running invocation's phase
        # only changes inside its own report() call, which has returned by now, or to OVER.
        while inv.phase is Phase.RUNNING or (
            inv.phase is not Phase.OVER and on_loop(host.loop, host.proceed, inv)
        ):
            last = max(last, t.step) + 1
            yield last

    def report(self, value: float, *, step: int | None = None, checkpoint: Any = None) -> Decision:
        """Blocking twin of :meth:`Trial.report`."""
        t = self._trial
        loop = t._host.loop
        decision, payload_needed = on_loop(loop, self._report_on_loop, value, step, checkpoint)
        if payload_needed:
            payload = materialize(t._inv.provider)  # in this thread
            if t._host.prepares_checkpoints:
                payload = t._host.prepare_checkpoint(t.number, payload)
            on_loop(loop, self._save_on_loop, payload)
        return decision

    async def _report_on_loop(
        self, value: object, step: int | None, checkpoint: Any
    ) -> tuple[Decision, bool]:
        t = self._trial
        inv, host = t._inv, t._host
        if inv.phase is not Phase.RUNNING and not await host.proceed(inv):
            raise _refusal(t.number, inv.phase)
        decision, payload_needed = t._record(value, step, checkpoint)
        if not payload_needed and host.unsettled():
            await host.settle()
        return decision, payload_needed

    async def _save_on_loop(self, payload: Any) -> None:
        t = self._trial
        if t._inv.phase is not Phase.OVER:  # abandoned while it pickled: nobody listens
            t._host.save_checkpoint(t._inv, payload)
        if t._host.unsettled():
            await t._host.settle()
