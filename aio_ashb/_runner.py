"""The run engine: one ``Study.run()``, from its first trial to its last write.

A :class:`Runner` is built from a :class:`Journal` (the core and the log), an executor, a
:class:`Caller` for the objective, a clock and a frozen :class:`RunOptions`. Its :class:`TrialTasks`
owns every trial task. Worker slots are a counter rather than a ``CapacityLimiter`` on purpose:
when a slot frees, the scheduler (the paper's ``get_job``) chooses who gets it, promotion or new
trial, so slots are granted by :meth:`Runner.fill` and never queued for. Everything is
event-driven: a report that frees a slot fills it at once, in the same call; nothing polls and
nothing sleeps. The runner is the trials' :class:`TrialHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel
from sortedcontainers import SortedList

from aio_ashb._core import (
    Checkpointed,
    Decision,
    Event,
    FrozenTrial,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialState,
)
from aio_ashb._exceptions import (
    ObjectiveMisuseError,
    StorageError,
    StudyLockedError,
    TooManyFailuresError,
    TrialStopped,
)
from aio_ashb._gcfreeze import Freezer
from aio_ashb._journal import Journal
from aio_ashb._objective import Caller, Failure
from aio_ashb._run_options import Deadline, RunOptions
from aio_ashb._tasks import TrialTasks
from aio_ashb._trial import Invocation, Phase, Trial, materialize

# At most this many jobs start in one fill() call (or trials end in one go) before the loop gets
# a turn. Starting 32 trials takes 1.0 ms (median, 10,000 trials in bench/scale.py), 128 took 4.2
# ms and their first steps ran in the next turn; that run's p99 loop lag with 0.5-2 s steps was
# 19 ms with 128, 5 ms with 32.
_FILL_BATCH = 32
# And at most about this much time (seconds) of the scheduler's job decisions in one turn of the
# loop, across all the fill() calls in it: the trials that end in one turn would each start the
# next one in it, and a model-based sampler's proposal costs about 0.4 ms (TPESampler, 1,000
# trials in flight in bench/scale.py). Past the budget, the filler task starts the rest in a
# later turn. Measured there (50-200 ms steps, 5,000 trials): p99 loop lag 12.5-13.6 ms with
# 2 ms (1.36-1.47x the ideal time), a median of 9.55 ms with 1 ms (8.0-20.9, 1.45-1.63x), 5.3-9.1
# ms with 0.5 ms (1.39-1.58x): a proposal or two a turn, between the reports, loses nothing.
_FILL_BUDGET = 0.0005
# A run whose first this-many trials fail the same way before any report stops with that error.
_FAIL_FAST = 5

_Work = Trial | Invocation  # a new trial to run, or a trial to call again


def _raised(task: asyncio.Task[Any]) -> bool:
    """Whether a done task's objective failed (a TrialStopped is how a released call ends)."""
    if task.cancelled():
        return True
    exc = task.exception()
    return exc is not None and not isinstance(exc, TrialStopped)


class RunState(IntEnum):
    """How far a run is from its end (each state includes the ones before)."""

    RUNNING = 0
    STOPPING = 1  # no new work: stop(), timeout, max_failures, a callback's error, fail fast
    ENDING = 2  # the study is over for this run: paused trials are released as they come
    CANCELLING = 3  # run() is cancelled: trials are interrupted


