"""Is a study as fast at its 100,000th trial as at its 1,000th? End-to-end results per second
by study size, in both ASHA modes, with the process-wide garbage collector left as it is.

    python bench/flat.py                          # 1,000 / 10,000 / 100,000 trials, both modes
    python bench/flat.py --sizes 1000 20000 --repeats 1
    python bench/flat.py --memory                 # what one more paused trial costs
    python bench/flat.py --freeze-gc              # the same with run(freeze_gc=True)

The workload of bench/core.py part 2 (shared/BENCHMARKS.md: rungs 1-3-9-27-81, the cheap loss
reported at every step, a no-op async objective, concurrency 8, MemoryStorage). Every run is a
fresh process, so one size's heap does not weigh on the next. Columns:

- results/s, the median over the repeats, and its ratio to the smallest size's;
- GC: the share of the run spent in CPython's cyclic collector (timed with ``gc.callbacks``),
  and its longest single collection (a stall of the event loop);
- peak RSS of the process.

In promotion mode most trials wait, paused, until the study ends (then they are STOPPED): of a
study of 100,000 trials, 98,600 end paused. The run lets about 66,700 of them go before the
end (those it can never promote), and the collector scans the suspended rest over and over, so
that is the mode where flatness is hard.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/flat.py` works

import aio_ashb as aa
from bench._workload import ETA, MAX_R, MIN_R, SPACE, curve_terms, machine
from bench.core import Mode, e2e_aio


async def run(n_trials: int, mode: Mode, freeze_gc: bool = False) -> dict[str, Any]:
    """bench/core.py's end-to-end run, with the collector's pauses timed (``gc.callbacks``)."""
    collections: list[float] = []
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append(time.perf_counter() - started[0])

    gc.callbacks.append(timed)
    try:
        reports, seconds = await e2e_aio(n_trials, mode, freeze_gc)
    finally:
        gc.callbacks.remove(timed)
    return {
        "rate": reports / seconds,
        "gc_share": sum(collections) / seconds,
        "gc_max_ms": max(collections, default=0.0) * 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def paused_cost(first: int = 2_000, last: int = 12_000) -> dict[str, float]:
    """What one more paused trial costs: Python memory (tracemalloc) and GC-tracked objects,
    from the study's ``first``-th trial to its ``last``-th, in promotion mode at concurrency 8,
    where nearly every trial in between ends up paused (the difference in tasks alive says how
    many). Its core state and log entries count too: they are part of a trial's cost."""
    import tracemalloc

    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(MIN_R, MAX_R, ETA), sampler=aa.RandomSampler(0)
    )
    marks: dict[int, tuple[int, int, int]] = {}

    async def objective(trial: aa.Trial) -> None:
        f, g = curve_terms(trial.params)
        if trial.number in (first, last) and trial.number not in marks:
            gc.collect()
            marks[trial.number] = (
                tracemalloc.get_traced_memory()[0],
                len(gc.get_objects()),
                len(asyncio.all_tasks()),
            )
            if trial.number == last:
                study.stop()
        async for step in trial.steps():
            await trial.report(f + g / math.sqrt(step))

    tracemalloc.start()
    try:
        # max_trials far above the trials run: none of those in between is hopeless yet (a run
        # lets such trials go at once, docs/architecture.md), so nearly all of them wait.
        await study.run(objective, max_trials=100 * last, concurrency=8)
    finally:
        tracemalloc.stop()
    (m0, o0, t0), (m1, o1, t1) = marks[first], marks[last]
    paused = t1 - t0
    return {"paused": paused, "bytes": (m1 - m0) / paused, "objects": (o1 - o0) / paused}


def fresh(n_trials: int, mode: str, freeze_gc: bool) -> dict[str, Any]:
    """One run in a new interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(n_trials), mode, *(["--freeze-gc"] if freeze_gc else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="trials per study"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["promotion", "stopping"], default=["promotion", "stopping"]
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (median)")
    parser.add_argument("--one", nargs=2, metavar=("TRIALS", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="run(freeze_gc=True): paused trials frozen out of the collector",
    )
    parser.add_argument(
        "--memory", action="store_true", help="only print what one more paused trial costs in memory"
    )
    args = parser.parse_args()
    if args.memory:
        cost = asyncio.run(paused_cost())
        print(f"# {machine()}\n")
        print(
            f"One more paused trial (promotion mode, trials 2,000 to 12,000, {cost['paused']:,} "
            f"paused): {cost['bytes']:,.0f} bytes of Python memory (tracemalloc), "
            f"{cost['objects']:.1f} GC-tracked objects"
        )
        return
    if args.one:
        print(json.dumps(asyncio.run(run(int(args.one[0]), cast(Mode, args.one[1]), args.freeze_gc))))
        return
    print(f"# {machine()}\n")
    collector = "run(freeze_gc=True)" if args.freeze_gc else "default GC"
    print(f"End to end, study.run, no-op async objective, concurrency 8, MemoryStorage, {collector}\n")
    print("| mode | trials | results/s | vs smallest | GC share | longest collection ms | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes:
        first: float | None = None
        for n in args.sizes:
            runs = [fresh(n, mode, args.freeze_gc) for _ in range(args.repeats)]
            rate = statistics.median(r["rate"] for r in runs)
            first = first or rate
            print(
                f"| {mode} | {n:,} | {rate:,.0f} | {rate / first:.2f} | "
                f"{statistics.median(r['gc_share'] for r in runs):.0%} | "
                f"{statistics.median(r['gc_max_ms'] for r in runs):.0f} | "
                f"{statistics.median(r['rss_mb'] for r in runs):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
