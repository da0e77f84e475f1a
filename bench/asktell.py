"""ask/tell pairs per second, and simulate() against a plain reference of the paper's Algorithm 2.

    python bench/asktell.py                     # 20,000 pairs and an LCBench-sized study, 5 repeats
    python bench/asktell.py --pairs 5000 --repeats 3 --budget 50

Part 1: ``Study.ask()`` + ``Study.tell()`` on MemoryStorage, promotion-mode ASHA (rungs
1-3-9-27-81, eta = 3), no work between them: each job is told one value at its target. Beside it,
in the same process and alternating with it, a plain-Python ASHA written here (``RefASHA``: the
paper's ``get_job``, rungs as sorted lists) handing out the same jobs. The value told for a job
depends only on its trial number and target, so both make the same decisions: the benchmark
checks that the two job sequences are identical before timing anything.

Part 2: ``aio_ashb.simulation.simulate()`` (its default event engine; ``--engine runner``: the
real ``study.run`` on a virtual clock) on an
LCBench-sized study: W = 16 workers, 50 epochs (rungs 1-3-9-27-50), a time budget of
``--budget`` mean full trainings (B = budget x 50 x mean epoch time / W), LCBench-like curves
(error falling as a power of the epoch towards a per-configuration floor, epoch times spread
log-uniformly over 1-60 s). Beside it, ``reference_simulation``: Algorithm 2 (asynchronous
successive halving, promotion mode) with W workers on an event-driven clock (a heap of step
completions), plain Python, reporting every epoch as simulate does. A curve keyed by the
trial's number makes both runs the same schedule; the benchmark checks the traces agree.

Every figure is a median over ``--repeats`` runs, aio_ashb and reference alternating; a ratio
is the median of the repeats' ratios (each of two runs side by side: the machine's load changes
less between them than over the whole benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/asktell.py` works

import aio_ashb as aa
from aio_ashb.simulation import simulate
from bench._workload import ETA, MAX_R, MIN_R, SPACE, machine

W = 16
EPOCHS = 50  # LCBench: 50 epochs


# ------------------------------------------------------------------------------- reference
class RefASHA:
    """Promotion-mode ASHA (Li et al. 2020, Algorithm 2), one bracket, plain Python.

    Each rung keeps every recorded result as a sorted list of ``(value, number)`` and the
    results not yet promoted as another; ``get_job`` goes down from the top rung and promotes
    the best unpromoted result if it ranks in the top ``len(rung) // eta``, else starts a new
    trial. Ties break by trial number, NaN ranks worst: the core's order.
    """

    def __init__(self, milestones: list[int], eta: int, seed: int) -> None:
        self.milestones = milestones
        self.eta = eta
        self.rungs: list[list[tuple[float, int]]] = [[] for _ in milestones]
        self.waiting: list[list[tuple[float, int]]] = [[] for _ in milestones]
        self.params: list[dict[str, Any]] = []
        self.rung_of: list[int] = []  # the rung each trial runs to next
        self.rng = random.Random(seed)

    def sample(self) -> dict[str, Any]:
        r = self.rng.random
        return {"lr": 10 ** (-4 + 4 * r()), "x": r(), "c": "abcd"[int(r() * 4)]}

    def get_job(self, can_start: bool = True) -> tuple[int, int] | None:
        """(trial number, rung to run to), or None."""
        for k in range(len(self.rungs) - 2, -1, -1):
            waiting = self.waiting[k]
            if waiting:
                best = waiting[0]
                if bisect.bisect_left(self.rungs[k], best) < len(self.rungs[k]) // self.eta:
                    del waiting[0]
                    self.rung_of[best[1]] = k + 1
                    return best[1], k + 1
        if not can_start:
            return None
        number = len(self.params)
        self.params.append(self.sample())
        self.rung_of.append(0)
        return number, 0

    def record(self, number: int, value: float) -> bool:
        """Record ``value`` at the trial's current rung; True if it waits for promotion
        (False: it completed)."""
        k = self.rung_of[number]
        key = (value if not math.isnan(value) else math.inf, number)
        bisect.insort(self.rungs[k], key)
        if k == len(self.rungs) - 1:
            return False
        bisect.insort(self.waiting[k], key)
        return True


def told_value(number: int, target: int) -> float:
    """The value told for a job: a function of the trial number and the step only (so the
    study and the reference decide alike), shaped like the common workload's loss."""
    f = (number * 0.6180339887) % 1.0
    g = 1.0 + (number * 0.4142135623) % 1.0
    return f + g / math.sqrt(target)


