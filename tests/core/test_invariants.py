"""Scheduler invariants under random schedules (seeded, many of them)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aio_ashb import ASHA, Float, RandomSampler, SearchSpace
from aio_ashb._core import Core, Decision, Direction, Reported, TrialEnded, TrialPromoted, TrialState

SPACE = SearchSpace({"x": Float(0.0, 1.0)})


@pytest.mark.parametrize("seed", range(40))
def test_promotions_take_top_fraction_once_and_max_resource_completes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    eta = int(rng.choice([2, 3, 4]))
    brackets = int(rng.integers(1, 4))
    mode = "promotion" if seed % 4 else "stopping"
    direction = Direction.MAXIMIZE if seed % 3 == 0 else Direction.MINIMIZE
    sched = ASHA(1, eta**3, eta, brackets=brackets, mode=mode)  # type: ignore[arg-type]
    core = Core(SPACE, sched, RandomSampler(seed), direction)
    workers = int(rng.integers(1, 9))
    running: list[int] = []
    promoted_from: set[tuple[int, int]] = set()
    max_trials = int(rng.integers(20, 150))
    for _ in range(20000):
        while len(running) < workers:
            job = core.next_job(can_start=core.n_trials < max_trials)
            if job is None:
                break
            if isinstance(job, TrialPromoted):
                t = core.frozen(job.number)
                k = job.rung - 1
                members = core.rung_members(t.bracket, k)
                # In the top floor(|rung k| / eta) at this very moment, and only once.
                assert members.index(job.number) < len(members) // eta
                assert (job.number, k) not in promoted_from
                promoted_from.add((job.number, k))
            running.append(job.number)
        if not running:
            break
        n = running[int(rng.integers(len(running)))]
        if rng.random() < 0.01:
            core.apply(TrialEnded(n, TrialState.FAILED, "boom"))
            running.remove(n)
            continue
        step = core.step_of(n) + int(rng.choice([1, 1, 1, 2, 5]))
        value = float(rng.choice([rng.random(), rng.random(), 0.5, math.nan]))
        d = core.apply(Reported(n, step, value))
        if d is not Decision.CONTINUE:
            running.remove(n)
    assert not running and core.is_done()
    for t in core.trials():
        if t.step >= sched.max_resource and t.state is not TrialState.FAILED:
            assert t.state is TrialState.COMPLETE
        if t.state is TrialState.COMPLETE:
            assert t.resource == sched.max_resource
    assert core.n_trials == max_trials
