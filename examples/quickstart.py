"""Tune a toy "training job" with ASHA: the README's example, runnable as it stands.

python examples/quickstart.py [--trials N]
"""

from __future__ import annotations

import argparse
import asyncio
import math

import anyio

import aio_ashb


async def train_one_epoch(lr: float, width: int, epoch: int) -> float:
    """Stands in for real work: a remote training step that takes a little time."""
    await anyio.sleep(0.001)
    return (math.log10(lr) + 2.5) ** 2 + abs(width - 96) / 200 + 1 / math.sqrt(epoch)


async def objective(trial: aio_ashb.Trial) -> None:
    lr, width = trial.params["lr"], trial.params["width"]
    async for epoch in trial.steps():  # suspends while paused at a rung, ends when done
        loss = await train_one_epoch(lr, width, epoch)
        await trial.report(loss)


async def main(trials: int, db: str) -> None:
    study = await aio_ashb.create_study(
        space={
            "lr": aio_ashb.Float(1e-5, 1e-1, log=True),
            "width": aio_ashb.Int(16, 256, log=True),
            "activation": aio_ashb.Categorical(["relu", "gelu"]),
            "batch_size": 64,  # a constant
        },
        direction="minimize",
        scheduler=aio_ashb.ASHA(min_resource=1, max_resource=27, reduction_factor=3),
        sampler=aio_ashb.TPESampler(seed=0),
        storage=f"sqlite:///{db}",
        name="quickstart",
        load_if_exists=True,  # run it again with more --trials and it continues
    )
    async with study:
        await study.run(objective, max_trials=trials, concurrency=16)
        best = study.best_trial
        assert best is not None
        print(f"best trial {best.number}: loss {best.value:.4f} at {best.resource} epochs, {best.params}")
        print("trials by state:", {s.value: n for s, n in study.counts.items() if n})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--db", default="runs.db", help="SQLite file (default ./runs.db)")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.db))
