"""What kind of callable an objective is, decided once, and the small pieces around calling it.

Three kinds exist, and where each may run follows from it (the executors check):

* trial-style ``async def f(trial)``: runs on the event loop, reports while it trains;
* trial-style ``def f(trial)``: runs in a worker thread with a blocking trial handle;
* budget-style ``f(params, budget, checkpoint) -> value | (value, checkpoint)``, sync or async:
  one call per rung segment, runs anywhere its arguments can be pickled to.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import traceback
from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

from aio_ashb._core import Core, TrialState
from aio_ashb._exceptions import (
    ConfigError,
    ObjectiveMisuseError,
    RemoteError,
    ReportError,
    StorageError,
    TrialStopped,
    WorkerLostError,
)
from aio_ashb._trial import Invocation, Phase, ThreadTrial, Trial

if TYPE_CHECKING:
    from aio_ashb._executors import Executor

_log = logging.getLogger("aio_ashb")


class ObjectiveKind(Enum):
    TRIAL_ASYNC = "async def f(trial)"
    TRIAL_SYNC = "def f(trial)"
    BUDGET_ASYNC = "async def f(params, budget, checkpoint)"
    BUDGET_SYNC = "def f(params, budget, checkpoint)"

    @property
    def is_async(self) -> bool:
        return self in (ObjectiveKind.TRIAL_ASYNC, ObjectiveKind.BUDGET_ASYNC)

    @property
    def budget_style(self) -> bool:
        return self in (ObjectiveKind.BUDGET_ASYNC, ObjectiveKind.BUDGET_SYNC)


def describe(fn: object) -> str:
    """A callable's name for messages."""
    return getattr(fn, "__qualname__", None) or repr(fn)


def classify(fn: Callable[..., Any]) -> ObjectiveKind:
    """The kind of ``fn``, from whether it is a coroutine function and from its signature.

    Trial-style takes one required positional argument, budget-style three; ``*args`` alone
    counts as trial-style (a decorator without ``functools.wraps``). Optional parameters that
    make both readings possible are refused rather than guessed."""
    if not callable(fn):
        raise ConfigError(f"objective must be callable, got {fn!r}")
    budget = _takes_budget(fn)
    if _is_async(fn):
        return ObjectiveKind.BUDGET_ASYNC if budget else ObjectiveKind.TRIAL_ASYNC
    return ObjectiveKind.BUDGET_SYNC if budget else ObjectiveKind.TRIAL_SYNC


