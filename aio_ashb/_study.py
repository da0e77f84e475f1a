"""The runner: the one module where the core, the storage and the trial code meet.

A :class:`Study` owns a :class:`Core` and a :class:`Storage`. ``run()`` creates a :class:`_Run`,
whose single task group owns every trial task. Worker slots are a counter rather than a
``CapacityLimiter`` on purpose: when a slot frees, the scheduler (the paper's ``get_job``)
chooses who gets it, promotion or new trial, so slots are granted by ``_Run.fill`` and never
queued for. Everything is event-driven: a report that frees a slot fills it at once, in the same
call; nothing polls and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import pickle
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeAlias

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup
from sortedcontainers import SortedList

from aio_ashb._core import (
    ASHA,
    Checkpointed,
    Core,
    Decision,
    Direction,
    Enqueued,
    Event,
    FrozenTrial,
    RandomSampler,
    Reported,
    Sampler,
    SearchSpace,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialState,
    check_step,
    check_value,
    sampler_from_dict,
)
from aio_ashb._exceptions import (
    ConfigError,
    CorruptDatabaseError,
    DuplicateStudyError,
    ObjectiveMisuse,
    RemoteError,
    ReportError,
    StateError,
    StorageError,
    StudyLockedError,
    StudyNotFoundError,
    TooManyFailuresError,
    TrialStopped,
    WorkerLostError,
)
from aio_ashb._executors import Executor, LoopExecutor, ThreadExecutor
from aio_ashb._progress import Progress
from aio_ashb._report import StudyStatus, status_of
from aio_ashb._trial import ThreadTrial, Trial, materialize
from aio_ashb.storage import MemoryStorage, Pickled, Storage, StudyInfo
from aio_ashb.storage._sqlite import parse_sqlite_url

Objective: TypeAlias = (
    Callable[[Trial], Awaitable[None]]
    | Callable[[ThreadTrial], None]
    | Callable[[dict[str, Any], int, bytes | None], Any]  # budget-style: one call per rung segment
)
_Work: TypeAlias = "Trial | _Live"  # a new trial to run, or a trial to call again
Callback: TypeAlias = Callable[["Study", FrozenTrial], None]
Durability: TypeAlias = Literal["durable", "buffered"]

_now = time.time
# At most this many jobs start in one fill() call (or trials end in one go): a few ms of the loop.
_FILL_BATCH = 128
# A run whose first this-many trials fail the same way before reporting stops with that error.
_FAIL_FAST = 5
_log = logging.getLogger("aio_ashb")


def _is_async(fn: object) -> bool:
    while isinstance(fn, partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _takes_budget(fn: Callable[..., Any]) -> bool:
    """Budget-style ``fn(params, budget, checkpoint)`` or trial-style ``fn(trial)``, by signature:
    three required positional parameters, or one. ``*args`` alone counts as the classic
    trial-style form (a decorator without ``functools.wraps``); optional parameters that make
    both readings possible are refused rather than guessed."""
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
        f"the objective {_name_of(fn)} must take one required argument (a trial) or three "
        f"(params, budget, checkpoint); its signature is {sig}"
    )


def _name_of(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _split_result(number: int, result: Any) -> tuple[Any, bytes | None]:
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


class _Failure:
    """How a call of the objective failed: the stored text (a traceback) and, when it was raised
    in this process, the exception."""

    __slots__ = ("exc", "text")

    def __init__(self, text: str, exc: BaseException | None) -> None:
        self.text = text
        self.exc = exc


def _raised_at(exc: BaseException) -> tuple[Any, ...]:
    """Where an exception comes from: its type and the innermost frame (file, line), or for a
    remote one the last line of its traceback, so that failures can be compared."""
    if isinstance(exc, RemoteError):
        lines = str(exc).strip().splitlines()
        return (RemoteError, lines[-1] if lines else "")
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    frame = None if tb is None else (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    return (type(exc), frame)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_limit(name: str, value: object, *, allow_none: bool = True, minimum: float = 1) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")


def _prepare_checkpoint(storage: Storage, number: int, payload: Any) -> Any:
    """What to append for a checkpoint: pickled here (call it off the event loop) when the
    storage pickles, so a checkpoint that cannot be pickled fails its trial right away."""
    if not storage.pickles_checkpoints or isinstance(payload, Pickled):
        return payload
    try:
        return Pickled(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise ReportError(f"the checkpoint of trial {number} cannot be pickled: {exc!r}") from exc


class _Live:
    """Runner-side state of one invocation of the objective for one trial."""

    __slots__ = (
        "number",
        "holds_slot",
        "paused",
        "released",
        "ended",
        "event",
        "provider",
        "provider_step",
        "scope",
        "remaining",
        "returned",
        "suspended_key",
        "step",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.holds_slot = True
        self.paused = False  # decided PAUSE, not promoted yet
        self.released = False  # told to end while paused (max_paused, or the study ends)
        self.ended = False  # STOP or COMPLETE decided: steps() ends
        self.event: anyio.Event | None = None
        self.provider: Any = None  # latest checkpoint value or callable
        self.provider_step = 0
        self.step = 0  # the invocation's latest step
        self.scope: anyio.CancelScope | None = None
        self.remaining = math.inf  # per-trial timeout left while paused
        self.returned = False  # the objective call has returned (set from its thread too)
        self.suspended_key: tuple[Any, ...] | None = None


class _Run:
    """The state of one ``Study.run()`` call."""

    def __init__(
        self,
        study: Study,
        objective: Objective,
        *,
        executor: Executor,
        budget_style: bool,
        retries: int,
        max_trials: int | None,
        concurrency: int,
        max_paused: int | None,
        trial_timeout: float | None,
        max_failures: int | None,
        callbacks: Sequence[Callback],
    ) -> None:
        self.study = study
        self.core = study._core
        self.storage = study._storage
        self.name = study.name
        self.objective = objective
        self.is_async = _is_async(objective)
        self.executor = executor
        self.budget_style = budget_style
        self.retries = retries
        self.retried = study._retried  # trial -> worker losses retried (kept across runs)
        # LoopExecutor.submit is exactly `await fn(trial)`: calling it directly saves a frame
        # per call, about 7 % of a short trial's cost.
        self.direct = type(executor) is LoopExecutor and not budget_style
        self.tg: TaskGroup  # the trials' task group, set when run() opens it
        self.durable = study._durability == "durable"
        self.dirty = anyio.Event()  # buffered durability: events wait for the flusher
        self.fatal_error: BaseException | None = None
        self.max_trials = max_trials
        self.concurrency = concurrency
        self.max_paused = max_paused
        self.trial_timeout = trial_timeout
        self.max_failures = max_failures
        self.callbacks = callbacks
        self.running = 0
        self.live: dict[int, _Live] = {}
        # With max_paused: the suspended coroutines, the first to release last, by
        # (-milestone, rank key), i.e. the worst trial of the lowest rung goes first.
        self.suspended: SortedList[tuple[Any, ...]] = SortedList()
        self.stopping = False
        self.ending = False
        self.cancelling = False
        self.idle = anyio.Event()
        self.failures = 0
        self.last_failure: str | None = None
        self.deferred: BaseException | None = None
        self.time_left: dict[int, float] = {}  # trial_timeout left by released trials
        self.last_seq = 0
        self.more_to_fill = anyio.Event()  # fill() stopped at _FILL_BATCH with slots still free
        self.reports = 0  # recorded in this run (progress display, status())
        self.started = anyio.current_time()  # the loop's clock: virtual time in tests
        # def objectives: their threads reach the run through this loop (see _trial.on_loop).
        self.loop = asyncio.get_running_loop()
        self.thread_trials = not self.is_async and not budget_style
        # Fail fast: how many trials in a row, from the start of the run, failed the same way
        # before reporting anything (-1: some trial did otherwise), and the first such error.
        self.same_failures = 0
        self.first_failure: tuple[BaseException, tuple[Any, ...]] | None = None

    # -------------------------------------------------------------- dispatch (synchronous)
    def can_start(self) -> bool:
        return self.max_trials is None or self.core.n_trials < self.max_trials

    def fill(self, take: bool = False) -> _Work | None:
        """Give every free slot its next job; set ``idle`` when nothing runs or can run.

        Work that needs a task of its own (a new trial, or a released one called again) gets a
        new task, except that with ``take=True`` the first such piece is returned instead: the
        calling task, whose trial just ended, runs it. Reusing tasks this way halves the cost of
        a short trial (spawning a task is the most expensive step of starting one).
        """
        core = self.core
        taken: _Work | None = None
        if self.cancelling:  # run() is being cancelled: start nothing more
            return None
        started = 0
        while self.running < self.concurrency and not self.stopping:
            if started == _FILL_BATCH:
                # Thousands of free slots at once (the start of a wide run): let the loop breathe
                # between batches; the filler task continues as soon as the loop had a turn.
                self.more_to_fill.set()
                break
            started += 1
            job = core.next_job(can_start=self.can_start(), time=_now())
            if job is None:
                break
            self.append(job)
            self.running += 1
            work: _Work
            if isinstance(job, TrialCreated):
                live = _Live(job.number)
                self.live[job.number] = live
                work = Trial(self, live, job.number, job.params, job.bracket)
            else:
                current = self.live.get(job.number)
                if current is not None and current.paused and not (current.released or current.returned):
                    self.resume_in_place(current)
                    continue
                # Promoted after its coroutine was released, or resumed after an interruption.
                work = self.live[job.number] = _Live(job.number)
            if take and taken is None:
                taken = work
            else:
                self.tg.start_soon(self.worker, work, name=f"aio_ashb trial {job.number}")
        if self.running == 0:
            self.idle.set()
        return taken

    def resume_in_place(self, live: _Live) -> None:
        """Promote a paused trial whose coroutine is still alive: it continues where it is."""
        live.paused = False
        live.holds_slot = True
        if live.suspended_key is not None:
            self.suspended.remove(live.suspended_key)
            live.suspended_key = None
        if live.scope is not None and math.isfinite(live.remaining):
            live.scope.deadline = anyio.current_time() + live.remaining
        if live.event is not None:
            live.event.set()

    async def worker(self, work: _Work | None) -> None:
        """One task of the run's task group: run trials until no work is left for it.

        Each turn calls the objective once and records how it ended. (One function rather than
        a helper per turn: a suspended paused trial holds every frame of this stack.)
        """
        while work is not None:
            live = work if isinstance(work, _Live) else work._live
            n = live.number
            error: _Failure | None = None
            try:
                trial = work if isinstance(work, Trial) else await self.reopen(work)
                if self.trial_timeout is None:
                    error = await self.call(trial)
                else:  # a thread still running at the deadline is abandoned (it cannot be stopped)
                    with anyio.CancelScope() as scope:
                        # The budget is running time: what earlier calls of this trial used
                        # (before a release) is spent, and paused time is not counted.
                        budget = self.time_left.pop(n, self.trial_timeout)
                        scope.deadline = anyio.current_time() + budget
                        live.scope = scope
                        error = await self.call(trial)
                    if scope.cancelled_caught or anyio.current_time() >= scope.deadline:
                        error = _Failure(
                            f"TimeoutError: trial {n} ran longer than trial_timeout={self.trial_timeout} s"
                            + (
                                " (its thread was abandoned: it cannot be stopped)"
                                if self.thread_trials
                                else ""
                            ),
                            None,
                        )
                    elif live.paused:
                        self.time_left[n] = live.remaining
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    self.interrupt(live)
                    with contextlib.suppress(StorageError):  # already failing: keep cancelling
                        await self.flush()
                raise
            except (StorageError, ObjectiveMisuse) as exc:
                self.fatal(exc)
                return
            finally:
                live.returned = True  # also when its thread was abandoned: it reports no more
                if self.live.get(n) is live:
                    del self.live[n]
            self.settle(live, error)
            work = self.release_slot(live, take=True)

    async def reopen(self, live: _Live) -> Trial:
        """A trial called again: from its last checkpoint, skipping steps already recorded."""
        n = live.number
        found = await self.storage.load_checkpoint(self.name, n)
        frozen = self.core.frozen(n)
        ckpt_step, payload = found if found is not None else (0, None)
        return Trial(
            self,
            live,
            n,
            frozen.params,
            frozen.bracket,
            checkpoint=payload,
            step=ckpt_step,
            skip_until=frozen.step,
        )

    def append(self, event: Event) -> None:
        """Queue ``event`` for the log (the core has applied it). A storage that cannot take it
        (its file is gone, it is closed) ends the run: its next flush raises why."""
        try:
            self.last_seq = self.storage.append(self.name, (event,))
        except StorageError as exc:
            self.fatal(exc)
            return
        self.mark_dirty()

    def drop_checkpoint(self, number: int) -> None:
        """The trial can never resume: free its checkpoint's space."""
        if self.core.has_checkpoint(number):
            try:
                self.storage.drop_checkpoint(self.name, number)
            except StorageError as exc:
                self.fatal(exc)

    def mark_dirty(self) -> None:
        """Buffered durability: wake the flusher (it commits whatever is queued)."""
        if not self.durable and not self.dirty.is_set():
            self.dirty.set()

    def fatal(self, exc: BaseException) -> None:
        """The storage failed: stop everything (trials are interrupted) and raise ``exc``."""
        if self.fatal_error is None:
            self.fatal_error = exc
        self.tg.cancel_scope.cancel()

    def interrupt_remaining(self) -> None:
        """After a fatal error: trials the core still has RUNNING are INTERRUPTED, in memory at
        least (the log may not take it), as the next runner will find them."""
        for n in self.core.numbers_in(TrialState.RUNNING):
            ev = TrialInterrupted(n, _now())
            self.core.apply(ev)
            with contextlib.suppress(StorageError):
                self.storage.append(self.name, (ev,))

    # -------------------------------------------------------------- called by trials
    def record(self, live: _Live, step: int, value: float) -> Decision:
        """Apply a report. A pause gives the slot back and refills it at once; a trial that
        stops or completes keeps its slot until its objective returns (it is still working)."""
        ev = Reported(live.number, step, value, _now())
        decision = self.core.apply(ev)
        self.reports += 1
        self.append(ev)
        if decision is Decision.CONTINUE:
            return decision
        assert decision is not None
        if decision is Decision.PAUSE:
            live.paused = True
            if live.scope is not None:
                live.remaining = live.scope.deadline - anyio.current_time()
                live.scope.deadline = math.inf
            self.release_slot(live)
            if not live.paused:  # the freed slot went straight back to it: promoted in place
                return Decision.CONTINUE
        else:
            live.ended = True
            self.drop_checkpoint(live.number)
            self.finished(live.number)
        return decision

    def prepare_checkpoint(self, number: int, payload: Any) -> Any:
        return _prepare_checkpoint(self.storage, number, payload)

    def save_checkpoint(self, live: _Live, payload: Any) -> None:
        if self.core.state_of(live.number).is_finished:
            return
        # A callable runs now, so it captured the trial as of its latest step; a value is as of
        # the step it was given with.
        step = live.step if callable(live.provider) else live.provider_step
        ev = Checkpointed(live.number, step, payload, _now())
        self.core.apply(ev)
        self.append(ev)

    async def flush(self) -> None:
        """Durable mode: wait until every event appended so far is committed (the report path's
        await). Buffered mode: return at once; the flusher task commits."""
        if self.durable and self.last_seq > self.storage.durable_seq:
            await self.storage.flush(self.last_seq)

    def release_slot(self, live: _Live, take: bool = False) -> _Work | None:
        if live.holds_slot:
            live.holds_slot = False
            self.running -= 1
        elif not take:
            return None
        return self.fill(take)

    async def wait_promotion(self, live: _Live) -> bool:
        """Suspend a paused trial until it is promoted (True) or released (False)."""
        if live.released or self.cancelling:
            return False
        if not live.paused:
            return True
        if self.ending:
            live.released = True
            return False
        live.event = event = anyio.Event()
        if self.max_paused is not None:  # rank suspended trials only when some may be released
            milestone, key = self.core.waiting_position(live.number)
            live.suspended_key = (-milestone, key)
            self.suspended.add(live.suspended_key)
            if len(self.suspended) > self.max_paused:
                self.release(self.live[self.suspended[-1][1][1]])
        try:
            await event.wait()
        finally:
            live.event = None
            if live.suspended_key is not None:  # cancelled while waiting
                self.suspended.remove(live.suspended_key)
                live.suspended_key = None
        return not (live.released or self.cancelling)

    def release(self, live: _Live) -> None:
        """End a suspended coroutine; the trial stays PAUSED and promotable (from its checkpoint)."""
        live.released = True
        if live.suspended_key is not None:
            self.suspended.remove(live.suspended_key)
            live.suspended_key = None
        if live.event is not None:
            live.event.set()

    def finished(self, number: int) -> None:
        if not self.callbacks:
            return
        frozen = self.core.frozen(number)
        for cb in self.callbacks:
            try:
                cb(self.study, frozen)
            except Exception as exc:  # a broken callback ends the run, after a clean drain
                if self.deferred is None:
                    self.deferred = exc
                self.stop()

    def stop(self) -> None:
        self.stopping = True
        self.fill()

    # -------------------------------------------------------------- one invocation
    async def call(self, trial: Trial) -> _Failure | None:
        """Run the objective; return how it failed, if it did."""
        try:
            if self.direct:
                returned = await self.objective(trial)  # type: ignore[arg-type,call-arg,misc]
            elif self.budget_style:
                returned = await self.segments(trial)
            elif self.is_async:
                returned = await self.executor.submit(self.objective, trial)
            else:
                returned = await self.executor.submit(self.call_in_thread, trial)
        except TrialStopped:
            return None
        except (StorageError, ObjectiveMisuse):
            raise  # not the trial's fault: the run stops
        except RemoteError as exc:
            return _Failure(str(exc), exc)  # the traceback, as formatted where the code ran
        except Exception as exc:
            return _Failure(traceback.format_exc(), exc)
        if self.core.state_of(trial.number) is TrialState.RUNNING and not self.core.step_of(trial.number):
            # It returned without a single report (Optuna's `return loss` habit).
            missing = ReportError(
                f"trial {trial.number}'s objective returned "
                + ("" if returned is None else f"{_short(returned)} ")
                + "without reporting a value: report each value with `await trial.report(value)` "
                "(`trial.report(value)` in a def objective) inside `for step in trial.steps()`; "
                "a returned value is not taken as the result"
            )
            return _Failure(f"ReportError: {missing}", missing)
        return None

    async def segments(self, trial: Trial) -> Any:
        """A budget-style objective: one call per rung segment, each from the trial's current
        resource up to its next milestone, handing the returned checkpoint to the next call."""
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
            live = trial._live
            if live.scope is not None and anyio.current_time() >= live.scope.deadline:
                return  # a thread cannot be stopped: past trial_timeout its late result is dropped
            value, produced = _split_result(n, result)
            if produced is not None:
                checkpoint = produced
            # Only a new checkpoint is given: the previous one keeps the step it was saved at.
            await trial.report(value, step=budget, checkpoint=produced)
        return None

    def call_in_thread(self, trial: Trial) -> object:
        """The objective's call in its thread (ThreadExecutor refuses an awaitable result)."""
        sync_fn: Callable[[ThreadTrial], object] = self.objective  # type: ignore[assignment]
        try:
            return sync_fn(ThreadTrial(trial))
        finally:
            # Tell the loop before this thread's result reaches its task (callbacks run in
            # order): a promotion decided in between must call the objective again, not resume
            # a call that has returned. (Not if the loop is gone: an abandoned thread may end
            # after its run.)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(setattr, trial._live, "returned", True)

    def settle(self, live: _Live, failure: _Failure | None) -> None:
        """Write how an invocation ended, from the trial's state in the core."""
        n = live.number
        state = self.core.state_of(n)
        if state.is_finished:
            self.same_failures = -1
            return
        if self.cancelling:  # a thread trial that ended because run() is being cancelled
            self.interrupt(live)
            return
        if n in self.live:
            return  # promoted again meanwhile: a newer invocation owns the trial
        if failure is not None:
            self.failures += 1
            self.last_failure = failure.text
            self.end_trial(n, TrialState.FAILED, failure.text)
            self.fail_fast(n, failure)
            if self.max_failures is not None and self.failures >= self.max_failures:
                self.stop()
        elif state is TrialState.RUNNING:
            self.same_failures = -1
            self.end_trial(n, TrialState.COMPLETE, None)  # the objective returned early
        # PAUSED and returned: released; it stays promotable until the study ends.

    def fail_fast(self, number: int, failure: _Failure) -> None:
        """A run whose first trials all fail the same way (same exception type, raised at the
        same line) before any trial of the run reported anything — a bug in the objective, a
        service that is down — stops and raises that error, instead of failing every trial it
        was given."""
        if self.same_failures < 0 or failure.exc is None or self.reports:  # some trial reported
            self.same_failures = -1
            return
        where = _raised_at(failure.exc)
        if self.first_failure is None:
            self.first_failure = (failure.exc, where)
        elif self.first_failure[1] != where:
            self.same_failures = -1
            return
        self.same_failures += 1
        if self.same_failures == _FAIL_FAST and self.deferred is None:
            self.deferred = self.first_failure[0]
            self.stop()

    def end_trial(self, number: int, state: TrialState, error: str | None) -> None:
        ev = TrialEnded(number, state, error, _now())
        self.core.apply(ev)
        self.append(ev)
        self.drop_checkpoint(number)
        self.finished(number)

    def interrupt(self, live: _Live) -> None:
        n = live.number
        if self.core.state_of(n) is not TrialState.RUNNING or live.released:
            return
        # A thread cannot be asked for a checkpoint while it computes (its thread was abandoned,
        # mid-step): such a trial resumes from the last checkpoint it saved.
        if live.provider is not None and not self.thread_trials:
            # The trial is being torn down: if its checkpoint fails, its last report stands.
            with contextlib.suppress(Exception):
                self.save_checkpoint(live, self.prepare_checkpoint(n, materialize(live.provider)))
        ev = TrialInterrupted(n, _now())
        self.core.apply(ev)
        self.append(ev)

    async def end(self) -> None:
        """The study is over for this run: release every suspended coroutine (in batches: each
        one released wakes a task, and thousands at once would hold the loop)."""
        self.ending = True
        self.stopping = True
        for i, live in enumerate(list(self.live.values()), 1):
            if live.event is not None:
                self.release(live)
            if i % _FILL_BATCH == 0:
                await anyio.lowlevel.checkpoint()

    def cancel_threads(self) -> None:
        self.cancelling = True
        self.stopping = True
        for live in list(self.live.values()):
            if live.event is not None:
                live.event.set()


