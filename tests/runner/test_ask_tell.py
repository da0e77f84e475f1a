from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

import aio_ashb as aa
from tests.helpers import SPACE, loss

T = TypeVar("T")


def at_once(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in one step, or fail: it must never suspend (wait on the event
    loop: a thread, a flush, a sleep)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the call suspended: it waited on the event loop")


@pytest.mark.asyncio
async def test_ask_tell_drives_promotions_with_checkpoints() -> None:
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(2))
    decisions: list[aa.Decision] = []
    promoted_jobs: list[aa.AskedJob] = []
    for _ in range(40):
        job = await study.ask()
        if job.step > 0:
            promoted_jobs.append(job)
            assert job.checkpoint == {"trained_to": job.step}
        decisions.append(
            await study.tell(job, loss(job.params, job.target), checkpoint={"trained_to": job.target})
        )
    assert promoted_jobs, "some asks must promote"
    assert promoted_jobs[0].target in (3, 9)
    assert aa.Decision.PAUSE in decisions and aa.Decision.COMPLETE in decisions
    best = study.best_trial
    assert best is not None and best.resource == 9


@pytest.mark.asyncio
async def test_ask_tell_failures_and_misuse() -> None:
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3, mode="stopping"))
    job = await study.ask()
    assert job.target == 9
    assert await study.tell(job, 0.5, step=1) is aa.Decision.CONTINUE
    await study.fail(job, ValueError("worker crashed"))
    t = study.trials[job.number]
    assert t.state is aa.TrialState.FAILED and t.error is not None and "worker crashed" in t.error
    with pytest.raises(aa.StateError, match=f"trial {job.number} is not an open job"):
        await study.tell(job, 0.1)
    job2 = await study.ask()
    with pytest.raises(aa.ReportError, match="got 'x'"):
        await study.tell(job2, "x")  # type: ignore[arg-type]
    with pytest.raises(aa.StateError, match="tell\\(\\) them first"):
        await study.run(lambda t: None, max_trials=1)


@pytest.mark.asyncio
async def test_ask_without_checkpoint_restarts_and_skips_recorded_steps() -> None:
    """A promoted job with no checkpoint starts from 0; re-reporting steps recorded before is
    accepted and ignored, as run() does for a trial called again."""
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(4))
    for _ in range(20):
        job = await study.ask()
        if job.target > 1:
            break
        await study.tell(job, loss(job.params, 1))
    else:
        pytest.fail("no promotion in 20 asks")
    assert job.step == 0 and job.checkpoint is None
    first = (await study.learning_curve(job.number))[1]
    assert await study.tell(job, 123.0, step=1) is aa.Decision.CONTINUE
    assert (await study.learning_curve(job.number))[1] == first
    with pytest.raises(aa.ReportError, match="got 'x'"):
        await study.tell(job, "x", step=1)  # type: ignore[arg-type]
    assert await study.tell(job, loss(job.params, 2), step=2) is aa.Decision.CONTINUE
    assert await study.tell(job, loss(job.params, 3)) in (aa.Decision.PAUSE, aa.Decision.COMPLETE)
    assert sorted(await study.learning_curve(job.number)) == [1, 2, 3]


