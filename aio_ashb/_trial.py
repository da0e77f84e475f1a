"""The handle an objective receives: ``Trial`` for coroutines, ``ThreadTrial`` for plain functions."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread

from aio_ashb._core import Decision, check_step, check_value
from aio_ashb._exceptions import ReportError, TrialStopped

if TYPE_CHECKING:
    from aio_ashb._study import _Live, _Run

T = TypeVar("T")


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From a worker thread: run ``fn(*args)`` on the run's event loop and wait for its result.

    An abandoned thread can outlive its run, and even its loop: then this raises
    :class:`TrialStopped` instead of waiting for a loop that will never answer."""
    coro = fn(*args)
    assert isinstance(coro, Coroutine)
    try:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop is closed
        coro.close()
        raise TrialStopped("the run this trial belonged to is over") from None
    while True:
        try:
            return future.result(timeout=0.5)
        except TimeoutError:
            if not loop.is_running():
                future.cancel()
                raise TrialStopped("the run this trial belonged to is over") from None


def materialize(checkpoint: Any) -> Any:
    """A checkpoint as given: a callable is a provider, called now; anything else is the value."""
    return checkpoint() if callable(checkpoint) else checkpoint


class Trial:
    """One configuration being trained, as seen by a coroutine objective.

    ``params`` are the hyperparameters, ``checkpoint`` the checkpoint this invocation starts from
    (``None`` for a fresh start) and ``step`` the last step reported (or the checkpoint's step).
    """

    __slots__ = ("number", "params", "bracket", "checkpoint", "_step", "_skip_until", "_run", "_live")

    def __init__(
        self,
        run: _Run,
        live: _Live,
        number: int,
        params: dict[str, Any],
        bracket: int,
        *,
        checkpoint: Any = None,
        step: int = 0,
        skip_until: int = 0,
    ) -> None:
        self.number = number
        self.params = params
        self.bracket = bracket
        self.checkpoint = checkpoint
        self._step = step
        # Re-invoked after a release: steps up to here are recorded already and not sent again.
        self._skip_until = skip_until
        self._run = run
        self._live = live

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
        live = self._live
        await self._admit()
        decision, payload_needed = self._record(value, step, checkpoint)
        run = self._run
        if payload_needed:
            payload = materialize(live.provider)
            if run.storage.pickles_checkpoints:  # pickle off the loop; failing fails the trial
                payload = await anyio.to_thread.run_sync(run.prepare_checkpoint, self.number, payload)
            run.save_checkpoint(live, payload)
        if run.durable and run.last_seq > run.storage.durable_seq:  # skip the await if durable
            await run.flush()
        return decision

    async def _admit(self) -> None:
        """Before a report: raise TrialStopped if the trial ended; wait out a pause."""
        live = self._live
        if live.ended or live.released:
            raise TrialStopped(f"trial {self.number} has ended; it takes no more reports")
        if live.returned:  # its thread was abandoned (trial_timeout, or run() cancelled)
            raise TrialStopped(f"trial {self.number} was abandoned by the runner; it takes no more reports")
        if live.paused and not await self._run.wait_promotion(live):
            raise TrialStopped(f"trial {self.number} was not promoted; it takes no more reports")

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
        live = self._live
        live.step = s
        if checkpoint is not None:
            live.provider = checkpoint
            live.provider_step = s
        if s <= self._skip_until:
            return Decision.CONTINUE, False
        decision = self._run.record(live, s, v)
        return decision, decision is Decision.PAUSE and live.provider is not None


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
        live = t._live
        if (live.paused or live.released or live.ended) and (
            live.ended or not await t._run.wait_promotion(live)
        ):
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
        live = t._live
        loop = t._run.loop
        last = t.step
        while True:
            # Hop to the loop only when the trial may have to wait: a running trial's flags
            # only change inside its own report() call, which has returned by now.
            if (live.paused or live.released or live.ended or live.returned or t._run.cancelling) and (
                live.ended or live.returned or not on_loop(loop, t._run.wait_promotion, live)
            ):
                return
            last = max(last, t.step) + 1
            yield last

    def report(self, value: float, *, step: int | None = None, checkpoint: Any = None) -> Decision:
        """Blocking twin of :meth:`Trial.report`."""
        t = self._trial
        loop = t._run.loop
        decision, payload_needed = on_loop(loop, self._report_on_loop, value, step, checkpoint)
        if payload_needed:
            payload = materialize(t._live.provider)  # in this thread
            payload = t._run.prepare_checkpoint(t.number, payload)
            on_loop(loop, self._save_on_loop, payload)
        return decision

    async def _report_on_loop(
        self, value: object, step: int | None, checkpoint: Any
    ) -> tuple[Decision, bool]:
        t = self._trial
        if t._run.cancelling:
            raise TrialStopped(f"trial {t.number} is interrupted: run() was cancelled")
        await t._admit()
        decision, payload_needed = t._record(value, step, checkpoint)
        if not payload_needed:
            await t._run.flush()
        return decision, payload_needed

    async def _save_on_loop(self, payload: Any) -> None:
        t = self._trial
        if not t._live.returned:  # abandoned while it pickled: the runner is not listening
            t._run.save_checkpoint(t._live, payload)
        await t._run.flush()