@dataclass(frozen=True, slots=True)
class AskedJob:
    """Work handed out by :meth:`Study.ask`: train ``params`` from ``step`` up to ``target``.

    ``checkpoint`` is the trial's last checkpoint and ``step`` the step it was saved at (``None``
    and 0 for a new trial, or when no checkpoint was saved: then train from scratch; reports for
    steps recorded before are accepted and ignored). Report with :meth:`Study.tell` at ``target``
    (or at steps in between).
    """

    number: int
    params: dict[str, Any]
    bracket: int
    step: int
    target: int
    checkpoint: Any


class Study:
    """A hyperparameter search: a space, a scheduler, a sampler and its stored history.

    Create one with :func:`create_study` or :func:`load_study`. Use it as an async context
    manager (or call :meth:`close`) so the storage it opened is closed.
    """

    def __init__(
        self,
        name: str,
        storage: Storage,
        core: Core,
        *,
        owns_storage: bool,
        durability: Durability = "durable",
        lease_ttl: float = 30.0,
    ) -> None:
        self._name = name
        self._storage = storage
        self._core = core
        self._owns_storage = owns_storage
        self._durability = durability
        self._lease_ttl = lease_ttl
        # Names this runner in the lease, so a second runner's error says who holds the study.
        self._holder = f"pid {os.getpid()} on {socket.gethostname()} (runner {uuid.uuid4().hex[:12]})"
        self._lease_renewed: float | None = None  # ask/tell: when this study last took the lease
        self._run: _Run | None = None
        # Open ask() jobs: trial -> the step recorded before the job (tell() skips up to it).
        self._asked: dict[int, int] = {}
        self._retried: dict[int, int] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Study(name={self._name!r}, trials={self._core.n_trials})"

    async def __aenter__(self) -> Study:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush and close the storage (if this study opened it). Idempotent."""
        if self._closed:
            return
        if self._run is not None:
            raise StateError("close() called while run() is in progress; cancel run() first")
        self._closed = True
        try:
            if self._lease_renewed is not None:
                await self._storage.release_lease(self._name, self._holder)
                self._lease_renewed = None
        finally:
            if self._owns_storage:
                await self._storage.close()
            else:
                await self._storage.flush()

    def _check_usable(self) -> None:
        if self._closed:
            raise StateError(f"study {self._name!r} is closed")

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self._name

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def space(self) -> SearchSpace:
        return self._core.space

    @property
    def scheduler(self) -> ASHA:
        return self._core.scheduler

    @property
    def sampler(self) -> Sampler:
        return self._core.sampler

    @property
    def direction(self) -> Direction:
        return self._core.direction

    @property
    def trials(self) -> list[FrozenTrial]:
        """Every trial, by number: state, params, rungs reached and values recorded there."""
        return self._core.trials()

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The best trial at the highest milestone reached so far (None before any milestone)."""
        return self._core.best()

    @property
    def counts(self) -> dict[TrialState, int]:
        """Number of trials in each state."""
        return dict(self._core.counts)

    @property
    def rungs(self) -> list[list[tuple[int, int]]]:
        """Per bracket, per rung: ``(milestone, results recorded)``."""
        return self._core.rung_sizes()

    @property
    def is_running(self) -> bool:
        return self._run is not None

    def status(self) -> StudyStatus:
        """A snapshot: trials by state, rung occupancy per bracket, the best trial, and while
        ``run()`` is in progress the reports it recorded and its elapsed seconds. Costs
        O(paused trials + rungs); ``.to_dict()`` is JSON-ready."""
        run = self._run
        if run is None:
            return status_of(self._name, self._core)
        elapsed = anyio.current_time() - run.started
        return status_of(self._name, self._core, reports=run.reports, elapsed=elapsed)

    async def learning_curve(self, number: int) -> dict[int, float]:
        """Every value trial ``number`` reported, as ``{step: value}``."""
        self._check_usable()
        self._core.state_of(number)  # raises for an unknown trial
        return await self._storage.read_values(self._name, number)

    async def enqueue(self, params: Mapping[str, Any]) -> None:
        """Try ``params`` before any sampled configuration (validated against the space now).

        Outside ``run()`` this takes the study's lease, like ``ask()``: only its holder writes.
        """
        self._check_usable()
        validated = self._core.space.validate(params)
        if self._run is None:
            await self._hold_lease()
        ev = Enqueued(validated, _now())
        self._core.apply(ev)
        if self._run is not None:
            self._run.append(ev)
            await self._run.flush()
        else:
            await self._flush_if_durable(self._storage.append(self._name, (ev,)))

    def stop(self) -> None:
        """Ask the current ``run()`` to finish: no new trials or promotions; running trials
        continue to their next pause or end, then ``run()`` returns."""
        if self._run is not None:
            self._run.stop()

    # ------------------------------------------------------------------ run
    async def run(
        self,
        objective: Objective,
        *,
        max_trials: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - graceful stop, not a cancel
        concurrency: int | None = None,
        executor: Executor | None = None,
        retries: int = 0,
        max_paused: int | None = None,
        trial_timeout: float | None = None,
        max_failures: int | None = None,
        callbacks: Iterable[Callback] = (),
        progress: bool = False,
    ) -> None:
        """Run trials of ``objective`` until the study is done, then return.

        ``objective`` is trial-style, ``async def f(trial)`` (runs on this event loop) or
        ``def f(trial)`` (runs in a worker thread, with a blocking ``trial.report``), or
        budget-style, ``f(params, budget, checkpoint) -> value | (value, checkpoint)``, sync or
        async, called once per rung segment to train up to ``budget`` from ``checkpoint``
        (bytes or None). ``executor`` says where calls run (default: this loop for async
        functions, threads for plain ones; :class:`ProcessExecutor` and ``DaskExecutor`` take
        budget-style objectives). A trial whose worker died is run again from its last
        checkpoint up to ``retries`` times, then FAILED.

        ``max_trials`` bounds the
        number of trials in the study (earlier runs included; ``None``: no bound, then stop with
        ``timeout`` or :meth:`stop`). ``concurrency`` trials run at once (default: the
        executor's worker count, else 1); paused trials give
        their slot back. At most ``max_paused`` paused coroutines stay suspended; the
        lowest-ranked beyond that are released and, if promoted later, called again with their
        last checkpoint. ``timeout`` (seconds) stops the run like :meth:`stop`;
        ``trial_timeout`` fails a trial that runs (paused time excluded) longer than that.
        After ``max_failures`` failed trials the run stops and raises
        :class:`TooManyFailuresError`. ``callbacks`` are called with ``(study, trial)`` for each
        trial that finishes. ``progress=True`` shows live progress on stderr: a table redrawn in
        place on a terminal (with ``rich`` installed), a line every 5 s otherwise.

        When ``run()`` returns, no trial is running and trials still paused are STOPPED. If it is
        cancelled, running trials are INTERRUPTED (with a last checkpoint if they gave one),
        storage is flushed, and a later ``run()`` resumes them first.
        """
        self._check_usable()
        if self._run is not None:
            raise StateError(f"study {self._name!r} is already running")
        if self._asked:
            raise StateError("this study has jobs handed out by ask(); tell() them first")
        if not callable(objective):
            raise ConfigError(f"objective must be callable, got {objective!r}")
        _check_limit("max_trials", max_trials, minimum=0)
        if max_trials is not None and not isinstance(max_trials, int):
            raise ConfigError(f"max_trials must be an integer, got {max_trials!r}")
        _check_limit("concurrency", concurrency)
        if concurrency is not None and not isinstance(concurrency, int):
            raise ConfigError(f"concurrency must be an integer, got {concurrency!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
        budget_style = _takes_budget(objective)
        is_async = _is_async(objective)
        if executor is None:
            executor = LoopExecutor() if is_async else ThreadExecutor()
        elif not isinstance(executor, Executor):
            raise ConfigError(f"executor must be an Executor (e.g. ProcessExecutor()), got {executor!r}")
        executor.check(objective, is_async=is_async, trial_style=not budget_style)
        _check_limit("max_paused", max_paused, minimum=0)
        _check_limit("timeout", timeout, minimum=0)
        _check_limit("trial_timeout", trial_timeout, minimum=0)
        _check_limit("max_failures", max_failures)
        cbs = list(callbacks)
        for cb in cbs:
            if not callable(cb):
                raise ConfigError(f"callbacks must be callable, got {cb!r}")

        try:
            # Inside the try: a cancellation that arrives as the lease is taken still releases it.
            await self._storage.acquire_lease(self._name, self._holder, self._lease_ttl)
            await self._recover()
            await executor._enter_run()
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._storage.release_lease(self._name, self._holder)
            raise
        if concurrency is None:
            concurrency = executor.workers or 1
        run = _Run(
            self,
            objective,
            executor=executor,
            budget_style=budget_style,
            retries=retries,
            max_trials=max_trials,
            concurrency=concurrency,
            max_paused=max_paused,
            trial_timeout=trial_timeout,
            max_failures=max_failures,
            callbacks=cbs,
        )
        self._run = run
        display = Progress(self, max_trials=max_trials) if progress else None
        if display is not None:
            display.open()
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self._heartbeat, run)
                services.start_soon(self._filler, run)
                if display is not None:
                    services.start_soon(display.run)
                if not run.durable:
                    services.start_soon(self._flusher, run)
                async with anyio.create_task_group() as tg:
                    run.tg = tg
                    try:
                        run.fill()
                        with anyio.move_on_after(math.inf if timeout is None else timeout):
                            await run.idle.wait()
                        if not run.idle.is_set():  # timeout: drain running trials gracefully
                            run.stop()
                            await run.idle.wait()
                    except anyio.get_cancelled_exc_class():
                        run.cancel_threads()
                        raise
                    await run.end()
                services.cancel_scope.cancel()
            if run.fatal_error is not None:
                run.interrupt_remaining()
            else:
                # Every task has settled. Paused trials no run will promote now are STOPPED.
                for i, n in enumerate(self._core.waiting_trials(), 1):
                    run.end_trial(n, TrialState.STOPPED, None)
                    if i % _FILL_BATCH == 0:  # thousands of them: let the loop breathe
                        await anyio.lowlevel.checkpoint()
                await self._storage.flush(run.last_seq)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._storage.flush()
            raise
        finally:
            if display is not None:
                display.close()  # the final frame: trials stopped or interrupted by now
            self._run = None
            self._lease_renewed = None  # released below: ask() must take it (and replay) again
            with anyio.CancelScope(shield=True):
                await executor._leave_run()
                with contextlib.suppress(StorageError):
                    await self._storage.release_lease(self._name, self._holder)
        if run.fatal_error is not None:
            raise run.fatal_error
        if run.deferred is not None:
            raise run.deferred
        if run.max_failures is not None and run.failures >= run.max_failures:
            raise TooManyFailuresError(
                f"max_failures={run.max_failures} reached: {run.failures} trials failed in this "
                f"run (the running ones finished first); the last one:\n{run.last_failure}"
            )

    async def _heartbeat(self, run: _Run) -> None:
        """Renew the study's lease while the run lasts, so no other runner takes it over.

        A renewal that fails for a passing reason (a busy database) is retried at the next beat;
        the run stops if the lease was taken over, or could not be renewed for a whole TTL."""
        renewed = time.monotonic()
        while True:
            await anyio.sleep(self._lease_ttl / 3)
            try:
                await self._storage.renew_lease(self._name, self._holder, self._lease_ttl)
                renewed = time.monotonic()
            except StudyLockedError as exc:
                run.fatal(exc)
                return
            except StorageError as exc:
                if time.monotonic() - renewed >= self._lease_ttl:
                    run.fatal(exc)
                    return

    async def _filler(self, run: _Run) -> None:
        """Continue a fill() that stopped after _FILL_BATCH jobs, once the loop had a turn."""
        while True:
            await run.more_to_fill.wait()
            run.more_to_fill = anyio.Event()
            run.fill()

    async def _flusher(self, run: _Run) -> None:
        """Buffered durability: commit what reports queued, one group commit after another."""
        while True:
            await run.dirty.wait()
            run.dirty = anyio.Event()
            try:
                await self._storage.flush(run.last_seq)
            except StorageError as exc:
                run.fatal(exc)
                return

    # ------------------------------------------------------------------ ask / tell
    async def ask(self) -> AskedJob:
        """Hand out the next job (promotion, resumed trial or new trial) for work done elsewhere.

        The same core decides as in ``run()``; ``ask``/``tell`` and ``run`` are not used at the
        same time on one study.
        """
        self._check_usable()
        if self._run is not None:
            raise StateError("ask() cannot be used while run() is in progress")
        await self._hold_lease()
        core = self._core
        job = core.next_job(can_start=True, time=_now())
        assert job is not None  # a new trial can always be started
        seq = self._storage.append(self._name, (job,))
        checkpoint: Any = None
        step = 0
        if not isinstance(job, TrialCreated):
            found = await self._storage.load_checkpoint(self._name, job.number)
            if found is not None:
                step, checkpoint = found
        frozen = core.frozen(job.number)
        self._asked[job.number] = frozen.step
        await self._flush_if_durable(seq)
        return AskedJob(
            number=job.number,
            params=frozen.params,
            bracket=frozen.bracket,
            step=step,  # where the checkpoint is; without one, training starts over
            target=core.target_of(job.number),
            checkpoint=checkpoint,
        )

    async def tell(
        self, job: AskedJob, value: float, *, step: int | None = None, checkpoint: Any = None
    ) -> Decision:
        """Report ``value`` for ``job`` at ``step`` (default: ``job.target``).

        Returns the decision: CONTINUE (keep going, report again later), PAUSE (the job is done;
        a later ``ask`` may promote it), STOP or COMPLETE. ``checkpoint`` is stored with it.
        """
        self._check_usable()
        if job.number not in self._asked:
            raise StateError(f"trial {job.number} is not an open job of this study")
        await self._hold_lease()
        core = self._core
        at = job.target if step is None else check_step(step)
        if at <= self._asked[job.number]:
            # Retraining without a checkpoint: this step is recorded already (as in run()).
            check_value(value)
            return Decision.CONTINUE
        payload: Any = None
        if checkpoint is not None:  # prepared first: a checkpoint that fails changes nothing
            payload = await anyio.to_thread.run_sync(
                _prepare_checkpoint, self._storage, job.number, materialize(checkpoint)
            )
        ev = Reported(job.number, at, value, _now())
        decision = core.apply(ev)
        assert decision is not None
        events: list[Event] = [ev]
        if checkpoint is not None and not core.state_of(job.number).is_finished:
            ck = Checkpointed(job.number, ev.step, payload, ev.time)
            core.apply(ck)
            events.append(ck)
        if decision is not Decision.CONTINUE:
            del self._asked[job.number]
        seq = self._storage.append(self._name, events)
        if decision in (Decision.STOP, Decision.COMPLETE) and core.has_checkpoint(job.number):
            self._storage.drop_checkpoint(self._name, job.number)
        await self._flush_if_durable(seq)
        return decision

    async def fail(self, job: AskedJob, error: BaseException | str) -> None:
        """Record that ``job`` failed; ``error`` (an exception or a message) is stored."""
        self._check_usable()
        if job.number not in self._asked:
            raise StateError(f"trial {job.number} is not an open job of this study")
        text = "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else str(error)
        ev = TrialEnded(job.number, TrialState.FAILED, text, _now())
        self._core.apply(ev)
        del self._asked[job.number]
        await self._flush_if_durable(self._storage.append(self._name, (ev,)))

    async def _hold_lease(self) -> None:
        """ask/tell: take the study's lease, and renew it once a third of its time has passed."""
        now = time.monotonic()
        if self._lease_renewed is None or now - self._lease_renewed > self._lease_ttl / 3:
            await self._storage.acquire_lease(self._name, self._holder, self._lease_ttl)
            if self._lease_renewed is None:
                await self._recover()
            self._lease_renewed = now

    async def _recover(self) -> None:
        """With the lease just taken: rebuild the state from the log (another runner may have
        written since this study was opened); trials still RUNNING there belong to a runner that
        died, so they become INTERRUPTED, and resume first."""
        core = self._core
        fresh = Core(core.space, core.scheduler, core.sampler, core.direction)
        fresh.replay(await self._storage.read_events(self._name))
        self._core = fresh
        lost = [TrialInterrupted(n, _now()) for n in self._core.numbers_in(TrialState.RUNNING)]
        if lost:
            self._core.replay(lost)
            await self._storage.flush(self._storage.append(self._name, lost))

    async def _flush_if_durable(self, seq: int) -> None:
        """Outside run(): in durable mode, return once the event numbered ``seq`` is committed."""
        if self._durability == "durable":
            await self._storage.flush(seq)


