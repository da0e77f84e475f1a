"""Scheduler decisions per second, block by block, and end-to-end results per second.

    python bench/core.py                # 100,000 trials through the core, then study.run
    python bench/core.py --trials 20000 --e2e-trials 2000

Part 1 drives ``Core`` directly with the common workload (shared/BENCHMARKS.md section 1):
8 trials active, every trial reports every step 1..81 until a decision stops or pauses it.
A decision is one report answered (``Core.apply(Reported)``); the ``next_job`` calls that
refill slots are counted as time but not as decisions. Timing covers the whole driver loop,
loss computation and event construction included, so the figures understate the core alone;
the driver itself is kept lean (see ``core_blocks``).

Part 2 runs ``Study.run`` with a no-op async objective (it only reports) at concurrency 8 on
MemoryStorage and, when optuna is installed, Optuna's optimize with the same loss and a
SuccessiveHalvingPruner in memory, in the same process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/core.py` works

import aio_ashb as aa
from aio_ashb._core import Core, Decision, Reported, TrialCreated
from bench._workload import ETA, MAX_R, MIN_R, SPACE, curve_terms, machine, optuna_run

Mode = Literal["promotion", "stopping"]
MODES: tuple[Mode, ...] = ("promotion", "stopping")


def core_blocks(n_trials: int, mode: Mode, block: int = 1000) -> tuple[list[tuple[int, float]], int, float]:
    """Return per-block (decisions, seconds), total decisions and total seconds.

    The driver is kept lean so that it measures the core, not itself: it keeps each trial's
    loss terms and last step beside the trial (a paused trial's are parked until its promotion)
    instead of asking the core for a snapshot (``frozen``) or the step; it reads the clock once
    per iteration, and each iteration's whole time (refilling slots, the loss, building the
    ``Reported`` event, ``apply``) goes to the block of the trial that reported. A paused
    trial's entry is parked as a tuple, which the collector stops tracking: parked as lists,
    the driver's 60,000 entries were most of what the collector walked (5 full collections,
    about 200 ms, a sixth of the run), a cost of the driver rather than of the core. The
    garbage of an earlier run is collected before the clock starts.
    """
    gc.collect()
    core = Core(aa.SearchSpace(SPACE), aa.ASHA(MIN_R, MAX_R, ETA, mode=mode), aa.RandomSampler(0))
    blocks = [[0, 0.0] for _ in range((n_trials + block - 1) // block)]
    running: list[list[Any]] = []  # [number, step, f, g]
    parked: dict[int, tuple[int, int, float, float]] = {}  # paused trials' entries, by number
    perf = time.perf_counter
    sqrt = math.sqrt
    next_job, apply = core.next_job, core.apply
    CONTINUE, PAUSE = Decision.CONTINUE, Decision.PAUSE
    created = 0
    i = 0
    t_start = t_prev = perf()
    while True:
        while len(running) < 8:
            job = next_job(can_start=created < n_trials)
            if job is None:
                break
            if type(job) is TrialCreated:
                created += 1
                f, g = curve_terms(job.params)
                running.append([job.number, 0, f, g])
            else:  # promoted (this workload interrupts nothing, so nothing resumes)
                running.append([*parked.pop(job.number)])
        if not running:
            break
        i = (i + 1) % len(running)
        entry = running[i]
        number, step, f, g = entry
        step += 1
        decision = apply(Reported(number, step, f + g / sqrt(step)))
        entry[1] = step
        if decision is not CONTINUE:
            running.pop(i)
            if decision is PAUSE:
                parked[number] = (number, step, f, g)
        b = blocks[number // block]
        b[0] += 1
        t = perf()
        b[1] += t - t_prev
        t_prev = t
    return [(int(d), float(s)) for d, s in blocks], sum(int(d) for d, _ in blocks), perf() - t_start


def core_parts(n_trials: int, mode: Mode) -> dict[str, tuple[int, float]]:
    """Where a decision's time goes: the common workload again, every call timed on its own.

    Returns, per part, (calls, median µs per call), less the median cost of reading the clock
    twice (medians: a call that the OS preempted would swamp a mean on a shared machine). The
    parts are the ``Reported`` event's construction, ``apply(Reported)`` by its decision (a
    CONTINUE below a milestone, or the decision at one), ``next_job`` by what it did, and, on
    their own, the pieces of a new trial: sampling, the generator state, the event.
    """
    import numpy as np

    core = Core(aa.SearchSpace(SPACE), aa.ASHA(MIN_R, MAX_R, ETA, mode=mode), aa.RandomSampler(0))
    ns = time.perf_counter_ns
    overhead = statistics.median(-ns() + ns() for _ in range(10_000))
    parts: dict[str, list[int]] = {}

    def add(name: str, dt: int) -> None:
        parts.setdefault(name, []).append(dt)

    running: list[list[Any]] = []
    parked: dict[int, tuple[int, int, float, float]] = {}  # as in core_blocks
    i = 0
    while True:
        while len(running) < 8:
            can_start = core.n_trials < n_trials
            t0 = ns()
            job = core.next_job(can_start=can_start)
            dt = ns() - t0
            if job is None:
                add("next_job -> None", dt)
                break
            add(f"next_job -> {type(job).__name__}", dt)
            if type(job) is TrialCreated:
                f, g = curve_terms(job.params)
                running.append([job.number, 0, f, g])
            else:
                running.append([*parked.pop(job.number)])
        if not running:
            break
        i = (i + 1) % len(running)
        entry = running[i]
        number, step, f, g = entry
        step += 1
        value = f + g / math.sqrt(step)
        t0 = ns()
        ev = Reported(number, step, value)
        t1 = ns()
        decision = core.apply(ev)
        t2 = ns()
        add("Reported(...)", t1 - t0)
        assert decision is not None  # a report always gets one
        at_milestone = step in core.scheduler.milestones
        add(f"apply(Reported) -> {decision.name}{' at a milestone' if at_milestone else ''}", t2 - t1)
        entry[1] = step
        if decision is not Decision.CONTINUE:
            running.pop(i)
            if decision is Decision.PAUSE:
                parked[number] = (number, step, f, g)
    space, rng = core.space, np.random.default_rng(0)
    pieces: list[tuple[str, Callable[[], object]]] = [
        ("  new trial: space.sample", lambda: space.sample(rng)),
        ("  new trial: rng.bit_generator.state", lambda: rng.bit_generator.state),
        ("  new trial: TrialCreated(...)", lambda: TrialCreated(0, 0, {}, {}, 0.0)),
    ]
    for name, fn in pieces:
        for _ in range(20_000):
            t0 = ns()
            fn()
            add(name, ns() - t0)
    return {name: (len(t), (statistics.median(t) - overhead) / 1000) for name, t in sorted(parts.items())}


async def e2e_aio(n_trials: int, mode: Mode, freeze_gc: bool = False) -> tuple[int, float]:
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(MIN_R, MAX_R, ETA, mode=mode),
        sampler=aa.RandomSampler(0),
    )
    reports = 0

    async def objective(trial: aa.Trial) -> None:
        nonlocal reports
        f, g = curve_terms(trial.params)
        async for step in trial.steps():
            await trial.report(f + g / math.sqrt(step))
            reports += 1

    t0 = time.perf_counter()
    await study.run(objective, max_trials=n_trials, concurrency=8, freeze_gc=freeze_gc)
    return reports, time.perf_counter() - t0


_SPLIT = (  # (path fragment, part), first match wins
    ("aio_ashb/_core/", "core: decisions, sampling, building events"),
    ("aio_ashb/_runner.py", "runner (_runner.py)"),
    ("aio_ashb/_trial.py", "trial handle (_trial.py, _objective.py)"),
    ("aio_ashb/_objective.py", "trial handle (_trial.py, _objective.py)"),
    ("aio_ashb/_journal.py", "journal and storage"),
    ("aio_ashb/storage/", "journal and storage"),
    ("bench/", "the objective (benchmark code)"),
    ("asyncio", "asyncio: tasks, futures, loop turns"),
    ("_weakrefset", "asyncio: tasks, futures, loop turns"),
)


def e2e_split(n_trials: int, mode: Mode) -> tuple[float, dict[str, float]]:
    """Where a result's time goes end to end: µs per result measured without the profiler, and
    cProfile's own time per part as shares of the profiled run (the profiler inflates small
    calls: read the shares, not the digits)."""
    import cProfile
    import pstats

    reports, seconds = asyncio.run(e2e_aio(n_trials, mode))
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(e2e_aio(n_trials, mode))
    profile.disable()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    shares: dict[str, float] = {}
    for (path, _, _), row in stats.items():
        part = next((name for frag, name in _SPLIT if frag in path), "builtins and the rest")
        shares[part] = shares.get(part, 0.0) + row[2]
    total = sum(shares.values())
    return seconds / reports * 1e6, {k: v / total for k, v in sorted(shares.items(), key=lambda x: -x[1])}


async def e2e_long_trial(steps: int) -> tuple[int, float]:
    """One trial reporting ``steps`` times: the cost of a report without any per-trial cost."""
    study = await aa.create_study(
        space={"x": aa.Float(0.0, 1.0)},
        scheduler=aa.ASHA(1, steps, ETA, mode="stopping"),
        sampler=aa.RandomSampler(0),
    )

    async def objective(trial: aa.Trial) -> None:
        async for _step in trial.steps():
            await trial.report(0.5)

    t0 = time.perf_counter()
    await study.run(objective, max_trials=1)
    return steps, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trials", type=int, default=100_000, help="trials through the core (default 100000)"
    )
    parser.add_argument("--e2e-trials", type=int, default=3000, help="trials for study.run (default 3000)")
    parser.add_argument("--optuna-trials", type=int, default=1000, help="trials for Optuna (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every measurement (median)")
    parser.add_argument("--all-blocks", action="store_true", help="print every block of 1000 trials")
    parser.add_argument(
        "--parts", action="store_true", help="only print where a decision's time goes (core_parts)"
    )
    parser.add_argument(
        "--split", action="store_true", help="only print where a result's time goes end to end"
    )
    args = parser.parse_args()
    print(f"# {machine()}\n")

    if args.split:
        print(f"## Where a result's time goes, study.run end to end, {args.e2e_trials:,} trials\n")
        for mode in MODES:
            us, shares = e2e_split(args.e2e_trials, mode)
            print(f"### mode={mode}: {us:.1f} µs per result\n\n| part | share | µs per result |")
            print("| --- | --- | --- |")
            for name, share in shares.items():
                print(f"| {name} | {share:.0%} | {us * share:.1f} |")
            print()
        return

    if args.parts:
        print(f"## Where a decision's time goes, {args.trials:,} trials (median of {args.repeats} runs)\n")
        for mode in MODES:
            part_runs = [core_parts(args.trials, mode) for _ in range(args.repeats)]
            print(f"### mode={mode}\n\n| part | calls | µs per call |\n| --- | --- | --- |")
            for name, (calls, _) in part_runs[0].items():
                us = statistics.median(r[name][1] for r in part_runs)
                print(f"| {name} | {calls:,} | {us:.2f} |")
            print()
        return

    print(f"## 1. Core decisions per second, {args.trials:,} trials, 8 active, rungs 1-3-9-27-81\n")
    for mode in MODES:
        repeats = [core_blocks(args.trials, mode) for _ in range(args.repeats)]
        total = repeats[0][1]
        n = len(repeats[0][0])
        # Per block, the median rate over the repeats (this machine class is noisy).
        rates = [statistics.median(r[0][k][0] / r[0][k][1] for r in repeats) for k in range(n)]
        # A block's cost per trial: its trials' decisions (and refills) over its 1,000 trials.
        per_trial = [statistics.median(r[0][k][1] for r in repeats) / 1000 * 1e6 for k in range(n)]
        whole = statistics.median(r[1] / r[2] for r in repeats)
        print(f"### mode={mode} (median of {args.repeats} runs)\n")
        print("| trials | decisions | decisions/s | µs/decision | µs/trial |")
        print("| --- | --- | --- | --- | --- |")
        show = range(n) if args.all_blocks else sorted({0, 1, 4, 9, n // 2 - 1, n - 1} & set(range(n)))
        for k in show:
            d = repeats[0][0][k][0]
            print(
                f"| {k * 1000:,}-{(k + 1) * 1000:,} | {d:,} | {rates[k]:,.0f} | {1e6 / rates[k]:.2f} | "
                f"{per_trial[k]:.1f} |"
            )
        print(f"| whole run | {total:,} | {whole:,.0f} | {1e6 / whole:.2f} | |")
        print(f"\nlast block / first block: {rates[-1] / rates[0]:.2f} in decisions/s, ", end="")
        print(f"{per_trial[0] / per_trial[-1]:.2f} in trials/s (later trials make fewer decisions)\n")

    print("## 2. End to end, study.run, no-op async objective, concurrency 8, MemoryStorage\n")
    print("| run | trials | results | results/s (median of repeats) |")
    print("| --- | --- | --- | --- |")
    e2e: dict[str, float] = {}
    for mode in MODES:
        runs = [asyncio.run(e2e_aio(args.e2e_trials, mode)) for _ in range(args.repeats)]
        rate = statistics.median(r / s for r, s in runs)
        e2e[mode] = rate
        print(f"| aio_ashb study.run, ASHA {mode} | {args.e2e_trials:,} | {runs[0][0]:,} | {rate:,.0f} |")
    long = [asyncio.run(e2e_long_trial(200_000)) for _ in range(args.repeats)]
    long_rate = statistics.median(r / s for r, s in long)
    print(f"| aio_ashb study.run, one trial reporting 200,000 steps | 1 | 200,000 | {long_rate:,.0f} |")
    opt = optuna_run(args.optuna_trials)
    if opt is None:
        print(
            "| Optuna optimize + SuccessiveHalvingPruner, in-memory | — | — | not installed "
            '(`pip install -e ".[bench]"`) |'
        )
    else:
        orate = opt[0] / opt[1]
        print(
            f"| Optuna optimize + SuccessiveHalvingPruner, in-memory | {args.optuna_trials:,} | "
            f"{opt[0]:,} | {orate:,.0f} |"
        )
        for name, rate in e2e.items():
            print(f"\naio_ashb ({name}) / Optuna: {rate / orate:.1f}x")


if __name__ == "__main__":
    main()