# ------------------------------------------------------------------------------- part 1
async def aio_pairs(n: int, record: list[tuple[int, int]] | None = None) -> float:
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(MIN_R, MAX_R, ETA), sampler=aa.RandomSampler(0)
    )
    t0 = time.perf_counter()
    for _ in range(n):
        job = await study.ask()
        await study.tell(job, told_value(job.number, job.target))
        if record is not None:
            record.append((job.number, job.target))
    seconds = time.perf_counter() - t0
    await study.close()
    return seconds


def ref_pairs(n: int, record: list[tuple[int, int]] | None = None) -> float:
    asha = RefASHA(milestones(MIN_R, MAX_R, ETA), ETA, seed=0)
    ms = asha.milestones
    t0 = time.perf_counter()
    for _ in range(n):
        job = asha.get_job()
        assert job is not None
        number, k = job
        asha.record(number, told_value(number, ms[k]))
        if record is not None:
            record.append((number, ms[k]))
    return time.perf_counter() - t0


def milestones(min_r: int, max_r: int, eta: int) -> list[int]:
    ms = [min_r]
    while ms[-1] * eta < max_r:
        ms.append(ms[-1] * eta)
    return [*ms, max_r]


# ------------------------------------------------------------------------------- part 2
class LCBenchLike:
    """``curve(params, step, number) -> (error %, seconds)``, keyed by the trial's number: a
    final error of 10-60 %, a first-epoch error 10-50 points above it, a power-law decay, and
    an epoch time log-uniform over 1-60 s (with a small per-epoch jitter). Configurations are
    drawn in trial order from a seeded generator, so any run that numbers its trials the same
    way sees the same curves."""

    MEAN_EPOCH = 59 / math.log(60)  # mean of a log-uniform over [1, 60]

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.trials: list[tuple[float, float, float, float]] = []

    def __call__(self, params: dict[str, Any], step: int, number: int) -> tuple[float, float]:
        while number >= len(self.trials):
            r = self.rng.random
            self.trials.append((10 + 50 * r() ** 2, 10 + 40 * r(), 0.3 + 1.2 * r(), 60 ** r()))
        final, amp, alpha, secs = self.trials[number]
        return final + amp * step**-alpha, secs * (0.95 + 0.1 * ((step * 0.6180339887) % 1.0))


def reference_simulation(
    curve: Callable[[dict[str, Any], int, int], tuple[float, float]],
    workers: int,
    time_budget: float,
    seed: int,
) -> list[tuple[float, int, int, float]]:
    """Algorithm 2 with ``workers`` workers on a simulated clock; the (time, trial, step,
    value) of every report. A worker trains its job one epoch at a time (a heap of epoch
    completions); at its job's milestone it records the value and asks ``get_job`` again. After
    ``time_budget`` no job starts; running ones finish theirs."""
    asha = RefASHA(milestones(1, EPOCHS, ETA), ETA, seed)
    ms = asha.milestones
    step_of: list[int] = []
    reports: list[tuple[float, int, int, float]] = []
    heap: list[tuple[float, int, int, float]] = []  # (time, trial, step, value)

    def start(now: float) -> None:
        if now >= time_budget:  # the budget is spent: no new trial, no promotion
            return
        job = asha.get_job()
        assert job is not None
        number, _ = job
        if number == len(step_of):
            step_of.append(0)
        advance(now, number)

    def advance(now: float, number: int) -> None:
        step = step_of[number] + 1
        value, seconds = curve(asha.params[number], step, number)
        heapq.heappush(heap, (now + seconds, number, step, value))

    for _ in range(workers):
        start(0.0)
    while heap:
        now, number, step, value = heapq.heappop(heap)
        reports.append((now, number, step, value))
        step_of[number] = step
        if step < ms[asha.rung_of[number]]:
            advance(now, number)
            continue
        asha.record(number, value)
        start(now)
    return reports


def aio_simulation(
    curve: Callable[[dict[str, Any], int, int], tuple[float, float]],
    time_budget: float,
    seed: int,
    engine: str = "events",
) -> list[tuple[float, int, int, float]]:
    # (no engine argument for the default: the script also times trees from before it existed)
    kw: dict[str, Any] = {} if engine == "events" else {"engine": engine}
    result = simulate(
        curve,
        space=SPACE,
        scheduler=aa.ASHA(1, EPOCHS, ETA),
        workers=W,
        time_budget=time_budget,
        seed=seed,
        sampler=aa.RandomSampler(seed),  # the reference samples at random too
        **kw,
    )
    return result.reports


