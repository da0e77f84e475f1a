"""The runner on virtual time: exact step durations, no real sleeping."""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import aio_ashb as aa
from aio_ashb._core import Checkpointed, Reported, TrialCreated, TrialPromoted
from tests.helpers import SPACE, loss, new_study
from tests.virtual_time import run_virtual, vnow


def test_slots_are_always_full_while_work_exists() -> None:
    workers = 4
    intervals: list[tuple[float, float]] = []
    first_start: dict[int, float] = {}

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            t0 = vnow()
            first_start.setdefault(trial.number, t0)
            await anyio.sleep(1.0)
            intervals.append((t0, vnow()))
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=60, concurrency=workers)
        return study

    study = run_virtual(main)
    last_start = max(first_start.values())
    assert last_start > 20  # the run is long enough to mean something
    t = 0.5
    while t < last_start:
        busy = sum(a <= t < b for a, b in intervals)
        assert busy == workers, f"only {busy} of {workers} slots busy at t={t}"
        t += 1.0
    assert study.counts[aa.TrialState.COMPLETE] >= 1
    assert study.counts[aa.TrialState.RUNNING] == study.counts[aa.TrialState.PAUSED] == 0
    assert sum(study.counts.values()) == 60


def test_promotions_resume_the_same_coroutine() -> None:
    invocations: Counter[int] = Counter()
    seen_steps: dict[int, list[int]] = defaultdict(list)

    async def objective(trial: aa.Trial) -> None:
        invocations[trial.number] += 1
        model = object()  # state that only survives if the coroutine does
        async for step in trial.steps():
            await anyio.sleep(0.1 * (1 + trial.number % 3))
            seen_steps[trial.number].append(step)
            assert model is not None
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=40, concurrency=3)
        return study

    study = run_virtual(main)
    promoted = [t for t in study.trials if t.resource > 1]
    assert len(promoted) >= 5
    assert set(invocations.values()) == {1}
    for t in promoted:
        assert seen_steps[t.number] == list(range(1, t.step + 1))
    assert any(t.state is aa.TrialState.COMPLETE for t in promoted)


def test_cancelling_run_interrupts_running_trials_and_leaves_no_task() -> None:
    resumed_from: dict[int, Any] = {}

    async def objective(trial: aa.Trial) -> None:
        if trial.checkpoint is not None:
            resumed_from[trial.number] = (trial.checkpoint, trial.step)
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step), checkpoint={"after": step})

    async def main() -> None:
        study = await new_study()
        with anyio.move_on_after(10.5):
            await study.run(objective, max_trials=50, concurrency=4)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        counts = study.counts
        assert counts[aa.TrialState.INTERRUPTED] == 4
        assert counts[aa.TrialState.RUNNING] == 0
        interrupted = [t for t in study.trials if t.state is aa.TrialState.INTERRUPTED]
        with_steps = [t for t in interrupted if t.step > 0]
        assert with_steps
        for t in with_steps:
            assert t.checkpoint_step == t.step  # the shielded final write kept the checkpoint
        # A later run resumes the interrupted trials first, from their checkpoints.
        await study.run(objective, max_trials=50, concurrency=4)
        assert {t.number for t in with_steps} <= set(resumed_from)
        for t in with_steps:
            ckpt, step = resumed_from[t.number]
            assert ckpt == {"after": t.step} and step == t.step
        assert study.counts[aa.TrialState.INTERRUPTED] == 0
        events = await study.storage.read_events(study.name)
        reported = Counter((e.number, e.step) for e in events if isinstance(e, Reported))
        assert max(reported.values()) == 1  # nothing recorded twice

    run_virtual(main)


def test_a_failing_objective_does_not_stop_the_study() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1)
            if trial.number % 5 == 2 and step == 2:
                raise ValueError(f"bad config {trial.number}")
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, mode="stopping"))
        await study.run(objective, max_trials=30, concurrency=4)
        return study

    study = run_virtual(main)
    failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
    assert failed
    for t in failed:
        assert t.number % 5 == 2
        assert t.error is not None and f"ValueError: bad config {t.number}" in t.error
        assert "Traceback" in t.error
    assert all(t.state.is_finished for t in study.trials)
    assert len(study.trials) == 30


def test_max_failures_stops_the_run_and_raises() -> None:
    async def objective(trial: aa.Trial) -> None:
        await anyio.sleep(1)
        raise RuntimeError("always")

    async def main() -> aa.Study:
        study = await new_study()
        with pytest.raises(aa.TooManyFailuresError, match=r"max_failures=3 reached"):
            await study.run(objective, max_trials=100, concurrency=2, max_failures=3)
        return study

    study = run_virtual(main)
    # The third failure stops the run; the trial still running in the other slot drains.
    assert study.counts[aa.TrialState.FAILED] == 4
    assert len(study.trials) < 100


