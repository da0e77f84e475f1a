"""Draws the figures of the docs from a real (small, synthetic, seeded) study.

    python docs/figures/make_figures.py      # writes docs/figures/asha.png

The study: ASHA(1, 27, 3) with promotion, 120 trials, 8 at once, learning curves
``floor + slope / sqrt(epoch)`` with noise, each epoch a 10 ms sleep.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import anyio

import aio_ashb
from aio_ashb import plots


async def main() -> None:
    study = await aio_ashb.create_study(
        space={"lr": aio_ashb.Float(1e-4, 1.0, log=True), "x": aio_ashb.Float(0.0, 1.0)},
        scheduler=aio_ashb.ASHA(1, 27, 3),
        sampler=aio_ashb.RandomSampler(seed=3),
    )

    async def objective(trial: aio_ashb.Trial) -> None:
        p = trial.params
        noise = random.Random(trial.number)
        floor = (math.log10(p["lr"]) + 2) ** 2 / 8 + (p["x"] - 0.3) ** 2
        async for epoch in trial.steps():
            await anyio.sleep(0.01)
            await trial.report(floor + (1 + p["x"]) / math.sqrt(epoch) + noise.gauss(0, 0.02))

    await study.run(objective, max_trials=120, concurrency=8)
    out = plots.draw(await plots.collect(study), Path(__file__).parent / "asha.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