def same_schedule(a: list[tuple[float, int, int, float]], b: list[tuple[float, int, int, float]]) -> str:
    """'identical', or what differs (the traces as sets of (trial, step), and the times)."""
    sa, sb = {(n, s) for _, n, s, _ in a}, {(n, s) for _, n, s, _ in b}
    if sa != sb:
        return f"DIFFERENT: {len(sa ^ sb)} of {len(sa | sb)} (trial, step) reports in only one"
    ta = {(n, s): t for t, n, s, _ in a}
    worst = max(abs(t - ta[(n, s)]) for t, n, s, _ in b)
    return "identical" if worst < 1e-6 else f"same reports, times differ by up to {worst:.3g} s"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20_000, help="ask+tell pairs per run (default 20000)")
    parser.add_argument(
        "--budget", type=float, default=100, help="simulation budget in mean full trainings (default 100)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every measurement (median)")
    parser.add_argument("--engine", choices=["events", "runner"], default="events", help="simulate engine")
    args = parser.parse_args()
    print(f"# {machine()}\n")

    # Same decisions first (untimed), then the timings, alternating.
    jobs_aio: list[tuple[int, int]] = []
    jobs_ref: list[tuple[int, int]] = []
    asyncio.run(aio_pairs(min(args.pairs, 5000), jobs_aio))
    ref_pairs(min(args.pairs, 5000), jobs_ref)
    check1 = "identical" if jobs_aio == jobs_ref else "DIFFERENT"
    aio_s: list[float] = []
    ref_s: list[float] = []
    for _ in range(args.repeats):
        aio_s.append(asyncio.run(aio_pairs(args.pairs)))
        ref_s.append(ref_pairs(args.pairs))
    aio_rate = args.pairs / statistics.median(aio_s)
    ref_rate = args.pairs / statistics.median(ref_s)
    new = sum(1 for _, target in jobs_aio if target == MIN_R)
    print(f"## 1. ask+tell pairs per second, MemoryStorage, ASHA promotion {MIN_R}-{MAX_R} eta {ETA}\n")
    print(f"{args.pairs:,} pairs per run, median of {args.repeats}; job sequences: {check1}")
    print(f"({new:,} of the first {len(jobs_aio):,} jobs are new trials)\n")
    print("| implementation | pairs/s | µs/pair |")
    print("| --- | --- | --- |")
    print(f"| aio_ashb Study.ask + Study.tell | {aio_rate:,.0f} | {1e6 / aio_rate:.1f} |")
    print(f"| reference ASHA (plain Python, this script) | {ref_rate:,.0f} | {1e6 / ref_rate:.1f} |")
    ratio = statistics.median(a / r for a, r in zip(aio_s, ref_s, strict=True))
    print(f"\naio_ashb / reference cost: {ratio:.2f}x (median of the repeats' ratios)\n")

    budget_s = args.budget * EPOCHS * LCBenchLike.MEAN_EPOCH / W
    a = aio_simulation(LCBenchLike(0), budget_s, 0, args.engine)
    b = reference_simulation(LCBenchLike(0), W, budget_s, 0)
    check2 = same_schedule(a, b)
    sim_s: list[float] = []
    refsim_s: list[float] = []
    for _ in range(args.repeats):
        sim_s.append(timed(lambda: aio_simulation(LCBenchLike(0), budget_s, 0, args.engine)))
        refsim_s.append(timed(lambda: reference_simulation(LCBenchLike(0), W, budget_s, 0)))
    sim, ref = statistics.median(sim_s), statistics.median(refsim_s)
    trials = len({n for _, n, _, _ in a})
    print(
        f"## 2. simulate(engine={args.engine!r}), LCBench-sized: W = {W}, {EPOCHS} epochs, "
        f"budget {args.budget:g} full trainings\n"
    )
    print(
        f"{trials:,} trials, {len(a):,} reports, {max(t for t, *_ in a) / 3600:.1f} simulated hours; "
        f"schedules: {check2}; median of {args.repeats}\n"
    )
    print("| implementation | seconds | reports/s |")
    print("| --- | --- | --- |")
    print(f"| aio_ashb simulate() | {sim:.3f} | {len(a) / sim:,.0f} |")
    print(
        f"| reference Algorithm 2, event heap (plain Python, this script) | {ref:.3f} | {len(b) / ref:,.0f} |"
    )
    ratio = statistics.median(a / r for a, r in zip(sim_s, refsim_s, strict=True))
    print(f"\nsimulate() / reference: {ratio:.2f}x (median of the repeats' ratios)")


if __name__ == "__main__":
    main()
