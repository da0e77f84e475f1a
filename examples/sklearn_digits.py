"""Real training: an MLP on scikit-learn's digits, epoch by epoch, tuned with ASHA.

    pip install -e ".[examples]"
    python examples/sklearn_digits.py                     # 300 trials, 4 at once
    python examples/sklearn_digits.py --trials 40 --max-epochs 27 --plot digits.png

The objective is ``aio_ashb.demo.objective`` (the code ``aio-ashb demo`` runs; read
``aio_ashb/demo.py``): a plain function that calls ``partial_fit`` once per epoch and reports the
validation error, so it runs in worker threads while the event loop schedules. This script shows
the rest of a real set-up: a SQLite study that resumes, a bound on suspended trials, a trial
timeout, live progress, the best configuration retrained from its parameters, and a plot.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

import aio_ashb
from aio_ashb import demo, plots


async def main(trials: int, concurrency: int, max_epochs: int, db: str, plot: str | None) -> None:
    study = await aio_ashb.create_study(
        space=demo.SPACE,
        scheduler=demo.scheduler(max_epochs),
        sampler=aio_ashb.TPESampler(seed=1),
        storage=f"sqlite:///{db}",
        name="sklearn-digits",
        load_if_exists=True,  # run it again with more --trials and it continues
    )
    async with study:
        await study.run(
            demo.objective,
            max_trials=trials,
            concurrency=concurrency,
            # A paused trial keeps its thread asleep; beyond 32 of them the least promising are
            # released (if promoted later, they continue from their pickled model).
            max_paused=32,
            trial_timeout=120,  # seconds of training per trial, paused time excluded
            progress=True,
        )
        best = study.best_trial
        assert best is not None
        print(f"best trial {best.number}: validation error {best.value:.4f} after {best.resource} epochs")
        print(f"  {best.params}")

        # The best parameters, retrained once more from scratch with another seed.
        x_train, x_val, y_train, y_val = demo.load_digits_split()
        model = demo.build_model(best.params, seed=12345)
        for _ in range(best.resource):
            model.partial_fit(x_train, y_train, classes=np.arange(10))
        print(f"  retrained with another seed: validation error {1 - model.score(x_val, y_val):.4f}")
        if plot:
            plots.draw(await plots.collect(study), plot)
            print(f"  plots in {plot}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=81)
    parser.add_argument("--db", default="sklearn_digits.db")
    parser.add_argument("--plot", default=None, help="write the study's plots to this PNG")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.concurrency, args.max_epochs, args.db, args.plot))
