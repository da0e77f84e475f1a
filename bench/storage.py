"""End-to-end results per second of ``study.run`` by storage, next to Optuna's storages.

    python bench/storage.py                 # concurrency 8 and 64; Optuna if installed
    python bench/storage.py --trials 1000

The workload of shared/BENCHMARKS.md (rungs 1-3-9-27-81, the cheap deterministic loss reported at
every step) with a no-op async objective that only reports, in ASHA stopping mode (trials report
until the scheduler stops them, the mode Optuna's pruners implement). A result is one report.
SQLite runs use a fresh file in a temporary directory; "durable" means report() returns once its
event is committed (WAL, synchronous=NORMAL), "buffered" that a background task commits.
Optuna runs `optimize` with a SuccessiveHalvingPruner on the same loss, in memory and on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/storage.py` works

import aio_ashb as aa
from bench._workload import ETA, MAX_R, MIN_R, SPACE, curve_terms, machine, optuna_run

StorageFactory = Callable[[Path], aa.Storage | str]


async def aio_run(make_storage: StorageFactory, durability: str, trials: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        study = await aa.create_study(
            space=SPACE,
            storage=make_storage(Path(tmp)),
            scheduler=aa.ASHA(MIN_R, MAX_R, ETA, mode="stopping"),
            sampler=aa.RandomSampler(0),
            durability=durability,  # type: ignore[arg-type]
        )
        reports = 0

        async def objective(trial: aa.Trial) -> None:
            nonlocal reports
            f, g = curve_terms(trial.params)
            async for step in trial.steps():
                await trial.report(f + g / math.sqrt(step))
                reports += 1

        async with study:
            t0 = time.perf_counter()
            await study.run(objective, max_trials=trials, concurrency=concurrency)
            elapsed = time.perf_counter() - t0
        return reports / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=2000, help="trials per aio_ashb run (default 2000)")
    parser.add_argument("--optuna-trials", type=int, default=300, help="trials per Optuna run (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median)")
    args = parser.parse_args()
    print(f"# {machine()}, SQLite {__import__('sqlite3').sqlite_version}\n")
    print("| storage | concurrency | results/s (median) | vs Optuna SQLite |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        on_sqlite = optuna_run(args.optuna_trials, f"sqlite:///{tmp}/optuna.db")
    in_memory = optuna_run(args.optuna_trials)
    optuna_sqlite = on_sqlite[0] / on_sqlite[1] if on_sqlite else None
    optuna_memory = in_memory[0] / in_memory[1] if in_memory else None
    kinds: list[tuple[str, StorageFactory, str]] = [
        ("aio_ashb MemoryStorage", lambda _tmp: aa.MemoryStorage(), "durable"),
        ("aio_ashb SQLite, durable", lambda tmp: f"sqlite:///{tmp / 'bench.db'}", "durable"),
        ("aio_ashb SQLite, buffered", lambda tmp: f"sqlite:///{tmp / 'bench.db'}", "buffered"),
    ]
    for concurrency in (8, 64):
        for label, make, durability in kinds:
            rate = statistics.median(
                asyncio.run(aio_run(make, durability, args.trials, concurrency)) for _ in range(args.repeats)
            )
            ratio = f"{rate / optuna_sqlite:,.0f}x" if optuna_sqlite else "-"
            print(f"| {label} | {concurrency} | {rate:,.0f} | {ratio} |")
    if optuna_sqlite is None or optuna_memory is None:
        print('| Optuna | 1 | not installed (`pip install -e ".[bench]"`) | |')
    else:
        times = optuna_memory / optuna_sqlite
        print(f"| Optuna optimize, in-memory | 1 | {optuna_memory:,.0f} | {times:,.1f}x |")
        print(f"| Optuna optimize, SQLite | 1 | {optuna_sqlite:,.0f} | 1x |")


if __name__ == "__main__":
    main()