def test_trial_timeout_fails_only_running_time_counts() -> None:
    lifetimes: dict[int, float] = {}

    async def objective(trial: aa.Trial) -> None:
        start = vnow()
        if trial.number == 3:
            await anyio.sleep(10_000)
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step))
        lifetimes[trial.number] = vnow() - start

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 9, 3))
        await study.run(objective, max_trials=40, concurrency=2, trial_timeout=12)
        return study

    study = run_virtual(main)
    t3 = study.trials[3]
    assert t3.state is aa.TrialState.FAILED
    assert t3.error is not None and "trial_timeout=12" in t3.error
    complete = [t.number for t in study.trials if t.state is aa.TrialState.COMPLETE]
    assert complete
    # Complete trials ran 9 steps (9 s) but lived far longer than the timeout while paused.
    assert max(lifetimes[n] for n in complete) > 12


@pytest.mark.parametrize("use_checkpoint", [True, False])
def test_max_paused_releases_and_reinvokes_from_the_checkpoint(use_checkpoint: bool) -> None:
    starts: list[tuple[int, Any, int]] = []

    async def objective(trial: aa.Trial) -> None:
        starts.append((trial.number, trial.checkpoint, trial.step))
        async for step in trial.steps():
            await anyio.sleep(1.0)
            ckpt = (lambda s=step: {"step": s}) if use_checkpoint else None
            await trial.report(loss(trial.params, step), checkpoint=ckpt)

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=30, concurrency=2, max_paused=1)
        events = await study.storage.read_events(study.name)
        reported = Counter((e.number, e.step) for e in events if isinstance(e, Reported))
        assert max(reported.values()) == 1
        promotions = [e.number for e in events if isinstance(e, TrialPromoted)]
        assert len(promotions) >= 4
        if use_checkpoint:
            assert any(isinstance(e, Checkpointed) for e in events)
        return study

    study = run_virtual(main)
    again = [(n, ck, step) for n, ck, step in starts if ck is not None or step > 0]
    first = {n for n, _, _ in starts}
    assert len(starts) > len(first)  # some trials were called again after a release
    if use_checkpoint:
        assert again
        for _n, ck, step in again:
            assert ck == {"step": step}
    else:
        assert not again  # no checkpoint: they retrained from step 0
    for t in study.trials:
        assert t.state.is_finished


def test_stop_from_a_callback_drains_and_stops_paused_trials() -> None:
    finished: list[aa.FrozenTrial] = []

    def on_finish(study: aa.Study, trial: aa.FrozenTrial) -> None:
        assert trial.state.is_finished
        finished.append(trial)
        if len(finished) == 5:
            study.stop()

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, mode="stopping"))
        await study.run(objective, max_trials=1000, concurrency=4, callbacks=[on_finish])
        return study

    study = run_virtual(main)
    assert len(study.trials) < 20
    assert all(t.state.is_finished for t in study.trials)
    assert len(finished) == len(study.trials)  # once per trial, drained ones included


def test_timeout_stops_gracefully_and_paused_trials_end_stopped() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step))

    async def main() -> tuple[aa.Study, float]:
        study = await new_study()
        t0 = vnow()
        await study.run(objective, timeout=30, concurrency=4)
        return study, vnow() - t0

    study, elapsed = run_virtual(main)
    assert 30 <= elapsed < 60
    counts = study.counts
    assert counts[aa.TrialState.RUNNING] == counts[aa.TrialState.PAUSED] == 0
    assert counts[aa.TrialState.STOPPED] > 0


def test_same_seed_same_decisions_on_virtual_time() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(0.5 + trial.params["x"])
            await trial.report(loss(trial.params, step))

    async def main() -> list[Any]:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, brackets=2))
        await study.run(objective, max_trials=80, concurrency=5)
        events = await study.storage.read_events(study.name)
        return [(type(e).__name__, getattr(e, "number", None), getattr(e, "value", None)) for e in events]

    a = run_virtual(main)
    assert a == run_virtual(main)
    assert sum(1 for e in a if e[0] == "TrialCreated") == 80
    assert TrialCreated.__name__ in {e[0] for e in a}


def test_a_wide_run_fills_every_slot_in_batches_that_let_the_loop_breathe() -> None:
    """1,000 free slots at once are filled a batch of jobs per loop turn, all at virtual time 0: a
    ticker gets turns in between, and no slot stays empty."""

    async def main() -> tuple[list[int], int, int]:
        study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(0))
        started: list[float] = []
        ticks: list[int] = []

        async def objective(trial: aa.Trial) -> None:
            started.append(vnow())
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step))

        async def ticker() -> None:  # turns of the loop while the fill goes on (at time 0)
            for _ in range(40):
                ticks.append(len(started))
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await study.run(objective, max_trials=1000, concurrency=1000)
            tg.cancel_scope.cancel()
        return [int(t) for t in started], len(set(ticks)), study.counts[aa.TrialState.RUNNING]

    started, distinct_ticks, running = run_virtual(main)
    assert len(started) == 1000 and set(started[:1000]) == {0}  # every trial started at once
    assert distinct_ticks >= 5  # the ticker saw the fill progress batch by batch
    assert running == 0


