"""A paused call's wait is its Invocation, which asyncio's Task awaits as a future: the protocol
on its own (a stub host), then what an objective around a pause sees in a real run."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections import Counter
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._trial import Invocation, Phase
from tests.helpers import loss, new_study
from tests.virtual_time import run_virtual


class Host:
    """The little of a TrialHost an invocation's wait uses: the loop, and the count of waits."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.suspended = 0

    def suspend(self, inv: Invocation) -> bool:
        if inv.phase is not Phase.PAUSED:
            return False
        inv.start_wait()
        self.suspended += 1
        return True

    def unsuspend(self, inv: Invocation) -> None:
        self.suspended -= 1


async def paused(host: Host) -> Invocation:
    inv = Invocation(7, host)  # type: ignore[arg-type]  # (a stub host)
    inv.phase = Phase.PAUSED
    assert host.suspend(inv)
    return inv


async def wait_on(inv: Invocation) -> str:
    await inv
    return inv.phase.value


@pytest.mark.asyncio
async def test_a_woken_wait_resumes_its_task_and_counts_once() -> None:
    host = Host()
    inv = await paused(host)
    assert not inv.done() and inv.waiting
    assert not asyncio.isfuture(inv)  # (to asyncio, only when yielded: see the wait_for test)
    task = asyncio.create_task(wait_on(inv))
    await asyncio.sleep(0)
    assert not task.done() and host.suspended == 1
    inv.phase = Phase.RUNNING
    inv.wake_up()
    inv.wake_up()  # a second wake-up is nothing
    assert host.suspended == 0 and inv.done() and not inv.waiting
    assert await task == "running"
    assert host.suspended == 0


@pytest.mark.asyncio
async def test_a_cancelled_wait_raises_in_its_task_with_the_message() -> None:
    host = Host()
    inv = await paused(host)
    task = asyncio.create_task(wait_on(inv))
    await asyncio.sleep(0)
    task.cancel("the run is over")
    with pytest.raises(asyncio.CancelledError, match="the run is over"):
        await task
    assert host.suspended == 0 and not inv.waiting
    inv.wake_up()  # after the cancellation: nothing to wake, nothing counted twice
    assert host.suspended == 0


@pytest.mark.asyncio
async def test_a_cancel_after_the_wake_up_still_cancels_the_task_once() -> None:
    """Woken, then cancelled before the task ran again: the wait is over (counted once), and
    the task gets one CancelledError, as with a future that is done."""
    host = Host()
    inv = await paused(host)
    seen: list[str] = []

    async def waiter() -> None:
        try:
            await inv
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0)  # clean-up that awaits is not cancelled a second time
            seen.append("cleaned up")
            raise

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    inv.wake_up()
    assert task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned up"] and host.suspended == 0


@pytest.mark.asyncio
async def test_the_wait_works_under_timeouts_of_both_libraries() -> None:
    host = Host()
    inv = await paused(host)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await inv
    assert host.suspended == 0

    inv = await paused(host)
    with anyio.move_on_after(0.01) as scope:  # anyio cancels again until the scope is left
        await inv
    assert scope.cancelled_caught and host.suspended == 0


@pytest.mark.asyncio
async def test_a_closed_waiting_coroutine_ends_its_wait() -> None:
    host = Host()
    inv = await paused(host)
    coro = wait_on(inv)
    assert coro.send(None) is inv  # what a task would get: the invocation, as its future
    coro.close()
    assert host.suspended == 0 and not inv.waiting


@pytest.mark.asyncio
async def test_a_second_waiter_is_refused_and_a_done_wait_calls_back_at_once() -> None:
    host = Host()
    inv = await paused(host)
    inv.add_done_callback(lambda _: None)
    with pytest.raises(RuntimeError, match="already awaited"):
        inv.add_done_callback(lambda _: None)
    inv.wake_up()
    called: list[object] = []
    inv.add_done_callback(called.append)
    await asyncio.sleep(0)
    inv.result()  # (raises nothing: the wait ended well)
    assert called == [inv] and inv.exception() is None
    assert repr(inv) == "<Invocation of trial 7, paused>"


