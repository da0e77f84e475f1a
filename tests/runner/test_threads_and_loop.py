"""Sync objectives in worker threads, and a loop that stays responsive (real time, small sizes)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import anyio
import anyio.to_thread
import pytest

import aio_ashb as aa
from tests.helpers import SPACE, loss


@pytest.mark.asyncio
async def test_sync_objectives_run_in_threads_with_the_same_api() -> None:
    main_thread = threading.get_ident()
    threads: set[int] = set()
    checkpoint_threads: set[int] = set()
    invocations: Counter[int] = Counter()

    def objective(trial: aa.ThreadTrial) -> None:
        invocations[trial.number] += 1
        threads.add(threading.get_ident())

        def make_checkpoint() -> dict[str, int]:
            checkpoint_threads.add(threading.get_ident())
            return {"step": trial.step}

        for step in trial.steps():
            time.sleep(0.001)  # blocking work is fine here: this is a worker thread
            decision = trial.report(loss(trial.params, step), checkpoint=make_checkpoint)
            assert isinstance(decision, aa.Decision)

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(1))
    await study.run(objective, max_trials=18, concurrency=3)
    assert main_thread not in threads
    assert checkpoint_threads and main_thread not in checkpoint_threads
    assert set(invocations.values()) == {1}  # promoted threads continued in place
    assert study.counts[aa.TrialState.COMPLETE] >= 1
    assert all(t.state.is_finished for t in study.trials)


@pytest.mark.asyncio
async def test_sync_objective_failures_and_bad_reports_are_stored() -> None:
    def objective(trial: aa.ThreadTrial) -> None:
        for _step in trial.steps():
            trial.report(None if trial.number == 1 else 0.5)  # type: ignore[arg-type]

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3, mode="stopping"))
    await study.run(objective, max_trials=3, concurrency=2)
    t1 = study.trials[1]
    assert t1.state is aa.TrialState.FAILED
    assert (
        t1.error is not None and "ReportError: a reported value must be a real number, got None" in t1.error
    )


@pytest.mark.asyncio
async def test_cancelling_a_run_with_thread_trials_interrupts_them() -> None:
    started = threading.Event()

    def objective(trial: aa.ThreadTrial) -> None:
        for step in trial.steps():
            started.set()
            time.sleep(0.005)
            trial.report(loss(trial.params, step))

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 10_000, 3))
    async with anyio.create_task_group() as tg:
        tg.start_soon(study.run, objective)  # no trial bound: only cancellation ends it
        await anyio.to_thread.run_sync(started.wait)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    counts = study.counts
    assert counts[aa.TrialState.RUNNING] == 0
    assert counts[aa.TrialState.INTERRUPTED] == 1


@pytest.mark.asyncio
async def test_the_event_loop_is_never_blocked_for_long() -> None:
    # Measured in the loop thread's CPU time, not wall time: what the runner's code held the
    # loop for, whatever else the machine is doing (a loaded CI machine stretches wall time).
    worst = 0.0
    done = False

    async def heartbeat() -> None:
        nonlocal worst
        while not done:
            t0 = time.thread_time()
            await anyio.sleep(0.001)
            worst = max(worst, time.thread_time() - t0)

    async def objective(trial: aa.Trial) -> None:  # no-op: every report is pure scheduler cost
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 81, 3))
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        t0 = time.thread_time()
        await study.run(objective, max_trials=3000, concurrency=64)
        cpu = time.thread_time() - t0
        done = True
    assert len(study.trials) == 3000
    # The loop got control back after at most 0.25 s of work (a full garbage collection of the
    # test process included), in a run of about a second's.
    assert worst < 0.25, f"the loop was held for {worst:.3f} s of CPU (the run used {cpu:.2f} s)"


@pytest.mark.asyncio
async def test_trial_timeout_abandons_a_thread_trial_and_refuses_its_next_report() -> None:
    refused: list[int] = []
    stopped = threading.Event()

    def objective(trial: aa.ThreadTrial) -> None:
        for step in trial.steps():
            time.sleep(0.02)
            try:
                trial.report(loss(trial.params, step))
            except aa.TrialStopped:
                refused.append(step)
                stopped.set()
                raise

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 10_000, 3, mode="stopping"))
    await study.run(objective, max_trials=1, trial_timeout=0.2)
    t = study.trials[0]
    assert t.state is aa.TrialState.FAILED
    assert t.error is not None and "trial_timeout=0.2" in t.error
    # The thread runs on until its next report, which is refused.
    assert await anyio.to_thread.run_sync(stopped.wait, 10)
    curve = await study.learning_curve(0)
    assert sorted(curve) == list(range(1, len(curve) + 1)) and refused[0] > len(curve)


@pytest.mark.asyncio
async def test_a_blocked_thread_is_abandoned_at_its_trial_timeout() -> None:
    release = threading.Event()
    late: list[str] = []

    def objective(trial: aa.ThreadTrial) -> None:
        for step in trial.steps():
            release.wait(10)  # blocked far past trial_timeout
            try:
                trial.report(loss(trial.params, step))
            except aa.TrialStopped as exc:
                late.append(str(exc))
                return

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3))
    t0 = time.monotonic()
    await study.run(objective, max_trials=2, concurrency=2, trial_timeout=0.2)
    assert time.monotonic() - t0 < 3  # not the 10 s the threads are blocked for
    for t in study.trials:
        assert t.state is aa.TrialState.FAILED
        assert t.error is not None and "trial_timeout=0.2 s (its thread was abandoned" in t.error
    release.set()
    for _ in range(100):
        if len(late) == 2:
            break
        await anyio.sleep(0.02)
    assert sorted(late) == [
        f"trial {n} was abandoned by the runner; it takes no more reports" for n in (0, 1)
    ]
    assert study.counts[aa.TrialState.FAILED] == 2  # its late report changed nothing


@pytest.mark.asyncio
async def test_cancelling_abandons_a_thread_that_never_returns() -> None:
    release = threading.Event()
    entered = threading.Event()

    def objective(trial: aa.ThreadTrial) -> None:
        for _step in trial.steps():
            entered.set()
            release.wait()  # threading.Event().wait(): blocked until the test ends

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3))
    try:
        with anyio.fail_after(5):  # it used to hang here forever
            async with anyio.create_task_group() as tg:
                tg.start_soon(study.run, objective)
                await anyio.to_thread.run_sync(entered.wait)
                tg.cancel_scope.cancel()
        assert study.counts[aa.TrialState.INTERRUPTED] == 1
        assert study.counts[aa.TrialState.RUNNING] == 0
    finally:
        release.set()


BLOCKED_SCRIPT = """
import asyncio, os, signal, threading
import aio_ashb as aa

