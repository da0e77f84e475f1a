"""Studies over HTTP with the aio_ashb.web study service: created, run, watched and cancelled,
and handed out as jobs to remote workers.

    pip install -e ".[examples]"
    python examples/web_backend.py                 # serve on http://127.0.0.1:8000
    curl -X POST localhost:8000/studies -H 'content-type: application/json' \\
         -d '{"name": "a", "space": {"lr": {"type": "float", "low": 1e-5, "high": 1, "log": true}}}'
    curl -X POST localhost:8000/studies/a/run -H 'content-type: application/json' \\
         -d '{"objective": "train", "max_trials": 500, "concurrency": 100}'
    curl localhost:8000/studies/a                  # live status, as JSON
    curl -X POST localhost:8000/studies/a/cancel   # running trials become INTERRUPTED
    curl localhost:8000/openapi.json               # every endpoint
    python examples/web_backend.py --self-test     # serve, drive it with httpx, exit

The service runs each study as a task of its own task group, owned by the app's lifespan, so a
run lives as long as the server, not a request. Trials are coroutines awaiting I/O (here a
simulated remote training step): hundreds run while the server keeps answering. State lives in
one SQLite file: stop the server, start it again, and start the run again to resume it.
docs/howto/web.md shows mounting it in FastAPI, tokens, proxies and the job API.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

import aio_ashb
from aio_ashb.web import StudyService, serve

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
    "width": {"type": "int", "low": 8, "high": 512, "log": True},
    "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
}
SCHEDULER = {"min_resource": 1, "max_resource": 27, "reduction_factor": 3}


def make_objective(step_time: float) -> Any:
    async def train(trial: aio_ashb.Trial) -> None:
        p = trial.params
        floor = (math.log10(p["lr"]) + 2.5) ** 2 / 4 + abs(math.log2(p["width"]) - 7) / 10
        async for epoch in trial.steps():
            await anyio.sleep(step_time)  # stands in for a remote training step
            await trial.report(floor + (0.5 if p["opt"] == "sgd" else 0.3) / math.sqrt(epoch))

    return train


def make_service(db: str | Path, step_time: float = 0.05, token: str | None = None) -> StudyService:
    return StudyService(f"sqlite:///{db}", objectives={"train": make_objective(step_time)}, token=token)


# ---------------------------------------------------------------------------------- running it
async def self_test(db: Path) -> None:
    """Serve on a free loopback port and drive the API with httpx: create, run, poll, cancel,
    resume; then a second study worked by a remote-style worker through the job API."""
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP, and without that every answer waits ~40 ms for an ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make_service(db, step_time=0.02).app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.01)
            r = await client.post("/studies", json={"name": "demo", "space": SPACE, "scheduler": SCHEDULER})
            print("created", r.status_code)
            run = {"objective": "train", "max_trials": 300, "concurrency": 100}
            r = await client.post("/studies/demo/run", json=run)
            print("run", r.status_code)
            await anyio.sleep(0.3)
            slowest = 0.0
            for _ in range(5):
                t0 = time.perf_counter()
                status = (await client.get("/studies/demo")).json()["status"]
                slowest = max(slowest, time.perf_counter() - t0)
            running = status["states"]["running"]
            print(f"GET while running: {running} trials running, slowest answer {slowest * 1000:.1f} ms")
            r = await client.post("/studies/demo/cancel")
            print("cancel", r.status_code, "interrupted:", r.json()["status"]["states"]["interrupted"])
            r = await client.post("/studies/demo/run", json=run)
            print("run again (resumes)", r.status_code)
            while (body := (await client.get("/studies/demo")).json())["run"]["state"] == "running":  # noqa: ASYNC110
                await anyio.sleep(0.05)  # a client polling the API: what this demonstrates
            states = {k: v for k, v in body["status"]["states"].items() if v}
            print("done:", states, "best:", body["status"]["best"]["value"])
            await remote_worker(client)
        server.should_exit = True


async def remote_worker(client: httpx.AsyncClient) -> None:
    """What a worker in another process or language does: ask, train, report, until done."""
    await client.post("/studies", json={"name": "jobs", "space": SPACE, "scheduler": SCHEDULER})
    reports = 0
    while True:
        answer = (await client.post("/studies/jobs/jobs", json={"max_trials": 20})).json()
        if answer["job"] is None:
            break  # with one worker nothing can still be running: the study is done
        job = answer["job"]
        p = job["params"]
        for step in range(job["step"] + 1, job["target"] + 1):
            value = (math.log10(p["lr"]) + 2.5) ** 2 / 4 + 0.3 / math.sqrt(step)
            r = await client.post(
                f"/studies/jobs/jobs/{job['lease']}/report", json={"value": value, "step": step}
            )
            reports += 1
            if r.json()["done"]:
                break
    status = (await client.get("/studies/jobs")).json()["status"]
    print(f"job API: {status['trials']} trials, {reports} reports, best {status['best']['value']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default="web_studies.db")
    parser.add_argument("--step-time", type=float, default=0.05, help="seconds per simulated epoch")
    parser.add_argument(
        "--self-test", action="store_true", help="serve on a free port, exercise the API, exit"
    )
    args = parser.parse_args()
    if args.self_test:
        asyncio.run(self_test(Path(args.db)))
    else:
        serve(make_service(args.db, args.step_time), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