def test_cancelling_run_cancels_each_trial_once_and_waits_for_its_cleanup() -> None:
    """Trials are plain asyncio tasks, cancelled the way asyncio.TaskGroup cancels: once. An
    objective's cleanup runs to its end, awaits included (a second cancellation would cut it
    short), run() waits for it, and a report after the cancellation is refused."""
    cleaned: list[int] = []
    refused: list[int] = []

    async def objective(trial: aa.Trial) -> None:
        try:
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step))
        except asyncio.CancelledError:
            await anyio.sleep(5.0)  # a slow cleanup: an upload, a remote job to stop
            cleaned.append(trial.number)
            try:
                await trial.report(0.0)
            except aa.TrialStopped:
                refused.append(trial.number)
            raise

    async def main() -> tuple[dict[aa.TrialState, int], set[int], float]:
        study = await new_study()
        with anyio.move_on_after(2.5):
            await study.run(objective, max_trials=50, concurrency=3)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        interrupted = {t.number for t in study.trials if t.state is aa.TrialState.INTERRUPTED}
        return study.counts, interrupted, vnow()

    counts, interrupted, ended = run_virtual(main)
    # Every live call was cancelled (the paused ones too, as a task group does), and each one
    # cleaned up to the end and had its late report refused.
    assert sorted(cleaned) == sorted(refused) and interrupted <= set(cleaned)
    assert 7.5 <= ended < 8.0  # it waited for the 5 s cleanups, cancelled only once
    assert counts[aa.TrialState.INTERRUPTED] == 3 and counts[aa.TrialState.RUNNING] == 0


def test_a_run_cancelled_twice_still_leaves_no_trial_task_behind() -> None:
    """A second Task.cancel() of the run while its trials clean up does not make run() leave
    them running: it waits for them, then raises the cancellation."""
    cleaned: list[int] = []

    async def objective(trial: aa.Trial) -> None:
        try:
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step))
        finally:
            await asyncio.shield(asyncio.sleep(3.0))  # cleanup the objective protects itself
            cleaned.append(trial.number)

    async def main() -> None:
        study = await new_study()
        run = asyncio.ensure_future(study.run(objective, max_trials=50, concurrency=3))
        await asyncio.sleep(2.5)
        run.cancel()
        await asyncio.sleep(1.0)  # the trials are in their cleanup now
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert asyncio.all_tasks() == {asyncio.current_task()}
        interrupted = {t.number for t in study.trials if t.state is aa.TrialState.INTERRUPTED}
        assert len(interrupted) == 3 and interrupted <= set(cleaned)  # all cleaned up, none cut

    run_virtual(main)


def test_an_error_escaping_a_trial_task_ends_the_run_with_that_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the runner's own code (not the objective's: that fails the trial) must not be
    lost in a task nobody awaits: run() raises it, and no trial task is left behind."""
    from aio_ashb import _runner

    def broken(self: _runner.Runner, inv: Any, failure: Any) -> None:
        raise RuntimeError("settle_trial is broken")

    monkeypatch.setattr(_runner.Runner, "settle_trial", broken)

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step))

    async def main() -> None:
        study = await new_study()
        with pytest.raises(RuntimeError, match="settle_trial is broken"):
            await study.run(objective, max_trials=50, concurrency=3)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert study.counts[aa.TrialState.RUNNING] == 0

    run_virtual(main)


def test_a_trial_created_as_the_run_is_cancelled_is_interrupted_not_left_running() -> None:
    """A trial whose task was created in the same loop turn as run()'s cancellation may be
    cancelled before its first step, so its worker never runs: it must still end INTERRUPTED
    (and resume first), not stay RUNNING in the log."""
    run: list[asyncio.Future[None]] = []

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            if trial.number == 0:
                # The run is cancelled first; then this report pauses the trial (the rung's first
                # result: nothing to promote), and the freed slot goes to a new trial's task.
                run[0].cancel()
            await trial.report(loss(trial.params, step))

    async def main() -> None:
        study = await new_study()
        run.append(asyncio.ensure_future(study.run(objective, max_trials=50, concurrency=3)))
        with pytest.raises(asyncio.CancelledError):
            await run[0]
        assert asyncio.all_tasks() == {asyncio.current_task()}
        counts = study.counts
        assert counts[aa.TrialState.RUNNING] == 0 and counts[aa.TrialState.INTERRUPTED] >= 1
        events = await study.storage.read_events(study.name)
        assert not [
            e
            for e in events
            if isinstance(e, TrialCreated) and study.trial(e.number).state is aa.TrialState.RUNNING
        ]

    run_virtual(main)


def test_each_trial_starts_from_the_context_run_was_called_in() -> None:
    """A context variable set by one trial does not leak into a trial whose task its report
    started (a paused trial's freed slot); every trial sees the caller's value."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: dict[int, str] = {}

    async def objective(trial: aa.Trial) -> None:
        seen[trial.number] = var.get()
        var.set(f"set by trial {trial.number}")
        async for step in trial.steps():
            await anyio.sleep(1.0)
            await trial.report(loss(trial.params, step))

    async def main() -> None:
        study = await new_study()
        var.set("the caller's")
        await study.run(objective, max_trials=30, concurrency=3)

    run_virtual(main)
    assert len(seen) == 30 and set(seen.values()) == {"the caller's"}
