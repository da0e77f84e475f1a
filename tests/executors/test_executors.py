"""Executors: the same budget-style study everywhere; processes that time out, die or raise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._core import Reported, TrialPromoted
from tests.executors import objectives as obj

SCHED = aa.ASHA(1, 9, 3)


def space(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"x": aa.Float(0.0, 1.0), "log": str(tmp_path / "calls.log"), **extra}


async def check_study(study: aa.Study, log: Path, *, resumes: bool = True, redone: bool = False) -> None:
    """Every trial finished; values are the curve at each milestone; each promotion took a trial
    from the top floor(n / eta) of its rung at that moment (replayed from the stored log); each
    segment started where the previous one ended (``resumes``) or from scratch.
    ``redone``: segments cut short by an interruption ran again."""
    eta = SCHED.reduction_factor
    trials = study.trials
    assert trials and all(t.state in (aa.TrialState.COMPLETE, aa.TrialState.STOPPED) for t in trials)
    milestones = SCHED.milestones
    rungs: dict[int, list[tuple[float, int]]] = {m: [] for m in milestones}
    promotions = 0
    for ev in await study.storage.read_events(study.name):
        if isinstance(ev, Reported):
            assert ev.step in milestones  # budget-style calls end exactly at milestones
            rungs[ev.step].append((ev.value, ev.number))
        elif isinstance(ev, TrialPromoted):
            below = sorted(rungs[milestones[ev.rung - 1]])
            assert [n for _, n in below].index(ev.number) < len(below) // eta
            promotions += 1
    assert promotions >= 1
    calls = obj.read_log(log)
    for t in trials:
        for m, v in t.rung_values.items():
            assert v == pytest.approx(obj.curve(t.params["x"], m))
        segments = calls[t.params["x"]]
        if redone:
            segments = list({(s, b): (s, b, p) for s, b, p in segments}.values())
        assert [b for _, b, _ in segments] == sorted(t.rung_values)
        if resumes:
            starts = [0] + [b for _, b, _ in segments[:-1]]
        else:
            starts = [0] * len(segments)
        assert [s for s, _, _ in segments] == starts


async def run_small(
    tmp_path: Path, fn: Callable[..., Any], executor: aa.Executor | None, **kw: Any
) -> aa.Study:
    tmp_path.mkdir(exist_ok=True)  # noqa: ASYNC240 - a test's scratch directory
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED, sampler=aa.RandomSampler(3))
    await study.run(fn, max_trials=12, concurrency=2, executor=executor, **kw)
    return study


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["loop", "thread", "process"])
async def test_each_executor_runs_the_same_promotion_study(tmp_path: Path, where: str) -> None:
    fn: Callable[..., Any]
    executor: aa.Executor
    if where == "loop":
        fn, executor = obj.train_async, aa.LoopExecutor()
    elif where == "thread":
        fn, executor = obj.train, aa.ThreadExecutor()
    else:
        fn, executor = obj.train, aa.ProcessExecutor(2)
    study = await run_small(tmp_path, fn, executor)
    await check_study(study, tmp_path / "calls.log")
    assert not executor.started  # run() started it, so run() closed it
    pids = {pid for segs in obj.read_log(tmp_path / "calls.log").values() for *_, pid in segs}
    assert (os.getpid() in pids) is (where != "process")
    if where == "process":
        assert len(pids) == 2  # two workers, reused across trials


@pytest.mark.asyncio
async def test_budget_objectives_default_to_loop_or_threads(tmp_path: Path) -> None:
    await check_study(await run_small(tmp_path / "a", obj.train_async, None), tmp_path / "a" / "calls.log")
    await check_study(await run_small(tmp_path / "b", obj.train, None), tmp_path / "b" / "calls.log")


@pytest.mark.asyncio
async def test_without_checkpoints_each_segment_starts_from_scratch(tmp_path: Path) -> None:
    study = await run_small(tmp_path, obj.value_only, aa.ProcessExecutor(2))
    await check_study(study, tmp_path / "calls.log", resumes=False)


@pytest.mark.asyncio
async def test_stopping_mode_calls_once_per_milestone(tmp_path: Path) -> None:
    study = await aa.create_study(
        space=space(tmp_path), scheduler=aa.ASHA(1, 9, 3, mode="stopping"), sampler=aa.RandomSampler(0)
    )
    await study.run(obj.train, max_trials=10, concurrency=2)
    calls = obj.read_log(tmp_path / "calls.log")
    for t in study.trials:
        assert [b for _, b, _ in calls[t.params["x"]]] == sorted(t.rung_values)
    assert study.counts[aa.TrialState.STOPPED] >= 1


@pytest.mark.asyncio
async def test_released_budget_trials_resume_from_their_stored_checkpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = await aa.create_study(
        space=space(tmp_path), scheduler=SCHED, sampler=aa.RandomSampler(5), storage=url
    )
    async with study:
        await study.run(obj.train, max_trials=15, concurrency=2, max_paused=0)
        await check_study(study, tmp_path / "calls.log")


@pytest.mark.asyncio
async def test_process_trial_timeout_kills_its_process(tmp_path: Path) -> None:
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)
    async with aa.ProcessExecutor(2) as executor:
        with anyio.fail_after(30):
            await study.run(obj.sleep_forever, max_trials=1, executor=executor, trial_timeout=1.0)
        assert executor.started  # started by us: run() leaves it open
        (t,) = study.trials
        assert t.state is aa.TrialState.FAILED
        assert t.error is not None and "trial_timeout=1.0" in t.error
        pid = int((tmp_path / "calls.log").read_text())
        assert pid not in executor.pids
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        # The pool replaces the killed worker on the next call.
        assert await executor.submit(obj.curve, 0.3, 1) == pytest.approx(1.3)


def read_pid(marker: Path) -> int | None:
    text = marker.read_text() if marker.exists() else ""
    return int(text) if text else None


async def kill_when_marked(marker: Path) -> int:
    """SIGKILL the process whose pid appears in ``marker`` (written by another process)."""
    while (pid := read_pid(marker)) is None:  # noqa: ASYNC110 - another process writes it
        await anyio.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.asyncio
@pytest.mark.parametrize("retries", [0, 1])
async def test_a_worker_killed_mid_trial_is_retried_or_failed(tmp_path: Path, retries: int) -> None:
    marker = tmp_path / "marker"
    study = await aa.create_study(space=space(tmp_path, marker=str(marker)), scheduler=SCHED)
    with anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_when_marked, marker)
            await study.run(obj.die_once, max_trials=4, executor=aa.ProcessExecutor(2), retries=retries)
    states = [t.state for t in study.trials]
    assert len(states) == 4 and all(s.is_finished for s in states)
    failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
    if retries:
        assert not failed
        assert all(t.rung_values.get(1) == pytest.approx(obj.curve(t.params["x"], 1)) for t in study.trials)
    else:
        (t,) = failed
        assert t.error is not None and "WorkerLostError" in t.error and "SIGKILL" in t.error


@pytest.mark.asyncio
async def test_remote_errors_and_bad_results_are_stored_with_the_trial(tmp_path: Path) -> None:
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED, sampler=aa.RandomSampler(2))
    await study.run(obj.raises, max_trials=8, concurrency=2, executor=aa.ProcessExecutor(2))
    failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
    assert failed and all(t.params["x"] > 0.5 for t in failed)
    for t in failed:
        assert (
            t.error is not None and "RuntimeError: diverged at x=" in t.error and "objectives.py" in t.error
        )
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)
    await study.run(obj.bad_checkpoint, max_trials=1, executor=aa.ProcessExecutor(1))
    (t,) = study.trials
    assert t.state is aa.TrialState.FAILED
    assert t.error is not None and "checkpoint must be bytes (or None)" in t.error and "dict" in t.error


def local_budget_fn(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> float:
    return 0.0


@pytest.mark.asyncio
async def test_objectives_an_executor_cannot_run_are_refused_up_front(tmp_path: Path) -> None:
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)

    async def trial_style(trial: aa.Trial) -> None:
        pass

    def sync_trial_style(trial: aa.ThreadTrial) -> None:
        pass

    with pytest.raises(aa.ConfigError, match="ProcessExecutor runs budget-style objectives"):
        await study.run(trial_style, max_trials=1, executor=aa.ProcessExecutor(1))
    with pytest.raises(aa.ConfigError, match="would block the event loop"):
        await study.run(sync_trial_style, max_trials=1, executor=aa.LoopExecutor())
    with pytest.raises(aa.ConfigError, match="is async"):
        await study.run(trial_style, max_trials=1, executor=aa.ThreadExecutor())
    with pytest.raises(aa.ConfigError, match=r"one required argument \(a trial\) or three"):
        await study.run(lambda a, b: None, max_trials=1)  # type: ignore[arg-type]

    def ambiguous(params: dict[str, Any], budget: int = 1, checkpoint: bytes | None = None) -> float:
        return 0.0

    with pytest.raises(aa.ConfigError, match=r"its signature is \(params: "):
        await study.run(ambiguous, max_trials=1)

    def wraps_async(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> Any:
        return obj.train_async(params, budget, checkpoint)

    with pytest.raises(aa.ConfigError, match=r"returned <coroutine .* instead of running"):
        await study.run(wraps_async, max_trials=3)
    with pytest.raises(aa.ConfigError, match="executor must be an Executor"):
        await study.run(obj.train, max_trials=1, executor="processes")  # type: ignore[arg-type]
    with pytest.raises(aa.ConfigError, match="retries must be an integer >= 0, got -1"):
        await study.run(obj.train, max_trials=1, retries=-1)
    for bad in (0, 1.5, True):
        with pytest.raises(aa.ConfigError, match="max_workers"):
            aa.ProcessExecutor(bad)  # type: ignore[arg-type]
    with pytest.raises(aa.ConfigError, match="'fork' is unsafe"):
        aa.ProcessExecutor(1, start_method="fork")
    # A lambda cannot be sent to a process: the run ends with the reason, not 1 failure per trial.
    with pytest.raises(aa.ConfigError, match=r"cannot send .* to a worker process"):
        await study.run(lambda p, b, c: 0.0, max_trials=3, executor=aa.ProcessExecutor(1))
    assert not study.is_running
    # A function local to the test module is fine: pickled by reference.
    await study.run(local_budget_fn, max_trials=1, executor=aa.ProcessExecutor(1))
    with pytest.raises(aa.StateError, match="not started"):
        await aa.ProcessExecutor(1).submit(obj.curve, 0.1, 1)


@pytest.mark.asyncio
async def test_cancelled_run_kills_busy_workers_and_resumes_from_checkpoints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    sp = space(tmp_path, seconds=0.2)
    study = await aa.create_study(
        space=sp, scheduler=SCHED, sampler=aa.RandomSampler(1), storage=url, name="s"
    )
    async with study:
        async with aa.ProcessExecutor(2) as executor:
            with anyio.move_on_after(1.5):
                await study.run(obj.train, max_trials=10, executor=executor)
        interrupted = [t for t in study.trials if t.state is aa.TrialState.INTERRUPTED]
        assert interrupted
        calls = obj.read_log(tmp_path / "calls.log")
        for t in interrupted:  # the process running its cut-short segment was killed
            with pytest.raises(ProcessLookupError):
                os.kill(calls[t.params["x"]][-1][2], 0)
    study = await aa.load_study(name="s", storage=url)
    async with study:
        await study.run(obj.train, max_trials=10, executor=aa.ProcessExecutor(2))
        await check_study(study, tmp_path / "calls.log", redone=True)


@pytest.mark.asyncio
async def test_two_runs_share_one_executor_the_last_closes_it(tmp_path: Path) -> None:
    executor = aa.ProcessExecutor(2)
    studies = [
        await aa.create_study(space=space(tmp_path / str(i)), scheduler=SCHED, sampler=aa.RandomSampler(i))
        for i in range(2)
    ]
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    async with anyio.create_task_group() as tg:
        for study in studies:
            tg.start_soon(partial(study.run, obj.train, max_trials=6, executor=executor))
    for i, study in enumerate(studies):
        await check_study(study, tmp_path / str(i) / "calls.log")
    assert not executor.started and executor.pids == []
    await studies[0].run(obj.train, max_trials=9, executor=executor)  # it can start again
    assert not executor.started


@pytest.mark.asyncio
async def test_worker_deaths_are_seen_at_once_and_dead_idle_workers_replaced(tmp_path: Path) -> None:
    async with aa.ProcessExecutor(1) as executor:
        with anyio.fail_after(10):  # its forked child holds the pipe for 30 s
            with pytest.raises(aa.WorkerLostError, match="was killed by SIGKILL while running fork_then_die"):
                await executor.submit(obj.fork_then_die, {}, 1, None)
        assert await executor.submit(obj.curve, 0.3, 1) == pytest.approx(1.3)
        (pid,) = executor.pids
        os.kill(pid, signal.SIGKILL)  # dies while idle: the next call gets a fresh worker
        (worker,) = executor._all
        while worker.process.is_alive():  # noqa: ASYNC110 - the OS reaps it
            await anyio.sleep(0.01)
        assert await executor.submit(obj.curve, 0.3, 4) == pytest.approx(0.65)
        assert executor.pids != [pid]


@pytest.mark.asyncio
async def test_a_late_thread_result_past_the_timeout_is_dropped(tmp_path: Path) -> None:
    study = await aa.create_study(space=space(tmp_path, seconds=0.5), scheduler=SCHED)
    await study.run(obj.sleep_then_value, max_trials=2, concurrency=2, trial_timeout=0.2)
    for t in study.trials:
        assert t.state is aa.TrialState.FAILED and t.rung_values == {}
        assert t.error is not None and "trial_timeout=0.2" in t.error


@pytest.mark.asyncio
async def test_retries_count_over_the_trials_life_across_runs(tmp_path: Path) -> None:
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)
    async with aa.ProcessExecutor(1) as executor:
        await study.run(obj.die_now, max_trials=1, executor=executor, retries=2)
        (t,) = study.trials
        assert t.state is aa.TrialState.FAILED and t.error is not None and "WorkerLostError" in t.error
        assert study._retried == {0: 2}


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_objectives_workers_cannot_import_end_the_run_with_the_reason(how: str, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import asyncio
        import aio_ashb as aa

        def train(params, budget, checkpoint):
            return 0.5

        async def main():
            study = await aa.create_study(space={"x": aa.Float(0, 1)})
            try:
                await study.run(train, max_trials=4, executor=aa.ProcessExecutor(1))
            except aa.ConfigError as exc:
                print("ConfigError:", exc)

        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    argv = [sys.executable, "-c", code] if how == "-c" else [sys.executable, "-"]
    done = subprocess.run(
        argv, input=code if how == "stdin" else None, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    expected = "cannot load train" if how == "-c" else "a worker process could not start"
    assert "ConfigError:" in done.stdout and expected in done.stdout
