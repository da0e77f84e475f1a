"""The handle an objective receives: ``Trial`` for coroutines, ``ThreadTrial`` for plain functions.

A trial talks to whoever runs it through :class:`TrialHost`, a small protocol (record a report,
keep a checkpoint, wait for durability, wait at a rung); the runner implements it. Each call of
the objective is an :class:`Invocation`, in one :class:`Phase` at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from enum import Enum
from typing import Any, Protocol, TypeVar

from aio_ashb._core import Decision, check_step, check_value
from aio_ashb._exceptions import ReportError, TrialStopped
from aio_ashb._handover import to_thread

T = TypeVar("T")


class Phase(Enum):
    """Where one invocation of the objective stands."""

    RUNNING = "running"  # computing, in a worker slot
    PAUSED = "paused"  # at a rung, waiting for a promotion; its slot is given back
    RELEASED = "released"  # let go while paused (max_paused, the study is over): steps() ends
    ENDED = "ended"  # stopped or complete: steps() ends; it keeps its slot until it returns
    OVER = "over"  # the call returned, was abandoned, or the run is cancelled: no more reports


_RUNNING = Phase.RUNNING  # a global: the hot paths compare with it on every report and step


class Invocation:
    """The runner's side of one call of the objective for one trial."""

    __slots__ = (
        "number",
        "phase",
        "holds_slot",
        "wake",
        "provider",
        "provider_step",
        "step",
        "suspended_key",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.phase = Phase.RUNNING
        self.holds_slot = True
        self.wake: asyncio.Future[None] | None = None  # done when a paused invocation may move on
        self.provider: Any = None  # latest checkpoint value or callable
        self.provider_step = 0
        self.step = 0  # the invocation's latest step
        self.suspended_key: tuple[Any, ...] | None = None  # its place among suspended ones


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

    def suspend(self, inv: Invocation) -> asyncio.Future[None] | None:
        """The gate in two halves, for callers that await in their own frame: what a paused
        ``inv`` waits on (``None``: nothing), then :meth:`unsuspend` once the wait is over."""

    def unsuspend(self, inv: Invocation) -> None:
        """The wait on :meth:`suspend`'s future is over."""


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
        (``max_paused``) or at the end of the study.
        """
        return _Steps(self)

    async def report(self, value: float, *, step: int | None = None, checkpoint: Any = None) -> Decision:
        """Record ``value`` at ``step`` (default: the previous step + 1) and return the decision.

        ``checkpoint`` is a value, or a zero-argument callable called only when a checkpoint is
        needed (when the trial pauses at a rung, or is interrupted). Returns once the report is
        durable. Raises :class:`ReportError` for a value that is not a real number or a step that
        does not increase, and :class:`TrialStopped` if the trial has already ended.
        """
        inv, host = self._inv, self._host
        if inv.phase is not _RUNNING and not await host.proceed(inv):
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


class _Steps:
    """The iterator behind ``Trial.steps()``.

    A class rather than an async generator: a generator abandoned by a cancelled trial would be
    finalized later by a task of its own, outliving ``run()``.
    """

    __slots__ = ("_last", "_trial")

    def __init__(self, trial: Trial) -> None:
        self._trial = trial
        self._last = trial.step

    def __aiter__(self) -> _Steps:
        return self

    async def __anext__(self) -> int:
        t = self._trial
        inv = t._inv
        if inv.phase is not _RUNNING:
            # The gate, awaited in this frame: a paused trial waits here, and one coroutine
            # less per paused trial is memory and collector time saved (host.proceed would do).
            host = t._host
            wake = host.suspend(inv)
            if wake is not None:
                try:
                    await wake
                finally:
                    host.unsuspend(inv)
            if inv.phase is not _RUNNING:
                raise StopAsyncIteration
        self._last = max(self._last, t._step) + 1
        return self._last


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