class Runner:
    """The state of one ``Study.run()`` call; the trials' host."""

    def __init__(
        self,
        journal: Journal,
        caller: Caller,
        options: RunOptions,
        *,
        clock: Callable[[], float],
        callbacks: Sequence[Callable[[FrozenTrial], None]] = (),
        renew_lease: Callable[[], Awaitable[None]] | None = None,
        lease_ttl: float = 30.0,
        display: Any = None,
    ) -> None:
        self.journal = journal
        self.core = journal.core
        self.storage = journal.storage
        self.caller = caller
        self.options = options
        self.clock = clock
        self.callbacks = callbacks
        self.renew_lease = renew_lease
        self.lease_ttl = lease_ttl
        self.display = display
        self.loop = asyncio.get_running_loop()  # TrialHost: where thread trials hop to
        self.prepares_checkpoints = journal.storage.pickles_checkpoints
        self.durable = options.durable  # read on every report
        self.thread_trials = not caller.kind.is_async and not caller.kind.budget_style
        self.tasks = TrialTasks(self.fatal, self.direct_ended)
        # A new trial's task runs the objective's coroutine itself, without the worker around
        # it, when most trials pause and wait (promotion mode): a paused trial then keeps one
        # coroutine less for the collector to walk (a full collection at 100,000 trials took
        # 585 ms with it, 460 without).
        # Where trials end instead, the worker's reuse of its task for the next one saves more.
        self.direct_tasks = (
            caller.direct and options.trial_timeout is None and journal.core.scheduler.mode == "promotion"
        )
        self.waiting: anyio.CancelScope | None = None  # run()'s wait for the trials; fatal() ends it
        self.state = RunState.RUNNING
        self.running = 0  # slots in use
        self.live: dict[int, Invocation] = {}
        # With max_paused: the suspended invocations, the first to release last, by
        # (-milestone, rank key), i.e. the worst trial of the lowest rung goes first.
        self.suspended: SortedList[tuple[Any, ...]] = SortedList()
        # Paused trials this run can never promote (Core.limit_results, set by run() when
        # max_trials bounds the rungs), for let_go(): held until the study's end, each would
        # keep a suspended coroutine (and what its objective holds) for nothing.
        self.unpromotable = journal.core.unpromotable
        self.freezer: Freezer | None = None  # options.freeze_gc, while run() runs
        self.deadlines: dict[int, Deadline] = {}
        self.idle = anyio.Event()
        # Buffered durability: events wait for the flusher, which waits on flusher_waits for
        # them (a flag and a bare future: logged() runs on every report).
        self.dirty = False
        self.flusher_waits: asyncio.Future[None] | None = None
        self.more_to_fill = anyio.Event()  # fill() stopped at _FILL_BATCH with slots still free
        self.fill_spent = 0.0  # seconds of next_job in this turn of the loop (_FILL_BUDGET)
        self.turn_marked = False  # a _new_turn is scheduled: it resets fill_spent in the next turn
        # Only for a model-based sampler (random starts cost ~30 us: _FILL_BATCH bounds them, and
        # deferring them cost the reuse of trial tasks, p99 lag 6 -> 8 ms in bench/scale.py), and
        # only on a real clock: on a virtual one (simulate()) a budget of real seconds would
        # make the order of starts within an instant depend on the machine's speed.
        real = type(self.loop).time is asyncio.BaseEventLoop.time
        learning = journal.core.history is not None  # (kept for learning samplers only)
        self.fill_budget = _FILL_BUDGET if real and learning else math.inf
        self.fatal_error: BaseException | None = None
        self.deferred: BaseException | None = None  # raised once the run has drained
        self.failures = 0
        self.last_failure: str | None = None
        # Fail fast: how many trials in a row, from the start of the run, failed the same way
        # before any report (-1: some trial did otherwise), and the first such failure.
        self.same_failures = 0
        self.first_failure: Failure | None = None
        self.reports = 0  # recorded in this run (progress display, status())
        self.started = anyio.current_time()

    # -------------------------------------------------------------- writes
    def commit(self, event: Event) -> None:
        """Apply and log ``event`` where no one could handle a failure (dispatch, endings): a
        storage that cannot take it (its file is gone, it is closed) ends the run."""
        try:
            self.journal.commit(event)
        except StorageError as exc:
            self.fatal(exc)
            return
        self.logged()

    def logged(self) -> None:
        """Buffered durability: wake the flusher (it commits whatever is queued), unless it is
        awake already or the storage is durable at once (memory: nothing to wake it for)."""
        if not self.durable and not self.dirty and self.journal.unflushed():
            self.dirty = True
            if self.flusher_waits is not None and not self.flusher_waits.done():
                self.flusher_waits.set_result(None)

    def fatal(self, exc: BaseException) -> None:
        """The storage failed or the objective cannot run: stop everything and raise ``exc``."""
        if self.fatal_error is None:
            self.fatal_error = exc
        self.tasks.cancel()
        if self.waiting is not None:
            self.waiting.cancel()

    def unsettled(self) -> bool:
        return self.durable and self.journal.unflushed()

    async def settle(self) -> None:
        """Durable mode: return once every event appended so far is committed (the report
        path's await). Buffered mode: at once; the flusher task commits."""
        if self.unsettled():
            await self.storage.flush(self.journal.last_seq)

    # -------------------------------------------------------------- dispatch (synchronous)
    def fill(self, take: bool = False) -> _Work | None:
        """Give every free slot its next job; set ``idle`` when nothing runs or can run.

        Work that needs a task of its own (a new trial, or a released one called again) gets a
        new task, except that with ``take=True`` the first such piece is returned instead: the
        calling task, whose trial just ended, runs it. Reusing tasks this way halves the cost of
        a short trial (spawning a task is the most expensive step of starting one).
        """
        taken: _Work | None = None
        started = 0
        max_trials, concurrency = self.options.max_trials, self.options.concurrency
        while self.running < concurrency and self.state is RunState.RUNNING:
            if started == _FILL_BATCH or (self.fill_spent > self.fill_budget and self.running):
                # Thousands of free slots at once (the start of a wide run), or costly proposals:
                # let the loop breathe; the filler task continues once the loop had a turn.
                # (Never with no trial running: then the run would look idle.)
                self.more_to_fill.set()
                break
            started += 1
            can_start = max_trials is None or self.core.n_trials < max_trials
            timed = self.fill_budget != math.inf
            t0 = perf_counter() if timed else 0.0
            try:
                job = self.journal.next_job(can_start=can_start, time=self.clock())
            except StorageError as exc:
                self.fatal(exc)
                return None
            if timed:
                if not self.turn_marked:  # one at a time: each reset would allow another budget
                    self.turn_marked = True
                    self.loop.call_soon(self._new_turn)  # runs in the loop's next turn
                self.fill_spent += perf_counter() - t0
            if job is None:
                break
            if not self.durable:
                self.logged()
            self.running += 1
            work: _Work
            if isinstance(job, TrialCreated):
                inv = self.live[job.number] = Invocation(job.number, self)
                work = Trial(self, inv, dict(job.params), job.bracket)  # a copy: the log's is not theirs
            else:
                current = self.live.get(job.number)
                if current is not None and current.phase is Phase.PAUSED and not current.returned:
                    self.resume_in_place(current)
                    continue
                task = None if current is None else current.task
                if task is not None and task.done() and _raised(task):
                    # Its direct call raised after the pause, unheard yet: it fails now, as it
                    # would have in a worker, and the promotion is void.
                    self.running -= 1
                    self.tasks.end_now(task)
                    if self.core.state_of(job.number) is not TrialState.RUNNING:
                        continue
                    self.running += 1
                # Promoted after its invocation was released, or resumed after an interruption.
                work = self.live[job.number] = Invocation(job.number, self)
            if take and taken is None:
                taken = work
            elif not (self.direct_tasks and isinstance(work, Trial) and self.start_direct(work)):
                self.tasks.start(self.worker(work), f"aio_ashb trial {job.number}")
        if self.running == 0:
            self.idle.set()
        return taken

    def resume_in_place(self, inv: Invocation) -> None:
        """Promote a paused trial whose call is still alive: it continues where it is."""
        inv.phase = Phase.RUNNING
        inv.holds_slot = True
        self._unsuspend(inv)
        deadline = self.deadlines.get(inv.number)
        if deadline is not None:
            deadline.resume()
        inv.wake_up()

    def release_slot(self, inv: Invocation, take: bool = False) -> _Work | None:
        if inv.holds_slot:
            inv.holds_slot = False
            self.running -= 1
        elif not take or self.state >= RunState.ENDING:  # (the study's end releases thousands)
            return None
        return self.fill(take)

    def stop(self) -> None:
        if self.state < RunState.STOPPING:
            self.state = RunState.STOPPING
        self.fill()

    # -------------------------------------------------------------- one task
    def start_direct(self, trial: Trial) -> bool:
        """Start ``trial`` in a task that runs the objective's coroutine itself; its end is
        :meth:`direct_ended`'s. False if the objective could not be called (the worker will
        call it again and record why: calling an async function only binds its arguments)."""
        try:
            coro = self.caller.objective(trial)
        except Exception:
            return False
        inv = trial._inv
        inv.task = self.tasks.start(coro, f"aio_ashb trial {inv.number}", inv)
        return True

    def cancelled(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether a trial task that ended in CancelledError was cancelled by the run, rather
        than by anyone else (its objective, a helper of it, a TaskGroup that cancelled it after
        its body ended): those fail the trial, since nothing would resume it in this run.
        (Not Task.cancelling(): a TaskGroup of CPython 3.11 and 3.12 can leave it at 1.)"""
        return task is None or task in self.tasks.cancelled or self.state is RunState.CANCELLING

    def direct_ended(self, task: asyncio.Task[Any], inv: Invocation) -> None:
        """A direct task is done: what :meth:`worker` does once its await of the objective is
        over, a loop turn later (fill() meanwhile treats the call as returned: inv.task)."""
        n = inv.number
        inv.task = None
        failure: Failure | None = None
        try:
            if task.cancelled():
                if self.cancelled(task):
                    self.interrupt(inv)  # (run()'s end makes it durable, as it does every cancel)
                    return
                try:
                    task.result()
                except asyncio.CancelledError as cancelled:
                    failure = self.caller.stray_cancel(cancelled)
            elif (exc := task.exception()) is None:
                failure = self.caller.returned(inv, task.result())
            elif isinstance(exc, Exception):
                failure = self.caller.failed(exc)
            else:
                return  # KeyboardInterrupt and the like: TrialTasks ends the run with it
        except (StorageError, ObjectiveMisuseError) as exc:
            self.fatal(exc)
            return
        finally:
            inv.phase = Phase.OVER
            if self.live.get(n) is inv:
                del self.live[n]
        self.settle_trial(inv, failure)
        self.release_slot(inv)

    async def worker(self, work: _Work | None) -> None:
        """One trial task: run trials until no work is left for it.

        Each turn calls the objective once and records how it ended. (One function rather than
        a helper per turn: a suspended paused trial holds every frame of this stack.)
        """
        timeout = self.options.trial_timeout
        caller = self.caller
        while work is not None:
            inv = work if isinstance(work, Invocation) else work._inv
            n = inv.number
            failure: Failure | None = None
            try:
                trial = work if isinstance(work, Trial) else await self.reopen(inv)
                if timeout is None and caller.direct:  # one frame less: see Caller.direct
                    try:
                        failure = caller.returned(inv, await caller.objective(trial))
                    except Exception as exc:
                        failure = caller.failed(exc)
                elif timeout is None:
                    failure = await caller.call(trial)
                else:  # a thread still running at the deadline is abandoned (it cannot be stopped)
                    deadline = self.deadlines.setdefault(n, Deadline(timeout))
                    with deadline.start():
                        failure = await caller.call(trial)
                    if deadline.passed():
                        failure = Failure(
                            f"TimeoutError: trial {n} ran longer than trial_timeout={timeout} s"
                            + (
                                " (its thread was abandoned: it cannot be stopped)"
                                if self.thread_trials
                                else ""
                            ),
                            None,
                        )
            except anyio.get_cancelled_exc_class() as exc:
                if not self.cancelled(asyncio.current_task()):
                    failure = caller.stray_cancel(exc)
                else:
                    with anyio.CancelScope(shield=True):
                        self.interrupt(inv)
                        with contextlib.suppress(StorageError):  # already failing: keep cancelling
                            await self.settle()
                    raise
            except (StorageError, ObjectiveMisuseError) as exc:
                self.fatal(exc)
                return
            finally:
                inv.phase = Phase.OVER  # also when its thread was abandoned: it reports no more
                if self.live.get(n) is inv:
                    del self.live[n]
            self.settle_trial(inv, failure)
            work = self.release_slot(inv, take=True)

    async def reopen(self, inv: Invocation) -> Trial:
        """A trial called again: from its last checkpoint, skipping steps already recorded."""
        n = inv.number
        found = await self.storage.load_checkpoint(self.journal.name, n)
        frozen = self.core.frozen(n)
        ckpt_step, payload = found if found is not None else (0, None)
        return Trial(
            self,
            inv,
            frozen.params,  # a copy already
            frozen.bracket,
            checkpoint=payload,
            step=ckpt_step,
            skip_until=frozen.step,
        )

    # -------------------------------------------------------------- TrialHost
    def record(self, inv: Invocation, step: int, value: float) -> Decision:
        """Apply a report. A pause gives the slot back and refills it at once; a trial that
        stops or completes keeps its slot until its objective returns (it is still working)."""
        # A storage failure here raises in the trial's report(), and its call ends the run.
        decision = self.journal.commit(Reported(inv.number, step, value, self.clock()))
        assert decision is not None
        if not self.durable:
            self.logged()
        self.reports += 1
        if decision is Decision.CONTINUE:
            return decision
        if decision is Decision.PAUSE:
            inv.phase = Phase.PAUSED
            if self.unpromotable:
                self.let_go()
            deadline = self.deadlines.get(inv.number)
            if deadline is not None:
                deadline.pause()
            self.release_slot(inv)
            if inv.phase is Phase.RUNNING:  # the freed slot went straight back: promoted in place
                return Decision.CONTINUE
        else:
            inv.phase = Phase.ENDED
            if self.unpromotable:  # a report that jumped past rungs to the end pushed one out
                self.let_go()
            self.journal.drop_checkpoint(inv.number)  # it can never resume: free the space
            self.finished(inv.number)
        return decision

    def prepare_checkpoint(self, number: int, payload: Any) -> Any:
        return self.storage.prepare_checkpoint(number, payload)

    def save_checkpoint(self, inv: Invocation, payload: Any) -> None:
        if self.core.state_of(inv.number).is_finished:
            return
        # A callable runs now, so it captured the trial as of its latest step; a value is as of
        # the step it was given with.
        step = inv.step if callable(inv.provider) else inv.provider_step
        self.commit(Checkpointed(inv.number, step, payload, self.clock()))

    async def proceed(self, inv: Invocation) -> bool:
        """The gate: suspend a paused invocation until it is promoted (True) or released."""
        if self.suspend(inv):
            await inv
        return inv.phase is Phase.RUNNING

    def suspend(self, inv: Invocation) -> bool:
        """A paused invocation at the gate: whether it must wait until it is promoted or
        released (then its wait has started: the caller awaits ``inv`` itself, which is the
        whole wait, see Invocation)."""
        if inv.phase is not Phase.PAUSED:
            return False
        if self.state >= RunState.ENDING:
            inv.phase = Phase.RELEASED
            return False
        if inv.waiting or inv.cancelled():  # (changing nothing: the first wait goes on)
            raise ObjectiveMisuseError(
                f"trial {inv.number} is already waiting at its rung in another task: a paused "
                "trial waits in one place, the steps() or report() of the task that runs it"
            )
        inv.start_wait()
        if self.freezer is not None:  # before a release below can end the wait
            self.freezer.suspended()
        max_paused = self.options.max_paused
        if max_paused is not None:  # rank suspended trials only when some may be released
            milestone, key = self.core.waiting_position(inv.number)
            inv.suspended_key = (-milestone, key)
            self.suspended.add(inv.suspended_key)
            if len(self.suspended) > max_paused:
                self.release(self.live[self.suspended[-1][1][1]])
        return True

    def let_go(self) -> None:
        """End the paused calls of trials this run can never promote (as the study's end
        would, earlier): their steps() end, their tasks end. The trials stay PAUSED until then."""
        for n in self.unpromotable:
            inv = self.live.get(n)
            if inv is None or inv.phase is not Phase.PAUSED:
                continue  # no call of its own (released, or paused in an earlier run)
            if inv.waiting:
                self.release(inv)
            else:  # it paused just now: its gate will let it go (suspend() sees RELEASED)
                inv.phase = Phase.RELEASED
        self.unpromotable.clear()

    def unsuspend(self, inv: Invocation) -> None:
        """The wait of :meth:`suspend` is over (woken, or cancelled while waiting)."""
        if self.freezer is not None:
            self.freezer.resumed()
        self._unsuspend(inv)

    def _unsuspend(self, inv: Invocation) -> None:
        if inv.suspended_key is not None:
            self.suspended.remove(inv.suspended_key)
            inv.suspended_key = None

    def release(self, inv: Invocation) -> None:
        """Let a suspended invocation end; the trial stays PAUSED and promotable (from its
        checkpoint)."""
        inv.phase = Phase.RELEASED
        self._unsuspend(inv)
        inv.wake_up()

    # -------------------------------------------------------------- how trials end
    def settle_trial(self, inv: Invocation, failure: Failure | None) -> None:
        """Write how an invocation ended, from the trial's state in the core."""
        n = inv.number
        state = self.core.state_of(n)
        if state.is_finished:
            self.same_failures = -1
            return
        if self.state is RunState.CANCELLING:  # a thread trial that ended at the cancellation
            self.interrupt(inv)
            return
        if n in self.live:
            return  # promoted again meanwhile: a newer invocation owns the trial
        if failure is not None:
            self.failures += 1
            self.last_failure = failure.text
            self.end_trial(n, TrialState.FAILED, failure.text)
            self.fail_fast(failure)
            if self.options.max_failures is not None and self.failures >= self.options.max_failures:
                self.stop()
        elif state is TrialState.RUNNING:
            self.same_failures = -1
            self.end_trial(n, TrialState.COMPLETE, None)  # the objective returned early
        # PAUSED and returned: released; it stays promotable until the study ends.

    def fail_fast(self, failure: Failure) -> None:
        """A run whose first trials all fail the same way (same exception type, raised at the
        same line) before any trial of the run reported anything (a bug in the objective, a
        service that is down) stops and raises that error, instead of failing every trial it
        was given."""
        if self.same_failures < 0 or failure.exc is None or self.reports:
            self.same_failures = -1
            return
        if self.first_failure is None:
            self.first_failure = failure
        elif self.first_failure.origin() != failure.origin():
            self.same_failures = -1
            return
        self.same_failures += 1
        if self.same_failures == _FAIL_FAST and self.deferred is None:
            self.deferred = self.first_failure.exc
            self.stop()

    def end_trial(self, number: int, state: TrialState, error: str | None) -> None:
        # TrialEnded also drops the trial's checkpoint (the storage does, in order).
        self.commit(TrialEnded(number, state, error, self.clock()))
        self.finished(number)

    async def stop_waiting(self) -> None:
        """Every task has settled: paused trials no run will promote now are STOPPED, logged
        in batches (most trials of a promotion-mode study end this way)."""
        waiting = self.core.waiting_trials()
        for i in range(0, len(waiting), _FILL_BATCH):
            batch = waiting[i : i + _FILL_BATCH]
            now = self.clock()
            try:
                self.journal.stop_paused(batch, now)
            except StorageError as exc:
                self.fatal(exc)
                return
            self.logged()
            for n in batch:
                self.finished(n)
            await anyio.lowlevel.checkpoint()  # thousands of them: let the loop breathe

    def finished(self, number: int) -> None:
        if not self.callbacks:
            return
        frozen = self.core.frozen(number)
        for cb in self.callbacks:
            try:
                cb(frozen)
            except Exception as exc:  # a broken callback ends the run, after a clean drain
                if self.deferred is None:
                    self.deferred = exc
                self.stop()

    def interrupt(self, inv: Invocation) -> None:
        n = inv.number
        if self.core.state_of(n) is not TrialState.RUNNING:
            return
        owner = self.live.get(n)
        if owner is not None and owner is not inv:  # a newer call owns the trial: its interrupt
            return
        # A thread cannot be asked for a checkpoint while it computes (its thread was abandoned,
        # mid-step): such a trial resumes from the last checkpoint it saved.
        if inv.provider is not None and not self.thread_trials:
            # The trial is being torn down: if its checkpoint fails, its last report stands.
            with contextlib.suppress(Exception):
                self.save_checkpoint(inv, self.prepare_checkpoint(n, materialize(inv.provider)))
        self.commit(TrialInterrupted(n, self.clock()))

    def interrupt_remaining(self) -> None:
        """After a fatal error: trials the core still has RUNNING are INTERRUPTED, in memory at
        least (the log may not take it), as the next runner will find them."""
        for n in self.core.numbers_in(TrialState.RUNNING):
            interrupted = TrialInterrupted(n, self.clock())
            # Applied to the core even if the log does not take it (the next runner finds the
            # trial RUNNING there, and interrupts it itself).
            with contextlib.suppress(StorageError):
                self.journal.commit(interrupted)

    async def end(self) -> None:
        """The study is over for this run: release every suspended invocation (in batches:
        each one released wakes a task, and thousands at once would hold the loop)."""
        self.state = max(self.state, RunState.ENDING)
        for i, inv in enumerate(list(self.live.values()), 1):
            if inv.waiting:
                self.release(inv)
            if i % _FILL_BATCH == 0:
                await anyio.lowlevel.checkpoint()

    def cancel(self) -> None:
        """run() is cancelled: every invocation is over (its next report is refused)."""
        self.state = RunState.CANCELLING
        for inv in list(self.live.values()):
            inv.phase = Phase.OVER
            inv.wake_up()

    # -------------------------------------------------------------- the run
    async def run(self) -> None:
        """Run trials until the study is done (or ``options.timeout``), then finish the log:
        paused trials are STOPPED. Raises what ended the run early, if anything did."""
        if self.display is not None:
            self.display.open()
        if self.options.freeze_gc:
            self.freezer = Freezer()
        limited = self.options.max_trials is not None and self.core.scheduler.mode == "promotion"
        if limited:  # a rung gets one result per trial at most: max_trials bounds them all
            self.core.limit_results(max(self.options.max_trials or 0, self.core.n_trials))
        try:
            async with anyio.create_task_group() as services:
                if self.renew_lease is not None:
                    services.start_soon(self._heartbeat)
                services.start_soon(self._filler)
                if self.display is not None:
                    services.start_soon(self.display.run)
                if not self.options.durable:
                    services.start_soon(self._flusher)
                await self._trials()
                services.cancel_scope.cancel()
            if self.fatal_error is not None:
                self.interrupt_remaining()
            else:
                await self.stop_waiting()
                await self.journal.flush()
        except anyio.get_cancelled_exc_class():
            # Every task has ended; a trial whose task was cancelled before its first step (it
            # was started in the loop turn of the cancellation) never ran its worker, so no one
            # interrupted it: it is, now.
            self.interrupt_remaining()
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self.storage.flush()
            raise
        finally:
            if limited:
                self.core.limit_results(None)
            if self.freezer is not None:
                self.freezer.close()
                self.freezer = None
            if self.display is not None:
                self.display.close()  # the final frame: trials stopped or interrupted by now
        for error in (self.fatal_error, self.deferred):
            if error is not None:
                raise error
        limit = self.options.max_failures
        if limit is not None and self.failures >= limit:
            raise TooManyFailuresError(
                f"max_failures={limit} reached: {self.failures} trials failed in this "
                f"run (the running ones finished first); the last one:\n{self.last_failure}"
            )

    async def _trials(self) -> None:
        timeout = self.options.timeout
        try:
            with anyio.CancelScope() as self.waiting:
                try:
                    self.fill()
                    with anyio.move_on_after(math.inf if timeout is None else timeout):
                        await self.idle.wait()
                    if not self.idle.is_set():  # timeout: drain running trials gracefully
                        self.stop()
                        await self.idle.wait()
                    await self.end()
                    await self.tasks.wait()
                except anyio.get_cancelled_exc_class():  # run() is cancelled, or fatal()
                    self.cancel()
                    raise
        finally:
            self.waiting = None
            if self.tasks.tasks:
                with anyio.CancelScope(shield=True):
                    await self.tasks.stop()

    async def _heartbeat(self) -> None:
        """Renew the study's lease while the run lasts, so no other runner takes it over.

        A renewal that fails for a passing reason (a busy database) is retried at the next beat;
        the run stops if the lease was taken over, or could not be renewed for a whole TTL."""
        assert self.renew_lease is not None
        renewed = anyio.current_time()  # one clock, the loop's, for the beats and their ages
        while True:
            await anyio.sleep(self.lease_ttl / 3)
            try:
                await self.renew_lease()
                renewed = anyio.current_time()
            except StudyLockedError as exc:
                self.fatal(exc)
                return
            except StorageError as exc:
                if anyio.current_time() - renewed >= self.lease_ttl:
                    self.fatal(exc)
                    return

    def _new_turn(self) -> None:
        self.fill_spent = 0.0
        self.turn_marked = False

    async def _filler(self) -> None:
        """Continue a fill() that stopped (_FILL_BATCH jobs, or _FILL_BUDGET spent), once the
        loop had a turn (the budget is _new_turn's to reset: once per turn)."""
        while True:
            await self.more_to_fill.wait()
            self.more_to_fill = anyio.Event()
            self.fill()

    async def _flusher(self) -> None:
        """Buffered durability: commit what reports queued, one group commit after another."""
        while True:
            if not self.dirty:
                self.flusher_waits = self.loop.create_future()
                await self.flusher_waits
            self.dirty = False  # what is logged from here on wakes the next round
            try:
                await self.storage.flush(self.journal.last_seq)
            except StorageError as exc:
                self.fatal(exc)
                return
