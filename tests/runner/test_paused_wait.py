"""A paused call's wait is its Invocation, which asyncio's Task awaits as a future: the protocol
on its own (a stub host), then what an objective around a pause sees in a real run."""

from __future__ import annotations

import asyncio
import gc
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
    assert asyncio.isfuture(inv) and not inv.done() and inv.waiting
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


# ---------------------------------------------------------------- in a run
def test_an_asyncio_timeout_around_a_pause_fails_that_trial_only() -> None:
    """A timeout that spans a pause fires while the trial waits at its rung: its task is
    cancelled there, the trial fails with the TimeoutError, and the study goes on."""

    async def objective(trial: aa.Trial) -> None:
        limit = 5.0 if trial.number == 0 else 1e9
        async with asyncio.timeout(limit):
            async for step in trial.steps():
                await anyio.sleep(0.1)
                await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=40, concurrency=2)
        return study

    study = run_virtual(main)
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

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=60, concurrency=2)
        return study

    study = run_virtual(main)
    first = study.trials[0]
    assert first.state is aa.TrialState.FAILED
    assert "the helper of trial 0 broke" in (first.error or "")
    assert [t.number for t in study.trials if t.state is aa.TrialState.FAILED] == [0]


@pytest.mark.asyncio
async def test_a_paused_trial_keeps_eight_tracked_objects() -> None:
    """What the collector walks for each paused trial: its task, the task's context, asyncio's
    weak reference to it, the task's wake-up, the objective's and the runner's coroutines, the
    Trial and its Invocation (12 before the invocation was the wait itself)."""
    marks: dict[int, tuple[int, int]] = {}
    first, last = 200, 1200

    async def objective(trial: aa.Trial) -> None:
        if trial.number in (first, last) and trial.number not in marks:
            gc.collect()
            marks[trial.number] = (len(gc.get_objects()), len(asyncio.all_tasks()))
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    study = await new_study()
    await study.run(objective, max_trials=last + 1, concurrency=4)
    (o0, t0), (o1, t1) = marks[first], marks[last]
    per_trial: Any = (o1 - o0) / (t1 - t0)
    assert t1 - t0 > 900  # nearly every trial in between is paused
    assert per_trial < 8.2, per_trial
