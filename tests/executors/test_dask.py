"""DaskExecutor on a real distributed.LocalCluster: two worker processes on loopback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio
from distributed import Client, LocalCluster

import aio_ashb as aa
from tests.executors import objectives as obj
from tests.executors.test_executors import SCHED, check_study, space


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        asynchronous=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as c:
        yield c


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def kill_a_busy_worker(log: Path, after_calls: int) -> int:
    """SIGKILL the worker process that just started a segment (it sleeps in it)."""
    while len(lines := log_lines(log)) < after_calls:  # noqa: ASYNC110 - workers write the log
        await anyio.sleep(0.01)
    pid = int(lines[-1].split()[3])
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_promotion_study_on_a_cluster_survives_a_killed_worker(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    log = tmp_path / "calls.log"
    study = await aa.create_study(
        space=space(tmp_path, seconds=0.15),
        scheduler=SCHED,
        sampler=aa.RandomSampler(7),
        storage=url,
        name="d",
    )
    killed: list[int] = []

    async def killer() -> None:
        killed.append(await kill_a_busy_worker(log, after_calls=6))

    async with study, aa.DaskExecutor(cluster.scheduler_address) as executor:
        assert executor.workers == 2
        with anyio.fail_after(150):
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                await study.run(obj.train, max_trials=12, executor=executor)
        # Promoted trials resumed from the checkpoint their previous segment returned, on
        # whichever worker ran them; the killed segment ran again, elsewhere, from the same one.
        await check_study(study, log, redone=True)
        calls = obj.read_log(log)
        pids = {pid for segs in calls.values() for *_, pid in segs}
        assert os.getpid() not in pids and killed[0] in pids
        redone = [
            segs
            for segs in calls.values()
            for i, (s, b, p) in enumerate(segs)
            if p == killed[0] and any((s2, b2) == (s, b) for s2, b2, _ in segs[i + 1 :])
        ]
        assert redone, "the segment running on the killed worker was not run again"
        recorded = study.trials
    # Nothing recorded was lost: the file holds every report the run made.
    async with await aa.load_study(name="d", storage=url) as reopened:
        assert reopened.trials == recorded
        for t in recorded:
            curve = await reopened.learning_curve(t.number)
            assert sorted(curve) == sorted(t.rung_values)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_user_client_errors_and_cancellation(cluster: LocalCluster, tmp_path: Path) -> None:
    async with Client(cluster, asynchronous=True) as client:
        executor = aa.DaskExecutor(client)
        study = await aa.create_study(space=space(tmp_path), scheduler=SCHED, sampler=aa.RandomSampler(2))
        await study.run(obj.raises, max_trials=6, executor=executor)
        assert not executor.started and client.status == "running"  # the user's client stays open
        failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
        assert failed and all(t.error and "RuntimeError: diverged at x=" in t.error for t in failed)
        with pytest.raises(aa.RemoteError, match="RuntimeError: diverged at x="):
            async with aa.DaskExecutor(client) as ex:
                await ex.submit(obj.raises, {"x": 0.9}, 1, None)

        # trial_timeout cancels the task's future; the study goes on.
        study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)
        with anyio.fail_after(60):
            await study.run(
                obj.sleep_forever, max_trials=1, executor=aa.DaskExecutor(client), trial_timeout=1
            )
        (t,) = study.trials
        assert t.state is aa.TrialState.FAILED and t.error and "trial_timeout=1" in t.error

        async def trial_style(trial: aa.Trial) -> None:
            pass

        with pytest.raises(aa.ConfigError, match="DaskExecutor runs budget-style objectives"):
            await study.run(trial_style, executor=aa.DaskExecutor(client))
    with pytest.raises(aa.ConfigError, match=r"a distributed\.Client or a scheduler address"):
        aa.DaskExecutor(42)  # type: ignore[arg-type]


def test_missing_distributed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(aa.MissingDependencyError, match=r'pip install "aio_ashb\[dask\]"') as info:
        aa.DaskExecutor("tcp://127.0.0.1:8786")
    assert isinstance(info.value, ImportError)


@pytest.mark.asyncio
async def test_an_unreachable_scheduler_ends_the_run_with_a_clear_error(tmp_path: Path) -> None:
    executor = aa.DaskExecutor("tcp://127.0.0.1:1", connect_timeout=1)
    study = await aa.create_study(space=space(tmp_path), scheduler=SCHED)
    for _ in range(2):  # and again: the failed start left nothing half-open
        with pytest.raises(
            aa.ConfigError, match=r"cannot connect to the Dask scheduler at tcp://127\.0\.0\.1:1"
        ):
            await study.run(obj.train, max_trials=2, executor=executor)
        assert not executor.started and study.trials == []