signal.signal(signal.SIGINT, signal.default_int_handler)  # (see tests/storage/crash_child.py)

def objective(trial):
    for step in trial.steps():
        os.write(1, b"in\\n")  # one write: the two threads' lines never mix
        threading.Event().wait()  # never returns

async def main():
    study = await aa.create_study(space={"x": aa.Float(0, 1)}, scheduler=aa.ASHA(1, 9, 3))
    print("running", flush=True)
    await study.run(objective, concurrency=2)

asyncio.run(main())
"""


def test_ctrl_c_twice_ends_a_process_whose_threads_never_return() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert [proc.stdout.readline().strip() for _ in range(3)] == ["running", "in", "in"]
    proc.send_signal(signal.SIGINT)  # run() is cancelled and returns; the threads run on
    waiting = proc.stderr.readline()
    while "waiting for" not in waiting:
        waiting = proc.stderr.readline()
        assert waiting, "the process ended without saying what it waits for"
    assert "waiting for 2 abandoned call(s) still running in threads (trial " in waiting
    assert "trial 0" in waiting and "trial 1" in waiting
    assert proc.poll() is None  # it waits for them, as Python waits for its threads
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=10)
    assert "exiting; abandoned and unfinished: trial " in rest
    assert "trial 0" in rest and "trial 1" in rest


def test_a_thread_whose_loop_stopped_gets_trial_stopped_and_leaves_no_coroutine_behind() -> None:
    """A worker thread reporting to a loop that has stopped (not closed yet: the moment at the
    end of asyncio.run) gives up with TrialStopped, and no coroutine was made that nobody will
    ever await (it would warn, at some later garbage collection, in some other test)."""
    import gc
    import warnings

    from aio_ashb._exceptions import TrialStopped
    from aio_ashb._trial import on_loop

    async def report() -> int:
        return 1

    loop = asyncio.new_event_loop()  # never run
    outcome: list[BaseException] = []

    def thread() -> None:
        try:
            on_loop(loop, report)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], TrialStopped)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.close()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


@pytest.mark.asyncio
@pytest.mark.parametrize("steps", ["remote calls", "no await"])
async def test_costly_proposals_are_spread_over_loop_turns(
    monkeypatch: pytest.MonkeyPatch, steps: str
) -> None:
    # A learning sampler's proposals may cost milliseconds each: the runner spends at most
    # about _FILL_BUDGET of a loop turn on them. Here every job decision "takes" 1 ms (a fake
    # clock), so a budget lets one more than its whole milliseconds through (one with 0.5 ms),
    # where 32 (_FILL_BATCH) would start at once. With steps that never await, trials end and
    # take their next job without yielding, many in one turn: each reset of the budget (one
    # per turn) once scheduled another, and 47 proposals (68 ms) ran in one turn.
    from aio_ashb import _runner

    fake = iter(x / 1000 for x in range(10**9))  # each read 1 ms later: a decision takes 1 ms
    monkeypatch.setattr(_runner, "perf_counter", lambda: next(fake))
    turn = 0
    turns: list[int] = []

    propose = aa.TPESampler.propose

    def recording(self: aa.TPESampler, space: Any, rng: Any, history: Any) -> Any:
        turns.append(turn)
        return propose(self, space, rng, history)

    monkeypatch.setattr(aa.TPESampler, "propose", recording)

    async def ticker() -> None:
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)  # one turn of the loop

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            if steps == "remote calls":
                await asyncio.sleep(0.01)
            await trial.report(loss(trial.params, step))

    scheduler = aa.ASHA(1, 3, 3) if steps == "remote calls" else aa.ASHA(1, 81, 3)
    trials = 200 if steps == "remote calls" else 800
    study = await aa.create_study(space=SPACE, scheduler=scheduler, sampler=aa.TPESampler(0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await study.run(objective, max_trials=trials, concurrency=100 if steps == "remote calls" else 64)
        tg.cancel_scope.cancel()
    per_turn = [turns.count(t) for t in set(turns)]
    # The budget is reset once a turn, by a callback that runs somewhere in the turn: a turn
    # may hold the end of one budget and the whole of the next.
    most = 2 * (int(_runner._FILL_BUDGET * 1000) + 1)
    assert most < _runner._FILL_BATCH
    assert len(turns) == trials and max(per_turn) <= most, sorted(per_turn)[-5:]