@pytest.mark.asyncio
async def test_a_second_task_awaiting_the_wait_gets_the_error_itself() -> None:
    host = Host()
    inv = await paused(host)
    first = asyncio.ensure_future(wait_on(inv))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(wait_on(inv))
    with pytest.raises(aa.ObjectiveMisuseError, match="already waiting"):
        await second
    inv.phase = Phase.RUNNING
    inv.wake_up()
    assert await first == "running" and host.suspended == 0


@pytest.mark.asyncio
async def test_anext_with_a_default_ends_as_with_any_async_iterator() -> None:
    """`anext(it, default)` on an __anext__ that raises when called crashes CPython 3.11 (and
    3.12 < .10, 3.13 < .3; gh-131670): the end is raised when awaited, so the default comes."""
    host = Host()
    inv = Invocation(7, host)  # type: ignore[arg-type]  # (a stub host)
    assert await anext(inv, None) == 1
    inv.phase = Phase.ENDED
    assert await anext(inv, None) is None
    assert await anext(inv, "done") == "done"

    inv.phase = Phase.PAUSED  # paused, then released while it waits
    waiting = asyncio.ensure_future(anext(inv, None))
    await asyncio.sleep(0)
    assert inv.waiting and host.suspended == 1
    inv.phase = Phase.RELEASED
    inv.wake_up()
    assert await waiting is None and host.suspended == 0

    inv.phase = Phase.PAUSED  # paused, then its waiter is cancelled: CancelledError, not misuse
    waiting = asyncio.ensure_future(anext(inv, None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert host.suspended == 0 and not inv.waiting


@pytest.mark.asyncio
async def test_wait_for_and_ensure_future_get_the_step_not_the_wait() -> None:
    """Not yielded to a task, the invocation is no future to asyncio (else wait_for, gather
    and shield would take its result, None, for the step)."""
    host = Host()
    inv = await paused(host)
    inv.phase = Phase.PAUSED
    host.suspended = 0
    inv.close()  # (back to no wait: the __anext__ below starts its own)
    waiting = asyncio.ensure_future(asyncio.wait_for(anext(inv), 60))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert inv.waiting
    inv.phase = Phase.RUNNING
    inv.wake_up()
    assert await waiting == 1


# ---------------------------------------------------------------- in a run
def run_study(objective: Any, **run: Any) -> aa.Study:
    """A new study (tests.helpers.new_study) run on virtual time with ``run``'s options."""

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, **run)
        return study

    return run_virtual(main)


def raising_in(number: int, error: BaseException) -> Any:
    """An objective that reports a step a second, except trial ``number``, which raises ``error``."""

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            if trial.number == number:
                raise error
            await trial.report(loss(trial.params, step))

    return objective


def test_an_asyncio_timeout_around_a_pause_fails_that_trial_only() -> None:
    """A timeout that spans a pause fires while the trial waits at its rung: its task is
    cancelled there, the trial fails with the TimeoutError, and the study goes on."""

    async def objective(trial: aa.Trial) -> None:
        limit = 5.0 if trial.number == 0 else 1e9
        async with asyncio.timeout(limit):
            async for step in trial.steps():
                await anyio.sleep(0.1)
                await trial.report(loss(trial.params, step))

    study = run_study(objective, max_trials=40, concurrency=2)
    first = study.trials[0]
    assert first.state is aa.TrialState.FAILED and "TimeoutError" in (first.error or "")
    assert [t.number for t in study.trials if t.state is aa.TrialState.FAILED] == [0]
    assert study.counts[aa.TrialState.COMPLETE] >= 1


def test_a_task_group_child_failing_while_its_trial_is_paused_fails_that_trial() -> None:
    async def objective(trial: aa.Trial) -> None:
        async def helper() -> None:
            await anyio.sleep(30.0)  # long after trial 0 paused at its first rung
            raise ValueError(f"the helper of trial {trial.number} broke")

        async with asyncio.TaskGroup() as group:
            if trial.number == 0:
                group.create_task(helper())
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step))

    study = run_study(objective, max_trials=60, concurrency=2)
    first = study.trials[0]
    assert first.state is aa.TrialState.FAILED
    assert "the helper of trial 0 broke" in (first.error or "")
    assert [t.number for t in study.trials if t.state is aa.TrialState.FAILED] == [0]


