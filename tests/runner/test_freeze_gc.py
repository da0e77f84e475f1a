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


@pytest.fixture(autouse=True)
def _unfrozen_after() -> Iterator[None]:
    """Whatever a test does, the next one starts with nothing frozen."""
    assert gc.get_freeze_count() == 0
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
            seen = max(seen, gc.get_freeze_count())
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    async with study:
        await study.run(objective, max_trials=trials, concurrency=8, freeze_gc=freeze_gc)
        return [(t.state, t.params, t.rung_values) for t in study.trials], seen


@pytest.mark.asyncio
async def test_the_run_freezes_as_paused_trials_grow_and_unfreezes_at_its_end() -> None:
    frozen, seen = await _run(True)
    assert seen > 0  # frozen while trials still started
    assert gc.get_freeze_count() == 0
    plain, seen_plain = await _run(False)
    assert seen_plain == 0
    assert frozen == plain  # the same study, trial by trial
    paused_at_end = sum(1 for state, _, _ in frozen if state is aa.TrialState.STOPPED)
    assert paused_at_end > _gcfreeze.FIRST  # (the test is about a run that reaches the threshold)


@pytest.mark.asyncio
async def test_a_process_that_froze_objects_of_its_own_keeps_them_frozen() -> None:
    mine = [[object()] for _ in range(100)]
    gc.freeze()
    before = gc.get_freeze_count()
    _, seen = await _run(True)
    assert seen > before  # the run froze its own objects too
    assert gc.get_freeze_count() >= before  # and could not tell them apart: all stay frozen
    assert mine


@pytest.mark.asyncio
async def test_the_last_of_two_runs_unfreezes() -> None:
    (a, seen_a), (b, seen_b) = await asyncio.gather(_run(True, seed=1), _run(True, trials=3_000, seed=2))
    assert seen_a > 0 and seen_b > 0 and a != b
    assert gc.get_freeze_count() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["yes", 1, None])
async def test_freeze_gc_is_a_bool(bad: object) -> None:
    async with await aa.create_study(space=SPACE) as study:
        with pytest.raises(aa.ConfigError, match=f"freeze_gc must be True or False, got {bad!r}"):
            await study.run(lambda trial: None, max_trials=1, freeze_gc=bad)  # type: ignore[arg-type]