# ---------------------------------------------------------------------- construction
def _parse_storage(storage: Storage | str | None, *, create: bool = True) -> tuple[Storage, bool]:
    if storage is None:
        return MemoryStorage(), True
    if isinstance(storage, Storage):
        return storage, False
    if isinstance(storage, str):
        if storage in ("memory", "memory://", ":memory:"):
            return MemoryStorage(), True
        if storage.startswith("sqlite://"):
            return parse_sqlite_url(storage, create=create), True
        raise ConfigError(
            f"unsupported storage {storage!r}; pass a Storage object, None, 'memory://' or "
            "'sqlite:///path/to/file.db'"
        )
    raise ConfigError(f"storage must be a Storage, a URL string or None, got {storage!r}")


_Options: TypeAlias = tuple[Durability, float]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"name must be valid Unicode text (no lone surrogates), got {name!r}") from None
    if len(name) > 1000:
        raise ConfigError(f"name must be at most 1000 characters, got {len(name)}")
    return name


def _direction(direction: str | Direction) -> Direction:
    try:
        return Direction(direction)
    except ValueError:
        raise ConfigError(f"direction must be 'minimize' or 'maximize', got {direction!r}") from None


def _config(space: SearchSpace, scheduler: ASHA, sampler: Sampler, direction: Direction) -> dict[str, Any]:
    return {
        "format": 1,
        "space": space.to_dict(),
        "scheduler": scheduler.to_dict(),
        "sampler": sampler.to_dict(),
        "direction": direction.value,
    }