@pytest.mark.asyncio
async def test_a_paused_trial_keeps_seven_tracked_objects() -> None:
    """What the collector walks for each paused trial of a promotion-mode study: its task, the
    task's context, asyncio's weak reference to it, the task's wake-up, the objective's
    coroutine, the Trial and its Invocation (12 before the invocation was the wait itself, 8
    before the task ran the objective's coroutine without the runner's worker around it)."""
    marks: dict[int, tuple[int, int]] = {}
    first, last = 200, 1200

    async def objective(trial: aa.Trial) -> None:
        if trial.number in (first, last) and trial.number not in marks:
            gc.collect()
            marks[trial.number] = (len(gc.get_objects()), len(asyncio.all_tasks()))
            if trial.number == last:
                study.stop()
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    study = await new_study()
    # A max_trials far above the trials run: no paused trial is hopeless yet (test_let_go.py),
    # so each one in between still waits.
    await study.run(objective, max_trials=100 * last, concurrency=4)
    (o0, t0), (o1, t1) = marks[first], marks[last]
    per_trial: Any = (o1 - o0) / (t1 - t0)
    assert t1 - t0 > 900  # nearly every trial in between is paused
    assert per_trial < 7.2, per_trial


# ---------------------------------------------------------------- tasks that are the objective's own
def test_a_call_that_returned_on_pause_is_called_again_when_promoted() -> None:
    """In promotion mode a new trial's task runs the objective's coroutine itself, and the
    runner hears that it returned a loop turn later. An objective that returns on a PAUSE and
    is promoted within that turn must be called again, not resumed: resumed, its trial would
    be taken for one that returned while running (and completed at its rung).

    Concurrency 1: trial 3k+1's pause starts trial 3k+2, whose first step runs before the
    runner hears that 3k+1 returned; its pause makes the rung promote one more, 3k+1 (the best)."""
    calls: list[int] = []

    async def objective(trial: aa.Trial) -> None:
        calls.append(trial.number)
        while True:  # no await between reports: nothing else runs between them
            first = 0.0 if trial.number % 3 == 1 else 1.0 + trial.number
            decision = await trial.report(first if trial.step == 0 else 0.0)
            if decision is not aa.Decision.CONTINUE:
                return

    study = run_study(objective, max_trials=12, concurrency=1)
    for n in (1, 4, 7, 10):
        assert calls.count(n) >= 2, (n, calls)  # called again once promoted
        assert study.trial(n).step >= 3
    assert [t.number for t in study.trials if t.state is aa.TrialState.COMPLETE and t.step < 27] == []


def same_turn(end: str, calls: list[int], span: contextvars.ContextVar[str] | None = None) -> Any:
    """The objective of the test above (trials 3k+1 are promoted in the turn they pause), with
    trial 1 ending its first call as ``end`` says: "raise" (a ValueError as it pauses) or
    "stopped" (a report()-loop objective, released: its report raises TrialStopped)."""

    async def objective(trial: aa.Trial) -> None:
        calls.append(trial.number)
        if span is not None:
            span.set(f"trial {trial.number}")  # a tracing span per trial, say
        while True:
            first = 0.0 if trial.number % 3 == 1 else 1.0 + trial.number
            decision = await trial.report(first if trial.step == 0 else 0.0)
            if decision is aa.Decision.PAUSE and trial.number == 1 and end == "raise":
                raise ValueError("broke on pausing")
            if decision is not aa.Decision.CONTINUE and end == "raise":
                return

    return objective


