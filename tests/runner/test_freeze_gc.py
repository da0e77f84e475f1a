"""run(freeze_gc=True): paused trials are moved out of the collector's reach while the run goes
on, the collector is given them back at the end, and nothing else about the run changes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

import aio_ashb as aa
from aio_ashb import _gcfreeze
from tests.helpers import SPACE, loss


def frozen_now() -> int:
    """Objects frozen beyond what the interpreter keeps frozen itself (CPython 3.12 does, and
    gives them back to the permanent generation at each collection after an unfreeze)."""
    return gc.get_freeze_count() - _gcfreeze.INTERPRETERS_OWN


@pytest.fixture(autouse=True)
def _unfrozen_after() -> Iterator[None]:
    """Whatever a test does, the next one starts with nothing frozen."""
    assert frozen_now() <= 0
    try:
        yield
    finally:
        gc.unfreeze()


async def _run(freeze_gc: bool, trials: int = 2_500, seed: int = 0) -> tuple[list[Any], int]:
    """A promotion-mode study where most trials end up paused; the largest freeze count seen."""
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 27, 3), sampler=aa.RandomSampler(seed))
    seen = 0

    async def objective(trial: aa.Trial) -> None:
        nonlocal seen
        if trial.number % 100 == 0:  # (the count walks the frozen objects)
            seen = max(seen, frozen_now())
        if trial.number == trials - 1:
            study.stop()
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    async with study:
        # max_trials far above the trials run, so that no paused trial is hopeless yet (the run
        # would let it go at once: tests/runner/test_let_go.py) and they all wait, frozen.
        await study.run(objective, max_trials=100 * trials, concurrency=8, freeze_gc=freeze_gc)
        return [(t.state, t.params, t.rung_values) for t in study.trials], seen


@pytest.mark.asyncio
async def test_the_run_freezes_as_paused_trials_grow_and_unfreezes_at_its_end() -> None:
    frozen, seen = await _run(True)
    assert seen > 0  # frozen while trials still started
    assert frozen_now() <= 0
    plain, seen_plain = await _run(False)
    assert seen_plain == 0
    assert frozen == plain  # the same study, trial by trial
    paused_at_end = sum(1 for state, _, _ in frozen if state is aa.TrialState.STOPPED)
    assert paused_at_end > _gcfreeze.FIRST  # (the test is about a run that reaches the threshold)


@pytest.mark.asyncio
async def test_a_process_that_froze_objects_of_its_own_is_warned_and_nothing_more_is_frozen() -> None:
    mine = [[object()] for _ in range(100)]
    gc.freeze()
    before = frozen_now()
    with pytest.warns(RuntimeWarning, match="freezes nothing in this process"):
        _, seen = await _run(True)
    # Nothing of the run's frozen (frozen objects that died left), the process's own left frozen.
    assert 0 < seen <= before
    assert 0 < frozen_now() <= before
    assert mine


@pytest.mark.asyncio
async def test_the_first_of_two_runs_to_end_leaves_the_other_frozen() -> None:
    gate = asyncio.Event()
    after_first: list[int] = []

    async def first() -> None:
        await _run(True, trials=2_000, seed=1)
        after_first.append(frozen_now())
        gate.set()

    async def second() -> None:
        study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 27, 3), sampler=aa.RandomSampler(2))

        async def objective(trial: aa.Trial) -> None:
            if trial.number >= 3_000:  # by then, more than 1,000 trials of this run wait, paused
                await gate.wait()
            async for step in trial.steps():
                await trial.report(loss(trial.params, step))

        async with study:
            await study.run(objective, max_trials=3_100, concurrency=8, freeze_gc=True)

    await asyncio.gather(first(), second())
    assert after_first[0] > 0  # the second run still had its paused trials frozen
    assert frozen_now() <= 0 and _gcfreeze._active == 0


@pytest.mark.asyncio
async def test_a_cancelled_run_unfreezes() -> None:
    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 27, 3), sampler=aa.RandomSampler(0))
    frozen = asyncio.Event()

    async def objective(trial: aa.Trial) -> None:
        if trial.number >= 2_000:
            frozen.set()
            await asyncio.Event().wait()  # until cancelled
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    async with study:
        run = asyncio.create_task(study.run(objective, concurrency=8, freeze_gc=True))
        await frozen.wait()
        assert frozen_now() > 0
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert frozen_now() <= 0 and _gcfreeze._active == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["yes", 1, None])
async def test_freeze_gc_is_a_bool(bad: object) -> None:
    async with await aa.create_study(space=SPACE) as study:
        with pytest.raises(aa.ConfigError, match=f"freeze_gc must be True or False, got {bad!r}"):
            await study.run(lambda trial: None, max_trials=1, freeze_gc=bad)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.filterwarnings("error")
async def test_the_warning_as_an_error_leaves_no_run_counted() -> None:
    gc.freeze()
    with pytest.raises(RuntimeWarning, match="freezes nothing"):
        await _run(True, trials=10)
    assert _gcfreeze._active == 0
    gc.unfreeze()
    _, seen = await _run(True)  # the next run freezes, and unfreezes at its end
    assert seen > 0 and frozen_now() <= 0