@pytest.mark.asyncio
async def test_release_interrupts_the_trial_and_the_next_ask_resumes_it(tmp_path: Path) -> None:
    """A job given back (its worker vanished) is the same trial on the next ask, from its last
    checkpoint; its reports stay; the log replays to the same state after a restart."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3, mode="stopping"), storage=url, name="r"
    )
    job = await study.ask()
    assert await study.tell(job, 0.5, step=1, checkpoint={"at": 1}) is aa.Decision.CONTINUE
    await study.release(job)
    assert study.trials[job.number].state is aa.TrialState.INTERRUPTED
    with pytest.raises(aa.StateError, match=f"trial {job.number} is not an open job"):
        await study.tell(job, 0.4, step=2)
    with pytest.raises(aa.StateError, match=f"trial {job.number} is not an open job"):
        await study.release(job)
    again = await study.ask()
    assert again.number == job.number and again.params == job.params
    assert (again.step, again.checkpoint) == (1, {"at": 1})
    assert study.trials[job.number].state is aa.TrialState.RUNNING
    await study.release(again)
    await study.close()
    async with await aa.load_study(name="r", storage=url) as reopened:
        assert reopened.trials[job.number].state is aa.TrialState.INTERRUPTED
        assert await reopened.learning_curve(job.number) == {1: 0.5}
        assert (await reopened.ask()).number == job.number


@pytest.mark.asyncio
async def test_ask_with_max_trials_returns_none_when_nothing_may_start() -> None:
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(1))
    jobs = [await study.ask(max_trials=2) for _ in range(2)]
    assert [j.number for j in jobs if j is not None] == [0, 1]
    assert await study.ask(max_trials=2) is None  # two trials, both running: nothing to hand out
    first = jobs[0]
    assert first is not None
    await study.release(first)
    resumed = await study.ask(max_trials=2)
    assert resumed is not None and resumed.number == 0  # resuming is not a new trial
    bad: Any
    for bad in (0, -1, True, 1.5):
        with pytest.raises(aa.ConfigError, match=f"max_trials must be a positive integer or None, got {bad}"):
            await study.ask(max_trials=bad)


@pytest.mark.asyncio
async def test_memory_ask_tell_never_wait_on_the_loop_or_start_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MemoryStorage has nothing to commit and does not pickle checkpoints: ask(), tell() (with
    a checkpoint too), fail() and release() finish without suspending and start no thread."""
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(2))

    def no_thread(self: threading.Thread) -> None:
        raise AssertionError(f"a thread was started: {self!r}")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    promoted = 0
    for i in range(40):
        job = at_once(study.ask())
        if job.step > 0:
            promoted += 1
            assert job.checkpoint == {"trained_to": job.step}
        if i == 10:
            at_once(study.release(job))
            continue
        if i == 20:
            at_once(study.fail(job, "worker lost"))
            continue
        # A callable checkpoint: tell() calls it (in this task: MemoryStorage pickles nothing).
        saved: Callable[[], dict[str, int]] = partial(dict, trained_to=job.target)
        at_once(study.tell(job, loss(job.params, job.target), checkpoint=saved))
    assert promoted, "some asks must promote (and load a checkpoint)"
    assert study.states[aa.TrialState.FAILED] == 1


@pytest.mark.asyncio
async def test_an_ask_whose_write_fails_hands_its_trial_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job was decided and queued for the log, but the commit failed: nobody holds it, so
    # it must not stay RUNNING forever; the next ask resumes that same trial.
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{tmp_path / 's.db'}"
    )
    async with study:
        first = await study.ask()
        storage = study._storage
        real = storage.flush

        async def broken(seq: int | None = None) -> None:
            raise aa.StorageError("the disk is full")

        monkeypatch.setattr(storage, "flush", broken)
        with pytest.raises(aa.StorageError, match="disk is full"):
            await study.ask()
        monkeypatch.setattr(storage, "flush", real)
        assert study.states[aa.TrialState.INTERRUPTED] == 1
        again = await study.ask()
        assert again.number == 1 and again.number != first.number  # the same trial, resumed
        await study.tell(again, 0.5)
        await study.tell(first, 0.7)
    reopened = await aa.load_study(name=study.name, storage=f"sqlite:///{tmp_path / 's.db'}")
    async with reopened:  # every event was written once the storage worked again
        assert reopened.n_trials == 2 and reopened.states[aa.TrialState.RUNNING] == 0


@pytest.mark.asyncio
async def test_a_lease_that_ran_out_loses_its_jobs_and_the_log_is_read_again(tmp_path: Path) -> None:
    # A's worker trains longer than the lease: B takes the study over, writes, and lets it go.
    # A must not go on from what it held (its next trial number would collide with B's, and its
    # snapshot would hide B's trials): its job is lost, and it reads the log again.
    import asyncio

    from aio_ashb._factory import core_from_config

    url = f"sqlite:///{tmp_path / 's.db'}"
    a = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=url, name="s", lease_ttl=0.2)
    lost = await a.ask()
    await asyncio.sleep(0.4)
    b = await aa.load_study(name="s", storage=url, lease_ttl=0.2)
    resumed = await b.ask()  # A's trial, interrupted and handed to B
    started = await b.ask()
    await b.tell(started, 0.5, step=1)
    await b.close()
    with pytest.raises(aa.StateError, match=r"lease .* ran out before it was told"):
        await a.tell(lost, 0.1, step=1)
    again = await a.ask()
    assert again.number == resumed.number == lost.number  # B left it RUNNING: handed back again
    fresh = await a.ask()
    assert fresh.number == 2  # after B's trial 1, not a second trial 1
    await a.tell(again, 0.2, step=1)
    await a.tell(fresh, 0.3, step=1)
    await a.close()
    async with aa.SQLiteStorage(tmp_path / "s.db", readonly=True) as storage:
        info, events = await storage.read_study("s")
    replayed = core_from_config("s", storage, info.config)
    replayed.replay(events)  # the log is consistent
    reopened = await aa.load_study(name="s", storage=url)  # (from the snapshot A stored)
    async with reopened:
        assert repr(reopened.trials) == repr(replayed.trials())