def test_an_objective_that_raises_as_it_pauses_fails_even_if_promoted_in_that_turn() -> None:
    """The same turn, with a call that raises instead of returning: its trial fails (as it
    would under a worker), the promotion made meanwhile is void, and its end (callbacks) runs
    in that trial's context, not in the one of the trial whose report made the promotion."""
    calls: list[int] = []
    span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="<run>")
    seen: dict[int, str] = {}

    def callback(study: aa.Study, trial: aa.FrozenTrial) -> None:
        if trial.state is aa.TrialState.FAILED:
            seen[trial.number] = span.get()

    study = run_study(same_turn("raise", calls, span), max_trials=12, concurrency=1, callbacks=[callback])
    first = study.trial(1)
    assert first.state is aa.TrialState.FAILED and calls.count(1) == 1
    assert (first.error or "").rstrip().endswith("ValueError: broke on pausing")
    assert seen == {1: "trial 1"}
    assert study.counts[aa.TrialState.RUNNING] == 0


def test_a_released_call_that_ended_with_trial_stopped_is_called_again_when_promoted() -> None:
    """TrialStopped is how a released report()-loop call ends: not a failure, so a promotion
    in that turn stands and the trial is called again (it was COMPLETE at its first rung)."""
    calls: list[int] = []
    study = run_study(same_turn("stopped", calls), max_trials=12, concurrency=1, max_paused=0)
    for n in (1, 4, 7, 10):
        assert calls.count(n) >= 2 and study.trial(n).step >= 3, (n, calls)
    assert [t.number for t in study.trials if t.state is aa.TrialState.COMPLETE] == []


def test_a_second_task_waiting_on_a_paused_trial_is_refused() -> None:
    errors: list[BaseException] = []

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            if trial.number:
                await anyio.sleep(10.0)  # (no promotion of trial 0 while it tries the below)
            decision = await trial.report(loss(trial.params, step))
            if decision is aa.Decision.PAUSE and trial.number == 0 and not errors:
                main_wait = asyncio.ensure_future(anext(aiter(trial.steps()), None))
                await asyncio.sleep(0)
                try:
                    await trial.report(1.0)  # a second wait, here: refused, nothing changed
                except aa.ObjectiveMisuseError as exc:
                    errors.append(exc)
                main_wait.cancel()
                return

    study = run_study(objective, max_trials=20, concurrency=2, max_paused=100)
    assert len(errors) == 1 and "trial 0 is already waiting at its rung" in str(errors[0])
    assert study.counts[aa.TrialState.RUNNING] == study.counts[aa.TrialState.PAUSED] == 0


def test_a_direct_trials_end_runs_in_the_context_run_was_called_in() -> None:
    """Callbacks for a trial whose task was the objective's own run in the run's context, as
    they do in a worker's task (a request id, a tracing span set around run())."""
    request = contextvars.ContextVar("request", default="<unset>")
    seen: dict[int, tuple[str, str]] = {}

    def callback(study: aa.Study, trial: aa.FrozenTrial) -> None:
        seen[trial.number] = (trial.state.name, request.get())

    objective = raising_in(2, ValueError("bad"))

    async def main() -> None:
        request.set("req-42")
        study = await new_study()
        await study.run(objective, max_trials=6, concurrency=3, callbacks=[callback])

    run_virtual(main)
    assert seen[2] == ("FAILED", "req-42")


class Boom(BaseException):
    """Not an Exception: whoever raises it ends the run with it, not a trial."""


def boom_on_failure(study: aa.Study, trial: aa.FrozenTrial) -> None:
    """A callback that raises Boom when it sees a trial fail."""
    if trial.state is aa.TrialState.FAILED:
        raise Boom(f"callback saw trial {trial.number} fail")


def run_ending_in_boom(objective: Any, **run: Any) -> aa.Study:
    """A new study run on virtual time with ``run``'s options: the run raises Boom, leaving no
    task and no trial running (within 10,000 virtual seconds: a hang fails)."""

    async def main() -> aa.Study:
        study = await new_study()
        with anyio.fail_after(10_000), pytest.raises(Boom):
            await study.run(objective, **run)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert study.counts[aa.TrialState.RUNNING] == 0
        return study

    return run_virtual(main)


def test_a_base_exception_from_a_callback_at_a_direct_trials_end_ends_the_run() -> None:
    objective = raising_in(2, ValueError("bad"))
    run_ending_in_boom(objective, max_trials=5, concurrency=3, callbacks=[boom_on_failure])


