"""A study run in a child process by the crash tests (not a test module).

    python -m tests.storage.crash_child DB ACK TRIALS STEP_SLEEP [--retry-lease]

It prints "ready" once the study is open, then after each report() returns it appends
"number step value" to ACK, so the parent knows exactly which reports were acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import anyio

import aio_ashb as aa
from tests.runner.conftest import SPACE, loss


async def main(db: str, ack: TextIO, trials: int, step_sleep: float, retry_lease: bool) -> None:
    study = await aa.create_study(
        space=SPACE,
        storage=f"sqlite:///{db}",
        name="crash",
        sampler=aa.RandomSampler(7),
        scheduler=aa.ASHA(1, 27, 3),
        load_if_exists=True,
        lease_ttl=0.6,
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(step_sleep)
            value = loss(trial.params, step)
            await trial.report(value, checkpoint=lambda: {"step": trial.step})
            ack.write(f"{trial.number} {step} {value!r}\n")
            ack.flush()

    print("ready", flush=True)
    async with study:
        while True:
            try:
                await study.run(objective, max_trials=trials, concurrency=4)
                break
            except aa.StudyLockedError as exc:
                if not retry_lease:
                    print(f"locked: {exc}", flush=True)
                    return
                await anyio.sleep(0.1)  # the killed runner's lease has not expired yet
    print("done", flush=True)


if __name__ == "__main__":
    db, ack_path, trials, step_sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(ack_path, "a") as ack_file:
        asyncio.run(main(db, ack_file, trials, step_sleep, "--retry-lease" in sys.argv))
