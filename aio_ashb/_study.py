"""The study: what users hold. Its state, ``run()``, ``ask()``/``tell()``, and the lease.

A :class:`Study` owns a :class:`Journal` (its core and its log: every write goes through
``Journal.commit``) and a storage lease while it writes. ``run()`` hands the work to a
:class:`Runner`; ``ask()``/``tell()`` write through the same journal. Studies are made by
``create_study``/``load_study`` (``_factory.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeAlias, overload

import anyio

from aio_ashb._core import (
    ASHA,
    Checkpointed,
    Core,
    Decision,
    Direction,
    Enqueued,
    FrozenTrial,
    Reported,
    Sampler,
    SearchSpace,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialState,
    check_step,
    check_value,
    slot_setters,
)
from aio_ashb._exceptions import ConfigError, StateError, StorageError
from aio_ashb._executors import Executor, LoopExecutor, ThreadExecutor
from aio_ashb._handover import to_thread
from aio_ashb._journal import Journal, loop_clock, read_state
from aio_ashb._objective import Caller, ObjectiveKind, classify
from aio_ashb._progress import Progress
from aio_ashb._report import StudyStatus, status_of
from aio_ashb._run_options import RunOptions
from aio_ashb._runner import Runner
from aio_ashb._trial import ThreadTrial, Trial, materialize
from aio_ashb.storage import Storage

Objective: TypeAlias = (
    Callable[[Trial], Awaitable[None]]
    | Callable[[ThreadTrial], None]
    | Callable[[dict[str, Any], int, bytes | None], Any]  # budget-style: one call per rung segment
)
Callback: TypeAlias = Callable[["Study", FrozenTrial], None]
Durability: TypeAlias = Literal["durable", "buffered"]


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

    def __init__(
        self, number: int, params: dict[str, Any], bracket: int, step: int, target: int, checkpoint: Any
    ) -> None:
        # Slot by slot, past the frozen __setattr__ (every ask() builds one: 2.0 µs here, against
        # 2.9 for the generated __init__).
        _job_number(self, number)
        _job_params(self, params)
        _job_bracket(self, bracket)
        _job_step(self, step)
        _job_target(self, target)
        _job_checkpoint(self, checkpoint)


_job_number, _job_params, _job_bracket, _job_step, _job_target, _job_checkpoint = slot_setters(
    AskedJob, *AskedJob.__slots__
)


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
        self._journal = Journal(core, storage, name)
        self._storage = storage
        self._owns_storage = owns_storage
        self._durability = durability
        self._lease_ttl = lease_ttl
        # Names this runner in the lease, so a second runner's error says who holds the study.
        self._holder = f"pid {os.getpid()} on {socket.gethostname()} (runner {uuid.uuid4().hex[:12]})"
        self._lease_taken: float | None = None  # ask/tell: when this study last took the lease
        self._runner: Runner | None = None
        # Open ask() jobs: trial -> the step recorded before the job (tell() skips up to it).
        self._asked: dict[int, int] = {}
        self._lost_jobs: set[int] = set()  # asked before the lease ran out (see _hold_lease)
        self._retried: dict[int, int] = {}  # trial -> worker losses retried, across runs
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
        if self._runner is not None:
            raise StateError("close() called while run() is in progress; cancel run() first")
        self._closed = True
        try:
            if self._lease_taken is not None:  # ask/tell: it wrote under this lease
                if asyncio.get_running_loop().time() - self._lease_taken < self._lease_ttl:
                    self._journal.snapshot()  # (not once the lease ran out: the core may be stale)
                await self._storage.flush()
                await self._storage.release_lease(self._name, self._holder)
                self._lease_taken = None
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
    def _core(self) -> Core:
        return self._journal.core

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

    def trial(self, number: int) -> FrozenTrial:
        """Trial ``number`` alone (what ``trials[number]`` is, without building every trial);
        StateError for a number the study does not have."""
        return self._core.frozen(number)

    @property
    def n_trials(self) -> int:
        """How many trials the study has (numbered from 0)."""
        return self._core.n_trials

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The best trial at the highest milestone reached so far (None before any milestone)."""
        return self._core.best()

    @property
    def states(self) -> dict[TrialState, int]:
        """Number of trials in each state (``status().states`` is the same)."""
        return dict(self._core.counts)

    @property
    def counts(self) -> dict[TrialState, int]:
        """The same as :attr:`states` (the first name, kept)."""
        return self.states

    @property
    def rung_sizes(self) -> list[list[tuple[int, int]]]:
        """Per bracket, per rung: ``(milestone, results recorded)``. ``status().rungs`` has
        more for each rung (how many trials wait there)."""
        return self._core.rung_sizes()

    @property
    def rungs(self) -> list[list[tuple[int, int]]]:
        """The same as :attr:`rung_sizes` (the first name, kept)."""
        return self.rung_sizes

    @property
    def is_running(self) -> bool:
        return self._runner is not None

    def status(self) -> StudyStatus:
        """A snapshot: trials by state, rung occupancy per bracket, the best trial, and while
        ``run()`` is in progress the reports it recorded and its elapsed seconds. Costs
        O(paused trials + rungs); ``.to_dict()`` is JSON-ready."""
        runner = self._runner
        if runner is None:
            return status_of(self._name, self._core)
        elapsed = anyio.current_time() - runner.started
        return status_of(self._name, self._core, reports=runner.reports, elapsed=elapsed)

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
        event = Enqueued(self._core.space.validate(params), loop_clock()())
        runner = self._runner
        if runner is not None:
            runner.commit(event)
            await runner.settle()
        else:
            await self._hold_lease()
            self._journal.commit(event)
            await self._settle()

    def stop(self) -> None:
        """Ask the current ``run()`` to finish: no new trials or promotions; running trials
        continue to their next pause or end, then ``run()`` returns."""
        if self._runner is not None:
            self._runner.stop()

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
        freeze_gc: bool = False,
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

        ``max_trials`` bounds the number of trials in the study (earlier runs included;
        ``None``: no bound, then stop with ``timeout`` or :meth:`stop`). ``concurrency`` trials
        run at once (default: the executor's worker count, else 1); paused trials give their
        slot back. With ``max_trials``, a paused trial the run can never promote (one with
        ``floor(N / eta)`` better results in its rung, ``N`` the larger of ``max_trials`` and
        the study's trials) is let go at once: its ``steps()`` ends, the code after its loop
        runs without a slot, and it is STOPPED with the others at the run's end
        (docs/scheduling.md).
        At most ``max_paused`` paused coroutines stay suspended; the lowest-ranked
        beyond that are released and, if promoted later, called again with their last
        checkpoint. ``timeout`` (seconds) stops the run like :meth:`stop`; ``trial_timeout``
        fails a trial that runs (paused time excluded) longer than that. After
        ``max_failures`` failed trials the run stops and raises :class:`TooManyFailuresError`.
        ``callbacks`` are called with ``(study, trial)`` for each trial that finishes.
        ``progress=True`` shows live progress on stderr: a table redrawn in place on a terminal
        (with ``rich`` installed), a line every 5 s otherwise. ``freeze_gc=True`` calls
        ``gc.freeze()`` as the number of paused trials grows, which moves every object the
        collector tracks at that moment out of its reach, and the last such run of the process
        unfreezes at its end: for long promotion-mode studies, where thousands of paused
        coroutines make full collections long. It acts on the whole process (see docs/usage.md,
        "Running, stopping, cancelling"); in a process with frozen objects of its own it warns
        and freezes nothing.

        When ``run()`` returns, no trial is running and trials still paused are STOPPED. If it is
        cancelled, each trial's task is cancelled once (as ``asyncio.TaskGroup`` does) and its
        cleanup runs to its end; running trials are INTERRUPTED (with a last checkpoint if they
        gave one), storage is flushed, and a later ``run()`` resumes them first.
        """
        self._check_usable()
        if self._runner is not None:
            raise StateError(f"study {self._name!r} is already running")
        if self._asked:
            raise StateError("this study has jobs handed out by ask(); tell() them first")
        kind = classify(objective)
        executor = _executor_for(kind, executor)
        executor.check(objective, kind)
        options = RunOptions(
            max_trials=max_trials,
            concurrency=executor.workers or 1 if concurrency is None else concurrency,
            timeout=timeout,
            max_paused=max_paused,
            trial_timeout=trial_timeout,
            max_failures=max_failures,
            retries=retries,
            durable=self._durability == "durable",
            freeze_gc=freeze_gc,
        )
        cbs = [partial(cb, self) for cb in _callables(callbacks)]
        async with self._leased(), executor.session():
            self._runner = Runner(
                self._journal,
                Caller(objective, kind, executor, self._core, retries=retries, retried=self._retried),
                options,
                clock=loop_clock(),
                callbacks=cbs,
                renew_lease=self._renew_lease,
                lease_ttl=self._lease_ttl,
                display=Progress(self.status, max_trials=max_trials) if progress else None,
            )
            try:
                await self._runner.run()
            finally:
                self._runner = None

    @contextlib.asynccontextmanager
    async def _leased(self) -> AsyncIterator[None]:
        """Hold the study's lease (and the state replayed under it); give it up at the end,
        even when cancelled while it was being taken, with a snapshot of what it wrote."""
        recovered = False
        try:
            await self._storage.acquire_lease(self._name, self._holder, self._lease_ttl)
            await self._recover()
            recovered = True
            yield
        finally:
            self._lease_taken = None  # released: ask() must take it (and replay) again
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                # Only a core brought up to date under this lease is stored: never one of a
                # study whose lease another runner holds, nor one that failed to read the log.
                if recovered:
                    self._journal.snapshot()
                    await self._storage.flush()
                await self._storage.release_lease(self._name, self._holder)

    async def _renew_lease(self) -> None:
        """run()'s lease keeper (every third of the lease's time): a snapshot when one is due,
        then the renewal."""
        if self._journal.snapshot_due():
            self._journal.snapshot()
        await self._storage.renew_lease(self._name, self._holder, self._lease_ttl)

    # ------------------------------------------------------------------ ask / tell
    @overload
    async def ask(self) -> AskedJob: ...

    @overload
    async def ask(self, *, max_trials: int | None) -> AskedJob | None: ...

    async def ask(self, *, max_trials: int | None = None) -> AskedJob | None:
        """Hand out the next job (resumed trial, promotion or new trial) for work done elsewhere.

        The same core decides as in ``run()``; ``ask``/``tell`` and ``run`` are not used at the
        same time on one study. ``max_trials`` bounds the trials of the study, as in ``run()``:
        once it holds that many, ``ask`` returns ``None`` when there is nothing to resume or
        promote (workers elsewhere ask again later, or stop when no trial is running).
        """
        self._check_usable()
        if max_trials is not None and (
            not isinstance(max_trials, int) or isinstance(max_trials, bool) or max_trials < 1
        ):
            raise ConfigError(f"max_trials must be a positive integer or None, got {max_trials!r}")
        if self._runner is not None:
            raise StateError("ask() cannot be used while run() is in progress")
        if self._lease_due():
            await self._hold_lease()
        can_start = max_trials is None or self._core.n_trials < max_trials
        job = self._journal.next_job(can_start=can_start, time=loop_clock()())
        if job is None:  # only possible when no new trial may start
            return None
        checkpoint: Any = None
        step = 0
        writing = False
        try:
            if isinstance(job, TrialCreated):
                # A new trial has no step yet; its params and bracket are the event's (copied,
                # as frozen() would, without building the rest of a FrozenTrial).
                params, bracket, recorded = dict(job.params), job.bracket, 0
            else:
                found = await self._storage.load_checkpoint(self._name, job.number)
                if found is not None:
                    step, checkpoint = found
                frozen = self._core.frozen(job.number)
                params, bracket, recorded = frozen.params, frozen.bracket, frozen.step
            self._asked[job.number] = recorded
            if self._unsettled():
                writing = True
                await self._journal.flush()
        except BaseException as exc:
            # The job is decided (in the core, and queued for the log) but its caller will never
            # get it: after a cancellation or a failed write, give it back at once, so that the
            # next ask resumes it instead of it staying RUNNING with nobody working on it (a
            # storage that failed keeps both events queued for its next commit). Not after a
            # checkpoint that cannot be loaded: resumed first, it would fail every later ask.
            if writing or not isinstance(exc, Exception):
                self._asked.pop(job.number, None)
                if self._core.state_of(job.number) is TrialState.RUNNING:
                    self._journal.commit(TrialInterrupted(job.number, loop_clock()()))
            raise
        return AskedJob(
            number=job.number,
            params=params,
            bracket=bracket,
            step=step,  # where the checkpoint is; without one, training starts over
            target=self._core.target_of(job.number),
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
        if self._lease_due():  # first: a lease that ran out loses the jobs handed out under it
            await self._hold_lease()
        if job.number not in self._asked:
            raise StateError(self._not_open(job.number))
        at = job.target if step is None else check_step(step)
        if at <= self._asked[job.number]:
            # Retraining without a checkpoint: this step is recorded already (as in run()).
            check_value(value)
            return Decision.CONTINUE
        payload: Any = None
        if checkpoint is not None:  # prepared first: a checkpoint that fails changes nothing
            payload = materialize(checkpoint)
            if self._storage.pickles_checkpoints:
                payload = await to_thread(self._storage.prepare_checkpoint, job.number, payload)
        now = loop_clock()()
        decision = self._journal.commit(Reported(job.number, at, value, now))
        assert decision is not None
        if checkpoint is not None and not self._core.state_of(job.number).is_finished:
            self._journal.commit(Checkpointed(job.number, at, payload, now))
        if decision is not Decision.CONTINUE:
            del self._asked[job.number]
        if decision in (Decision.STOP, Decision.COMPLETE):
            self._journal.drop_checkpoint(job.number)
        if self._unsettled():
            await self._journal.flush()
        return decision

    async def fail(self, job: AskedJob, error: BaseException | str) -> None:
        """Record that ``job`` failed; ``error`` (an exception or a message) is stored."""
        self._check_usable()
        if self._lease_due():  # as in tell()
            await self._hold_lease()
        if job.number not in self._asked:
            raise StateError(self._not_open(job.number))
        text = "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else str(error)
        self._journal.commit(TrialEnded(job.number, TrialState.FAILED, text, loop_clock()()))
        del self._asked[job.number]
        await self._settle()

    async def release(self, job: AskedJob) -> None:
        """Give ``job`` back unfinished (its worker vanished, or will not report): its trial
        becomes INTERRUPTED, as a trial of a cancelled ``run()`` does, keeps its last
        checkpoint, and the next :meth:`ask` (or ``run()``) resumes that same trial first.
        Reports already told for it stay recorded."""
        self._check_usable()
        await self._hold_lease()  # (first, as in tell())
        if job.number not in self._asked:
            raise StateError(self._not_open(job.number))
        self._journal.commit(TrialInterrupted(job.number, loop_clock()()))
        del self._asked[job.number]
        await self._settle()

    def _not_open(self, number: int) -> str:
        if number in self._lost_jobs:
            return (
                f"trial {number}'s job was lost: this study's lease (lease_ttl={self._lease_ttl:g} s) ran "
                "out before it was told, so the trial was handed back; ask() again"
            )
        return f"trial {number} is not an open job of this study"

    def _lease_due(self) -> bool:
        """ask/tell: whether :meth:`_hold_lease` has anything to do (the lease is not held, or a
        third of its time has passed). Checked without awaiting: most calls have nothing to do."""
        taken = self._lease_taken
        return taken is None or asyncio.get_running_loop().time() - taken > self._lease_ttl / 3

    async def _hold_lease(self) -> None:
        """ask/tell: take the study's lease, and renew it once a third of its time has passed."""
        # The loop's clock (what anyio.current_time() reads on asyncio, minus its backend lookup).
        now = asyncio.get_running_loop().time()
        if self._lease_taken is not None and now - self._lease_taken >= self._lease_ttl:
            # The lease ran out: another runner may have taken the study, written to it and let
            # it go meanwhile. What this study holds may be stale, so it is read again from the
            # log, and the jobs it handed out are lost (the log's RUNNING trials are handed back).
            self._lease_taken = None
            self._lost_jobs = set(self._asked)
            self._asked.clear()
        if self._lease_taken is None or now - self._lease_taken > self._lease_ttl / 3:
            await self._storage.acquire_lease(self._name, self._holder, self._lease_ttl)
            if self._lease_taken is None:
                await self._recover()
            self._lease_taken = now

    async def _recover(self) -> None:
        """With the lease just taken: rebuild the state from the log (another runner may have
        written since this study was opened); trials still RUNNING there belong to a runner that
        died, so they become INTERRUPTED, and resume first."""
        core = self._core
        _, fresh, _ = await read_state(
            self._storage,
            self._name,
            lambda _: Core(core.space, core.scheduler, core.sampler, core.direction),
        )
        self._journal.core = fresh
        now = loop_clock()()
        lost: list[Any] = [TrialInterrupted(n, now) for n in fresh.numbers_in(TrialState.RUNNING)]
        if lost:
            self._journal.commit_all(lost)
            await self._journal.flush()

    def _unsettled(self) -> bool:
        """Outside run(): whether :meth:`_settle` must wait (durable mode, and some write of this
        study not committed yet). Nothing to wait for, as always with MemoryStorage, costs no
        await: ask() and tell() then never yield to the loop."""
        return self._durability == "durable" and self._journal.unflushed()

    async def _settle(self) -> None:
        """Outside run(): in durable mode, return once this study's writes are committed."""
        if self._unsettled():
            await self._journal.flush()


def _executor_for(kind: ObjectiveKind, executor: Executor | None) -> Executor:
    if executor is None:
        return LoopExecutor() if kind.is_async else ThreadExecutor()
    if not isinstance(executor, Executor):
        raise ConfigError(f"executor must be an Executor (e.g. ProcessExecutor()), got {executor!r}")
    return executor


def _callables(callbacks: Iterable[Callback]) -> list[Callback]:
    cbs = list(callbacks)
    for cb in cbs:
        if not callable(cb):
            raise ConfigError(f"callbacks must be callable, got {cb!r}")
    return cbs
