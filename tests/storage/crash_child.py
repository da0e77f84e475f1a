"""A study run in a child process by the crash tests (not a test module).

    python -m tests.storage.crash_child DB ACK TRIALS STEP_SLEEP [options]

It prints "ready" once the study is open, then after each report() returns it appends
"study number step value" to ACK, so the parent knows exactly which reports were acknowledged.
Options:
  --study NAME       the study's name (default "crash")
  --retry-lease      wait and retry while another runner holds the study
  --lease-ttl S      the study's lease_ttl (default 0.6)
  --second NAME      after the first 50 reports, create study NAME through a second storage on
                     the same file (as a web backend does on each request) and print "second"
  --no-close         never close the study (a script that forgets to): the process must exit
  --die              raise an exception once the run is over, without closing the study
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import TextIO

import anyio

import aio_ashb as aa
from tests.helpers import SPACE, loss


async def main(args: argparse.Namespace, ack: TextIO) -> None:
    study = await aa.create_study(
        space=SPACE,
        storage=f"sqlite:///{args.db}",
        name=args.study,
        sampler=aa.RandomSampler(7),
        scheduler=aa.ASHA(1, 27, 3),
        load_if_exists=True,
        lease_ttl=args.lease_ttl,
    )
    reports = 0
    second: list[aa.Study] = []

    async def objective(trial: aa.Trial) -> None:
        nonlocal reports
        async for step in trial.steps():
            await anyio.sleep(args.step_sleep)
            value = loss(trial.params, step)
            await trial.report(value, checkpoint=lambda: {"step": trial.step})
            ack.write(f"{args.study} {trial.number} {step} {value!r}\n")
            ack.flush()
            reports += 1
            if args.second and reports == 50:
                other = await aa.create_study(
                    space=SPACE, storage=f"sqlite:///{args.db}", name=args.second, load_if_exists=True
                )
                second.append(other)  # kept open, as a server keeps its studies
                print("second", flush=True)

    print("ready", flush=True)
    while True:
        try:
            await study.run(objective, max_trials=args.trials, concurrency=4)
            break
        except aa.StudyLockedError as exc:
            if not args.retry_lease:
                print(f"locked: {exc}", flush=True)
                await study.close()
                return
            await anyio.sleep(0.1)  # the killed runner's lease has not expired yet
    print("done", flush=True)
    if args.die:
        raise RuntimeError("the script dies here, without closing its study")
    if args.no_close:
        return
    for other in second:
        await other.close()
    await study.close()


if __name__ == "__main__":
    # Ctrl-C as a terminal's user sends it, even when the suite itself runs as a shell's
    # background job, which starts with SIGINT ignored and passes that on to its children.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("ack")
    parser.add_argument("trials", type=int)
    parser.add_argument("step_sleep", type=float)
    parser.add_argument("--study", default="crash")
    parser.add_argument("--retry-lease", action="store_true")
    parser.add_argument("--lease-ttl", type=float, default=0.6)
    parser.add_argument("--second")
    parser.add_argument("--no-close", action="store_true")
    parser.add_argument("--die", action="store_true")
    arguments = parser.parse_args()
    with open(arguments.ack, "a") as ack_file:
        asyncio.run(main(arguments, ack_file))
