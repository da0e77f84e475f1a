"""I/O-bound tuning at scale: thousands of trials in flight, each step a simulated remote call.

    python bench/scale.py                                  # 1,000 and 10,000 trials, memory and SQLite
    python bench/scale.py --trials 1000 --storage memory
    python bench/scale.py --trials 1000 --rounds 5 --sampler tpe --storage memory --latency 0.05-0.2
    python bench/scale.py --freeze-gc                      # run(freeze_gc=True)

Every trial runs at once (concurrency = trials; with ``--rounds k``, k times as many trials in
all, so new trials are proposed while the first ones run), ASHA(1, 9, 3) with promotion,
``--sampler random`` (default) or ``tpe``; each step awaits
a remote latency spread uniformly over 50-200 ms (a hash of trial and step, so
every run sees the same latencies). Measured in a fresh process per row:

- wall: the real run; ideal: the same study on a virtual clock (aio_ashb.simulation), where
  the runner costs no time, so its duration is the critical path of the same schedule;
- loop lag: how late a 10 ms ticker wakes up while the study runs (p50, p99, max);
- peak RSS of the process, and (peak - RSS before the study) per trial.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scale.py` works

import anyio

import aio_ashb as aa
from aio_ashb.simulation import run_virtual
from bench._workload import SPACE, curve_terms, machine

SCHED = aa.ASHA(1, 9, 3)


def latency(number: int, step: int, low: float, high: float) -> float:
    """A latency in [low, high) fixed by (trial, step), cheap to compute: the benchmark's own
    cost must not count as the runner's (seeding a ``random.Random`` per step cost 20 µs)."""
    x = (number * 1_000 + step) * 0x9E3779B97F4A7C15 & _MASK  # splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return low + (high - low) * ((x ^ (x >> 31)) >> 11) / 2**53


_MASK = 2**64 - 1


async def study_run(
    trials: int,
    storage: str | None,
    lags: list[float] | None,
    low: float,
    high: float,
    rounds: int = 1,
    sampler: str = "random",
    freeze_gc: bool = False,
) -> float:
    chosen = aa.TPESampler(0) if sampler == "tpe" else aa.RandomSampler(0)
    study = await aa.create_study(space=SPACE, scheduler=SCHED, sampler=chosen, storage=storage)

    async def objective(trial: aa.Trial) -> None:
        f, g = curve_terms(trial.params)
        async for step in trial.steps():
            await anyio.sleep(latency(trial.number, step, low, high))  # the remote call
            await trial.report(f + g / step**0.5)

    async def ticker() -> None:
        assert lags is not None
        while True:
            t0 = anyio.current_time()
            await anyio.sleep(0.01)
            lags.append(anyio.current_time() - t0 - 0.01)

    async with study, anyio.create_task_group() as tg:
        if lags is not None:
            tg.start_soon(ticker)
        t0 = anyio.current_time()
        await study.run(objective, max_trials=trials * rounds, concurrency=trials, freeze_gc=freeze_gc)
        elapsed = anyio.current_time() - t0
        tg.cancel_scope.cancel()
    return elapsed


def one(
    trials: int, storage_kind: str, low: float, high: float, rounds: int, sampler: str, freeze_gc: bool
) -> dict[str, Any]:
    """One row, in this (fresh) process: the real run first (for RSS), then the ideal."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = None if storage_kind == "memory" else f"sqlite:///{tmp}/scale.db"
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        lags: list[float] = []
        t0 = time.perf_counter()
        asyncio.run(study_run(trials, storage, lags, low, high, rounds, sampler, freeze_gc))
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ideal = run_virtual(lambda: study_run(trials, None, None, low, high, rounds, sampler))
    lags.sort()
    return {
        "trials": trials,
        "storage": storage_kind,
        "latency": f"{low * 1000:g}-{high * 1000:g} ms",
        "ideal": ideal,
        "wall": wall,
        "lag_p50": statistics.median(lags) * 1000,
        "lag_p99": lags[int(0.99 * (len(lags) - 1))] * 1000,
        "lag_max": lags[-1] * 1000,
        "peak_mb": peak / 1024,
        "kb_per_trial": (peak - before) / (trials * rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--storage", nargs="+", choices=["memory", "sqlite"], default=["memory", "sqlite"])
    parser.add_argument(
        "--latency",
        nargs="+",
        default=["0.05-0.2", "0.5-2"],
        help="step latency ranges in seconds, LOW-HIGH (default: 0.05-0.2 and 0.5-2)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="trials in all = rounds x concurrency")
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    parser.add_argument("--freeze-gc", action="store_true", help="run(freeze_gc=True)")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        a = args.one
        print(
            json.dumps(
                one(int(a[0]), a[1], float(a[2]), float(a[3]), args.rounds, args.sampler, args.freeze_gc)
            )
        )
        return
    print(f"# {machine()}\n")
    frozen = ", run(freeze_gc=True)" if args.freeze_gc else ""
    print(
        f"ASHA(1, 9, 3) promotion, {args.sampler} sampler, concurrency = trials, {args.rounds} x as many "
        f"trials in all, each step awaits a random latency{frozen}\n"
    )
    print(
        "| trials | step latency | storage | ideal s | wall s | wall / ideal "
        "| loop lag p50 / p99 / max ms | peak RSS MB | RSS KB / trial |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for trials in args.trials:
        for span in args.latency:
            low, high = span.split("-")
            for kind in args.storage:
                cmd = [sys.executable, __file__, "--one", str(trials), kind, low, high]
                cmd += ["--rounds", str(args.rounds), "--sampler", args.sampler]
                cmd += ["--freeze-gc"] if args.freeze_gc else []
                r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                print(
                    f"| {trials:,} | {r['latency']} | {kind} | {r['ideal']:.2f} | {r['wall']:.2f} "
                    f"| {r['wall'] / r['ideal']:.3f} "
                    f"| {r['lag_p50']:.1f} / {r['lag_p99']:.1f} / {r['lag_max']:.1f} | {r['peak_mb']:.0f} "
                    f"| {r['kb_per_trial']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
