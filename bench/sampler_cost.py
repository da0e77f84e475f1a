"""What a TPESampler proposal costs on the event loop, as a study grows.

    python bench/sampler_cost.py                 # 1,000, 10,000 and 100,000 finished trials
    python bench/sampler_cost.py --trials 1000 10000 --dims 3 7 20

For each size, a core with the LCBench-like 7-parameter space (or ``--dims`` floats) is filled
with that many trials taken to their decision points by ASHA (promotion, 1-3-9-27), 16 of them
in flight. Then, timing the core's ``next_job`` (the sampler's part of a new trial):

- the steady state: one result, then the next job, 400 new trials (median and mean: the mean
  includes the refits, every 1.5-3 % more results, and the scoring of each block of candidates,
  which later trials of the block share);
- a proposal that refits its model and scores its block (the worst single proposal);
- 128 new trials with no result in between (what ``run()`` does when it starts);

against the same for ``RandomSampler``. Targets (issue 12): a proposal <= 2 ms at 1,000 trials
and <= 10 ms at 10,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/...` works

import numpy as np

import aio_ashb as aa
from aio_ashb._core import Core, Decision, Reported, TrialCreated, TrialState
from bench.quality import LCBENCH_SPACE

LCBENCH_LIKE = aa.SearchSpace(LCBENCH_SPACE)  # the LCBench space of the quality benchmark


def filled(space: aa.SearchSpace, sampler: aa.Sampler, trials: int, in_flight: int) -> Core:
    """A core with ``trials`` trials, ``in_flight`` of them still running."""
    core = Core(space, aa.ASHA(1, 27, 3), sampler)
    rng = np.random.default_rng(0)
    running: list[int] = []
    while core.n_trials < trials or len(running) > in_flight:
        can_start = core.n_trials < trials
        while len(running) < in_flight + 1 and (job := core.next_job(can_start=can_start)) is not None:
            running.append(job.number)
        n = running.pop(int(rng.integers(len(running))))
        decision = core.apply(Reported(n, core.target_of(n), float(rng.random()), 0.0))
        if decision is Decision.CONTINUE:
            running.append(n)
    return core


def measure(space: aa.SearchSpace, sampler: aa.Sampler, trials: int) -> tuple[float, float, float, float]:
    """(ms per new trial in the steady state: median and mean, ms of a proposal that refits,
    ms for 128 new trials at once), each the core's ``next_job`` with the sampler in it."""
    core = filled(space, sampler, trials, in_flight=16)
    history = core.history
    refits = []
    for _ in range(5):
        if history is not None:
            history.cache.clear()
        t = time.perf_counter()
        if history is not None:
            sampler.propose(space, core.rng, history)  # type: ignore[attr-defined]
        else:
            sampler.sample(space, core.rng)
        refits.append(time.perf_counter() - t)
    # The steady state: a result, then the next job (a new trial, unless a promotion comes
    # first); the models refit as results come in, and blocks of candidates are shared.
    rng = np.random.default_rng(1)
    running = core.numbers_in(TrialState.RUNNING)
    steady: list[float] = []
    while len(steady) < 400:
        t = time.perf_counter()
        job = core.next_job()
        elapsed = time.perf_counter() - t
        assert job is not None
        if isinstance(job, TrialCreated):
            steady.append(elapsed)
        running.append(job.number)
        n = running.pop(int(rng.integers(len(running))))
        if core.apply(Reported(n, core.target_of(n), float(rng.random()), 0.0)) is Decision.CONTINUE:
            running.append(n)
    t = time.perf_counter()
    created = 0
    while created < 128:  # promotions may come first: they cost next to nothing
        job = core.next_job()
        assert job is not None
        created += isinstance(job, TrialCreated)
    batch = time.perf_counter() - t
    median, mean = statistics.median(steady), statistics.fmean(steady)
    return 1e3 * median, 1e3 * mean, 1e3 * statistics.median(refits), 1e3 * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="*", default=[], help="also spaces of this many floats")
    args = parser.parse_args()
    spaces = [("LCBench-like (7)", LCBENCH_LIKE)] + [
        (f"{d} floats", aa.SearchSpace({f"x{i}": aa.Float(0.0, 1.0) for i in range(d)})) for d in args.dims
    ]
    print(
        "| space | trials | sampler | new trial, steady state: median / mean (ms) "
        "| a proposal that refits (ms) | 128 at once (ms) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for label, space in spaces:
        for trials in args.trials:
            for sampler in (aa.TPESampler(0), aa.RandomSampler(0)):
                median, mean, refit, batch = measure(space, sampler, trials)
                name = type(sampler).__name__
                cells = f"{median:.3f} / {mean:.3f} | {refit:.3f} | {batch:.1f}"
                print(f"| {label} | {trials:,} | {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