def _canonical(value: Any) -> str:
    # JSON text compares NaN constants equal (NaN != NaN as floats) and ignores key order.
    return json.dumps(value, sort_keys=True)


def _check_same_config(
    name: str, storage: Storage, stored: Mapping[str, Any], wanted: Mapping[str, Any]
) -> None:
    """A stored study is continued only with the configuration it was created with."""
    diffs: list[str] = []
    for key in ("space", "scheduler", "sampler", "direction"):
        a, b = stored.get(key), wanted[key]
        if _canonical(a) == _canonical(b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                if _canonical(a.get(k)) != _canonical(b.get(k)):
                    diffs.append(f"  {key}.{k}: stored {_canonical(a.get(k))}, given {_canonical(b.get(k))}")
        else:
            diffs.append(f"  {key}: stored {_canonical(a)}, given {_canonical(b)}")
    if diffs:
        raise ConfigError(
            f"study {name!r} in {storage!r} was created with a different configuration:\n"
            + "\n".join(diffs)
            + "\nPass the stored configuration, choose another name, or delete the study first "
            "(aio_ashb.delete_study, or `aio-ashb delete FILE NAME`)."
        )


async def _open(storage: Storage, owns: bool) -> None:
    try:
        await storage.open()
    except BaseException:
        if owns:
            with anyio.CancelScope(shield=True):
                await storage.close()
        raise


def _core_from(name: str, storage: Storage, config: Mapping[str, Any]) -> Core:
    """The scheduler a stored configuration describes (a malformed one means a damaged file)."""
    try:
        return Core(
            SearchSpace.from_dict(config["space"]),
            ASHA.from_dict(config["scheduler"]),
            sampler_from_dict(config["sampler"]),
            Direction(config["direction"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CorruptDatabaseError(
            f"study {name!r} in {storage!r} has a malformed stored configuration ({type(exc).__name__}: "
            f"{exc}); it cannot be loaded"
        ) from None


async def _build(name: str, storage: Storage, owns: bool, options: _Options) -> Study:
    info, events = await storage.read_study(name)  # one snapshot: configuration and log agree
    return study_from_snapshot(name, storage, info, events, owns=owns, options=options)


def study_from_snapshot(
    name: str,
    storage: Storage,
    info: StudyInfo,
    events: Sequence[Event],
    *,
    owns: bool = False,
    options: _Options = ("durable", 30.0),
) -> Study:
    """The study as of a snapshot read with ``storage.read_study`` (the CLI shows exactly it)."""
    core = _core_from(name, storage, info.config)
    core.replay(events)
    return Study(name, storage, core, owns_storage=owns, durability=options[0], lease_ttl=options[1])


def _options(durability: object, lease_ttl: object) -> _Options:
    if durability not in ("durable", "buffered"):
        raise ConfigError(f"durability must be 'durable' or 'buffered', got {durability!r}")
    _check_limit("lease_ttl", lease_ttl, allow_none=False, minimum=0.001)
    return durability, float(lease_ttl)  # type: ignore[arg-type]


async def create_study(
    *,
    space: Mapping[str, Any] | SearchSpace,
    direction: str | Direction = "minimize",
    scheduler: ASHA | None = None,
    sampler: Sampler | None = None,
    storage: Storage | str | None = None,
    name: str | None = None,
    load_if_exists: bool = False,
    durability: Durability = "durable",
    lease_ttl: float = 30.0,
) -> Study:
    """Create a study (or, with ``load_if_exists=True``, continue the stored one of that name).

    ``space`` maps parameter names to :class:`Float`, :class:`Int`, :class:`Categorical` or plain
    constants. ``scheduler`` defaults to ``ASHA()``, ``sampler`` to ``RandomSampler()`` (a random
    seed, recorded), ``storage`` to a new :class:`MemoryStorage`; ``"sqlite:///path.db"`` selects
    a SQLite file. Loading checks that the given space, scheduler, direction and sampler match the
    stored ones.

    ``durability="durable"`` (default): ``trial.report()`` returns once its event is committed.
    ``"buffered"``: it returns at once and a background task commits (a crash may lose the last
    moments of reports, never a consistent state). ``lease_ttl``: seconds after which the study's
    lease, renewed by a running ``run()``, is considered abandoned by a dead runner.
    """
    options = _options(durability, lease_ttl)
    space_ = SearchSpace(space)
    dir_ = _direction(direction)
    if scheduler is None:
        scheduler = ASHA()
    if not isinstance(scheduler, ASHA):
        raise ConfigError(f"scheduler must be an ASHA instance, got {scheduler!r}")
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigError(f"sampler must be a Sampler (e.g. RandomSampler), got {sampler!r}")
    name = f"study-{uuid.uuid4().hex[:8]}" if name is None else _check_name(name)
    store, owns = _parse_storage(storage)
    await _open(store, owns)
    try:
        if load_if_exists:
            with contextlib.suppress(StudyNotFoundError):
                return await _load_matching(name, store, owns, options, space_, scheduler, sampler, dir_)
        config = _config(space_, scheduler, sampler if sampler is not None else RandomSampler(), dir_)
        try:
            await store.create_study(name, config)
        except DuplicateStudyError:
            if not load_if_exists:
                raise
            # Created by someone else since we looked: continue theirs.
            return await _load_matching(name, store, owns, options, space_, scheduler, sampler, dir_)
        return await _build(name, store, owns, options)
    except BaseException:
        if owns:
            with anyio.CancelScope(shield=True):
                await store.close()
        raise


async def _load_matching(
    name: str,
    store: Storage,
    owns: bool,
    options: _Options,
    space: SearchSpace,
    scheduler: ASHA,
    sampler: Sampler | None,
    direction: Direction,
) -> Study:
    """The stored study ``name``, if it was created with this configuration (the sampler's
    seed may be left out: the stored one continues)."""
    stored = (await store.get_study(name)).config
    if sampler is None:
        try:
            sampler = sampler_from_dict(stored["sampler"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDatabaseError(
                f"study {name!r} in {store!r} has a malformed stored sampler ({exc}); it cannot be loaded"
            ) from None
    _check_same_config(name, store, stored, _config(space, scheduler, sampler, direction))
    return await _build(name, store, owns, options)


async def load_study(
    *,
    name: str,
    storage: Storage | str,
    durability: Durability = "durable",
    lease_ttl: float = 30.0,
) -> Study:
    """Open the stored study ``name``; its state is rebuilt by replaying its events.

    Never creates anything: a ``sqlite:///`` URL naming a missing file raises
    :class:`StudyNotFoundError` and leaves no file behind."""
    options = _options(durability, lease_ttl)
    name = _check_name(name)
    if isinstance(storage, str) and storage.startswith("sqlite://"):
        url_store = parse_sqlite_url(storage, create=False)
        if not url_store.path.exists():
            raise StudyNotFoundError(
                f"no study named {name!r}: {url_store.path} does not exist (load_study opens stored "
                "studies; create_study makes new ones)"
            )
    store, owns = _parse_storage(storage, create=False)
    await _open(store, owns)
    try:
        return await _build(name, store, owns, options)
    except BaseException:
        if owns:
            with anyio.CancelScope(shield=True):
                await store.close()
        raise


async def delete_study(*, name: str, storage: Storage | str) -> None:
    """Delete the stored study ``name``: its configuration, every event and checkpoint.

    Refused with :class:`StudyLockedError` while a runner holds the study (its lease has not
    expired and its process lives); raises :class:`StudyNotFoundError` if there is no such study.
    A ``sqlite:///`` URL naming a missing file is never created."""
    name = _check_name(name)
    if isinstance(storage, str) and storage.startswith("sqlite://"):
        url_store = parse_sqlite_url(storage, create=False)
        if not url_store.path.exists():
            raise StudyNotFoundError(f"no study named {name!r}: {url_store.path} does not exist")
    store, owns = _parse_storage(storage, create=False)
    await _open(store, owns)
    try:
        await store.delete_study(name)
    finally:
        if owns:
            with anyio.CancelScope(shield=True):
                await store.close()