def _is_async(fn: object) -> bool:
    while isinstance(fn, partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _takes_budget(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (some builtins): the classic form
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in sig.parameters.values() if p.kind in kinds]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    if len(required) == 3:
        return True
    if len(required) == 1 and len(positional) < 3:
        return False
    if not positional and varargs:
        return False
    raise ConfigError(
        f"the objective {describe(fn)} must take one required argument (a trial) or three "
        f"(params, budget, checkpoint); its signature is {sig}"
    )


def split_result(number: int, result: Any) -> tuple[Any, bytes | None]:
    """A budget-style call's result: ``value`` or ``(value, checkpoint)``, checkpoint as bytes."""
    if isinstance(result, tuple):
        if len(result) != 2:
            raise ReportError(
                f"trial {number}: a budget-style objective returns value or (value, checkpoint), "
                f"got a tuple of {len(result)}"
            )
        value, checkpoint = result
    else:
        value, checkpoint = result, None
    if isinstance(checkpoint, (bytearray, memoryview)):
        checkpoint = bytes(checkpoint)
    elif checkpoint is not None and not isinstance(checkpoint, bytes):
        raise ReportError(
            f"trial {number}: a budget-style objective's checkpoint must be bytes (or None) so it "
            f"can travel between workers; got {type(checkpoint).__name__}"
        )
    return value, checkpoint


class Failure:
    """How a call of the objective failed: the stored text (a traceback) and, when it was raised
    in this process, the exception."""

    __slots__ = ("exc", "text")

    def __init__(self, text: str, exc: BaseException | None) -> None:
        self.text = text
        self.exc = exc

    def origin(self) -> tuple[Any, ...]:
        """Where it comes from: the exception's type and innermost frame (file, line), or for a
        remote one the last line of its traceback, so that failures can be compared."""
        exc = self.exc
        if isinstance(exc, RemoteError):
            lines = str(exc).strip().splitlines()
            return (RemoteError, lines[-1] if lines else "")
        tb = None if exc is None else exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        frame = None if tb is None else (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        return (type(exc), frame)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Caller:
    """Calls an objective of a given kind for one trial, through the executor, and says how
    the call ended. Budget-style objectives become a loop over ``trial.steps()``: one call per
    rung segment, each from the trial's resource up to its next milestone."""

    def __init__(
        self,
        objective: Callable[..., Any],
        kind: ObjectiveKind,
        executor: Executor,
        core: Core,
        *,
        retries: int,
        retried: dict[int, int],
    ) -> None:
        self.objective = objective
        self.kind = kind
        self.executor = executor
        self.core = core
        self.retries = retries
        self.retried = retried  # trial -> worker losses retried (kept by the study across runs)
        # LoopExecutor.submit is exactly `await fn(trial)`: the runner awaits such an objective
        # itself (`returned`/`failed` around it), which saves a frame per call, about 7 % of a
        # short trial's cost, and one coroutine per paused trial. Every other call crosses
        # submit().
        self.direct = executor.awaits_in_place and kind is ObjectiveKind.TRIAL_ASYNC

    async def call(self, trial: Trial) -> Failure | None:
        """Run the objective once; how it failed, if it did. Storage failures and misuse are
        not the trial's fault: they propagate and end the run."""
        try:
            if self.direct:
                returned = await self.objective(trial)
            elif self.kind.budget_style:
                await self._segments(trial)
                returned = None
            elif self.kind is ObjectiveKind.TRIAL_ASYNC:
                returned = await self.executor.submit(self.objective, trial)
            else:
                returned = await self.executor.submit(self._in_thread, trial)
        except Exception as exc:
            return self.failed(exc)
        return self.returned(trial._inv, returned)

    @staticmethod
    def failed(exc: Exception) -> Failure | None:
        """How a call that raised ``exc`` failed (``None``: it was told to stop); re-raises
        what is not the trial's fault."""
        if isinstance(exc, TrialStopped):
            return None
        if isinstance(exc, (StorageError, ObjectiveMisuseError)):
            raise exc
        if isinstance(exc, RemoteError):
            return Failure(str(exc), exc)  # the traceback, as formatted where the code ran
        return Failure("".join(traceback.format_exception(exc)), exc)

    @staticmethod
    def stray_cancel(exc: BaseException) -> Failure:
        """A call that ended in CancelledError while its run was not cancelling it: its task,
        or something it awaited, was cancelled by someone else. Its trial fails (interrupted,
        it would hold its slot for good: nothing resumes a trial whose run goes on)."""
        text = "".join(traceback.format_exception(exc))
        return Failure(
            f"{text}(the objective ended in CancelledError, but the run did not cancel it: its "
            "task, or something it awaited, was cancelled by someone else)\n",
            exc,
        )

    def returned(self, inv: Invocation, returned: object) -> Failure | None:
        """A call that returned: a failure only if it never reported anything."""
        n = inv.number
        if inv.step == 0 and self.core.state_of(n) is TrialState.RUNNING and not self.core.step_of(n):
            # It returned without a single report (Optuna's `return loss` habit).
            missing = ReportError(
                f"trial {n}'s objective returned "
                + ("" if returned is None else f"{_short(returned)} ")
                + "without reporting a value: report each value with `await trial.report(value)` "
                "(`trial.report(value)` in a def objective) inside `for step in trial.steps()`; "
                "a returned value is not taken as the result"
            )
            return Failure(f"ReportError: {missing}", missing)
        return None

    async def _segments(self, trial: Trial) -> None:
        n = trial.number
        checkpoint: bytes | None = trial.checkpoint
        submit = self.executor.submit
        async for _ in trial.steps():  # waits while paused; ends when the trial is done
            budget = self.core.segment_end(n)
            while True:
                try:
                    result = await submit(self.objective, dict(trial.params), budget, checkpoint)
                    break
                except WorkerLostError as exc:
                    used = self.retried.get(n, 0)
                    if used >= self.retries:
                        raise
                    self.retried[n] = used + 1
                    _log.warning("trial %d: %s; retry %d of %d", n, exc, used + 1, self.retries)
            value, produced = split_result(n, result)
            if produced is not None:
                checkpoint = produced
            # Only a new checkpoint is given: the previous one keeps the step it was saved at.
            await trial.report(value, step=budget, checkpoint=produced)

    def _in_thread(self, trial: Trial) -> object:
        """The objective's call in its thread (ThreadExecutor refuses an awaitable result)."""
        inv, loop = trial._inv, trial._host.loop
        try:
            return self.objective(ThreadTrial(trial))
        finally:
            # Tell the loop before this thread's result reaches its task (callbacks run in
            # order): a promotion decided in between must call the objective again, not resume
            # a call that has returned. (Not if the loop is gone: an abandoned thread may end
            # after its run.)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(setattr, inv, "phase", Phase.OVER)