def test_a_base_exception_from_a_callback_at_an_end_heard_early_ends_the_run() -> None:
    """The same, for a trial whose end fill() handles at once (same_turn): the error ends the
    run, not the report() of the trial that made the promotion, and no slot is left taken."""
    inner = same_turn("raise", [])

    async def objective(trial: aa.Trial) -> None:
        try:
            await inner(trial)
        except Boom:  # an objective that ends quietly on anything: the run hung
            return

    run_ending_in_boom(objective, max_trials=12, concurrency=1, callbacks=[boom_on_failure])


def test_a_base_exception_from_an_objective_ends_the_run_with_it() -> None:
    objective = raising_in(4, Boom("not an Exception: not a trial failure"))
    run_ending_in_boom(objective, max_trials=50, concurrency=3)


@pytest.mark.parametrize("mode", ["promotion", "stopping"])
def test_an_objective_error_is_recorded_with_its_own_traceback(mode: str) -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            if trial.number == 2 and step == 1:
                raise ValueError("bad batch")
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, mode=mode))  # type: ignore[arg-type]
        await study.run(objective, max_trials=20, concurrency=3)
        return study

    error = run_virtual(main).trial(2).error or ""
    assert error.startswith("Traceback") and error.rstrip().endswith("ValueError: bad batch")
    assert 'raise ValueError("bad batch")' in error


@pytest.mark.parametrize("cancelled", ["awaited", "task"])
@pytest.mark.parametrize("mode", ["promotion", "stopping"])
def test_a_cancellation_not_by_the_run_fails_its_trial(mode: str, cancelled: str) -> None:
    """Something the objective awaited, or its task, was cancelled by someone else than the
    run (a helper of the objective, a TaskGroup of CPython 3.11 after its body ended): the
    trial fails with that traceback (interrupted, it held its slot for good: the run hung)."""

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1.0)
            if trial.number == 2 and step == 1:
                sub = asyncio.ensure_future(asyncio.sleep(10))
                victim = sub if cancelled == "awaited" else asyncio.current_task()
                assert victim is not None
                asyncio.get_running_loop().call_later(1, victim.cancel)
                await sub
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, mode=mode))  # type: ignore[arg-type]
        with anyio.fail_after(10_000):  # (virtual seconds: a hang fails)
            await study.run(objective, max_trials=20, concurrency=3)
        return study

    study = run_virtual(main)
    failed = study.trial(2)
    assert failed.state is aa.TrialState.FAILED
    assert "CancelledError" in (failed.error or "") and "the run did not cancel it" in (failed.error or "")
    assert [t.number for t in study.trials if t.state is aa.TrialState.FAILED] == [2]


def test_a_cancelled_old_call_does_not_interrupt_its_trials_newer_call() -> None:
    """A call released while paused can still be cleaning up when its trial is promoted and
    called again. Cancelled together, only the newer call interrupts the trial, with its own
    checkpoint: the older one's interrupt took it back to the older call's step."""
    calls: Counter[int] = Counter()
    run: list[asyncio.Future[None]] = []

    async def objective(trial: aa.Trial) -> None:
        calls[trial.number] += 1
        call = calls[trial.number]
        try:
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step), checkpoint=lambda s=step: (call, s))
                if call == 2 and not run[0].cancelled():
                    run[0].cancel()  # while the first call of this trial still cleans up
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1e4)  # a slow clean-up, after a release too

    async def main() -> None:
        study = await new_study()
        run.append(asyncio.ensure_future(study.run(objective, max_trials=40, concurrency=2, max_paused=1)))
        with pytest.raises(asyncio.CancelledError):
            await run[0]
        interrupted = [
            n for n, c in calls.items() if c > 1 and study.trial(n).state is aa.TrialState.INTERRUPTED
        ]
        assert interrupted
        for n in interrupted:
            found = await study.storage.load_checkpoint(study.name, n)
            assert found is not None and found[1][0] == calls[n], (n, found, calls[n])

    run_virtual(main)
