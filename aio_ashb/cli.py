"""The ``aio-ashb`` command (also ``python -m aio_ashb``)."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

import aio_ashb as aa

_OFFSETS = {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3}


def _curve(params: dict[str, Any], step: int) -> float:
    f = (math.log10(params["lr"]) + 2) ** 2 / 4 + (params["x"] - 0.3) ** 2 + _OFFSETS[params["c"]]
    g = 1 + params["x"] + 0.5 * abs(math.log10(params["lr"]) + 2)
    return float(f + g / math.sqrt(step))


async def _demo(trials: int, concurrency: int, seed: int, step_time: float, db: str) -> int:
    """A synthetic tuning job: each step "trains" for ``step_time`` seconds, like a remote call."""
    space = {
        "lr": aa.Float(1e-4, 1.0, log=True),
        "x": aa.Float(0.0, 1.0),
        "c": aa.Categorical(["a", "b", "c", "d"]),
    }
    study = await aa.create_study(
        space=space,
        scheduler=aa.ASHA(min_resource=1, max_resource=27, reduction_factor=3),
        sampler=aa.RandomSampler(seed),
        name="demo",
        storage=f"sqlite:///{db}",
        load_if_exists=True,  # re-running the demo resumes it
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(step_time)
            await trial.report(_curve(trial.params, step))

    t0 = time.perf_counter()

    def progress_line() -> str:
        counts = study.counts
        best = study.best_trial
        best_text = "-"
        if best is not None:
            best_text = f"{best.rung_values[best.resource]:.4f} (trial {best.number}, r={best.resource})"
        return (
            f"[{time.perf_counter() - t0:6.1f}s] started {len(study.trials)}/{trials}  "
            f"running {counts[aa.TrialState.RUNNING]}  paused {counts[aa.TrialState.PAUSED]}  "
            f"complete {counts[aa.TrialState.COMPLETE]}  rungs {[n for _, n in study.rungs[0]]}  "
            f"best {best_text}"
        )

    async def report_progress() -> None:
        while True:
            await anyio.sleep(1.0)
            print(progress_line(), flush=True)

    async with study:
        done = len(study.trials)
        print(
            f"aio_ashb demo: {trials} trials, concurrency {concurrency}, ASHA rungs 1-3-9-27, "
            f"state in {db}" + (f" (resuming: {done} trials already there)" if done else "")
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(report_progress)
            await study.run(objective, max_trials=trials, concurrency=concurrency)
            tg.cancel_scope.cancel()
        print(progress_line())
        print("\nLeaderboard (best at the highest rung):")
        top = sorted(
            (t for t in study.trials if t.resource > 0),
            key=lambda t: (-t.resource, t.rung_values[t.resource]),
        )[:5]
        print(f"{'trial':>5}  {'resource':>8}  {'loss':>8}  params")
        for t in top:
            params = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
            )
            print(f"{t.number:>5}  {t.resource:>8}  {t.rung_values[t.resource]:>8.4f}  {params}")
        counts = {s.value: n for s, n in study.counts.items() if n}
        print(f"\nstates: {counts}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aio-ashb", description="Asynchronous Successive Halving for asyncio."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small synthetic tuning job and print the leaderboard")
    demo.add_argument("--trials", type=_positive_int, default=300, help="number of trials (default 300)")
    demo.add_argument("--concurrency", type=_positive_int, default=16, help="trials at once (default 16)")
    demo.add_argument("--seed", type=int, default=1, help="sampler seed (default 1)")
    demo.add_argument(
        "--db", default="aio_ashb_demo.db", help="SQLite file for the study (default ./aio_ashb_demo.db)"
    )
    demo.add_argument(
        "--step-time",
        type=_non_negative_float,
        default=0.02,
        help="simulated seconds per training step (default 0.02)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args.trials, args.concurrency, args.seed, args.step_time, args.db))
    except aa.AioAshbError as exc:
        print(f"aio-ashb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aio-ashb: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
