"""Studies inside an ASGI web backend (Starlette): started, watched and cancelled over HTTP.

    pip install -e ".[examples]"
    python examples/web_backend.py                 # serve on http://127.0.0.1:8000
    curl -X POST localhost:8000/studies -d '{"name": "a", "trials": 500, "concurrency": 100}'
    curl localhost:8000/studies/a                  # live status, as JSON
    curl -X DELETE localhost:8000/studies/a        # cancel: running trials become INTERRUPTED
    curl -X POST localhost:8000/studies -d '{"name": "a", "trials": 500}'   # resumes them first
    python examples/web_backend.py --self-test     # serve, drive it with httpx, exit

Each study runs as a task of the server's own event loop, in a task group that the app's
lifespan owns, so it lives as long as the server, not as long as a request. Trials are
coroutines awaiting I/O (here a simulated remote training step), so hundreds of them run while
the server keeps answering: the scheduler's work per report is a few microseconds. State lives
in one SQLite file: stop the server, start it again, and POST the same name to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import aio_ashb

SPACE = {
    "lr": aio_ashb.Float(1e-5, 1.0, log=True),
    "width": aio_ashb.Int(8, 512, log=True),
    "opt": aio_ashb.Categorical(["adam", "sgd"]),
}


def make_objective(step_time: float) -> Any:
    async def objective(trial: aio_ashb.Trial) -> None:
        p = trial.params
        floor = (math.log10(p["lr"]) + 2.5) ** 2 / 4 + abs(math.log2(p["width"]) - 7) / 10
        async for epoch in trial.steps():
            await anyio.sleep(step_time)  # stands in for a remote training step
            await trial.report(floor + (0.5 if p["opt"] == "sgd" else 0.3) / math.sqrt(epoch))

    return objective


@dataclass
class Entry:
    """A study started by this server."""

    study: aio_ashb.Study
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: str | None = None


class Studies:
    """The studies of one server: started in its task group, stored in one SQLite file."""

    def __init__(self, db: Path, tg: TaskGroup) -> None:
        self.url = f"sqlite:///{db}"
        self.db = db
        self.tg = tg
        self.entries: dict[str, Entry] = {}
        self.starting: set[str] = set()  # names being opened: a second POST must not race them

    async def start(self, name: str, trials: int, concurrency: int, step_time: float) -> Entry:
        study = await aio_ashb.create_study(
            name=name,
            space=SPACE,
            scheduler=aio_ashb.ASHA(min_resource=1, max_resource=27, reduction_factor=3),
            sampler=aio_ashb.RandomSampler(seed=0),
            storage=self.url,
            load_if_exists=True,  # a study that was cancelled (or the server stopped) resumes
        )
        entry = self.entries[name] = Entry(study)
        self.tg.start_soon(self._run, entry, trials, concurrency, step_time, name=f"study {name}")
        return entry

    async def _run(self, entry: Entry, trials: int, concurrency: int, step_time: float) -> None:
        try:
            async with entry.study:  # closed (its file released) when the run ends, however
                with entry.scope:  # DELETE cancels this scope: trials INTERRUPTED, state saved
                    await entry.study.run(
                        make_objective(step_time), max_trials=trials, concurrency=concurrency
                    )
        except aio_ashb.AioAshbError as exc:
            entry.error = str(exc)
        finally:
            entry.done.set()

    async def status(self, name: str) -> dict[str, Any] | None:
        entry = self.entries.get(name)
        if entry is not None:
            body = entry.study.status().to_dict()
            body.update(running=not entry.done.is_set(), error=entry.error)
            return body
        if not await anyio.Path(self.db).exists():
            return None
        try:  # started by an earlier server: read it from the file, never blocking a writer
            async with aio_ashb.SQLiteStorage(self.db, readonly=True) as storage:
                study = await aio_ashb.load_study(name=name, storage=storage)
                return {**study.status().to_dict(), "running": False, "error": None}
        except aio_ashb.StudyNotFoundError:
            return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _studies(request: Request) -> Studies:
    studies: Studies = request.app.state.studies
    return studies


async def post_study(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return _error(400, f"name must be a non-empty string, got {name!r}")
    params = {"trials": body.get("trials", 200), "concurrency": body.get("concurrency", 50)}
    for key, value in params.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return _error(400, f"{key} must be a positive integer, got {value!r}")
    step_time = body.get("step_time", 0.05)
    if not isinstance(step_time, (int, float)) or isinstance(step_time, bool) or not step_time >= 0:
        return _error(400, f"step_time must be a number >= 0, got {step_time!r}")
    studies = _studies(request)
    current = studies.entries.get(name)
    if name in studies.starting or (current is not None and not current.done.is_set()):
        return _error(409, f"study {name!r} is running")
    studies.starting.add(name)  # checked and reserved with no await in between
    try:
        entry = await studies.start(name, params["trials"], params["concurrency"], float(step_time))
    except aio_ashb.AioAshbError as exc:
        return _error(400, str(exc))
    finally:
        studies.starting.discard(name)
    return JSONResponse({**entry.study.status().to_dict(), "running": True, "error": None}, status_code=202)


async def get_study(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    body = await _studies(request).status(name)
    return JSONResponse(body) if body is not None else _error(404, f"no study named {name!r}")


async def delete_study(request: Request) -> JSONResponse:
    """Cancel a running study and answer once its trials are INTERRUPTED and saved."""
    studies = _studies(request)
    name = request.path_params["name"]
    entry = studies.entries.get(name)
    if name in studies.starting:
        return _error(409, f"study {name!r} is starting; try again")
    if entry is None or entry.done.is_set():
        return _error(404 if entry is None else 409, f"study {name!r} is not running")
    entry.scope.cancel()
    await entry.done.wait()
    return JSONResponse((await studies.status(name)) or {})


def create_app(db: str | Path) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            app.state.studies = Studies(Path(db), tg)
            yield
            # Server shutdown: running studies are cancelled like DELETE; they resume later.
            tg.cancel_scope.cancel()

    return Starlette(
        routes=[
            Route("/studies", post_study, methods=["POST"]),
            Route("/studies/{name}", get_study, methods=["GET"]),
            Route("/studies/{name}", delete_study, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )


# ---------------------------------------------------------------------------------- running it
async def self_test(db: Path) -> None:
    """Serve on a free loopback port and drive the API with httpx: start, poll, cancel, resume."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(db), log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.01)
            spec = {"name": "demo", "trials": 300, "concurrency": 100, "step_time": 0.02}
            r = await client.post("/studies", json=spec)
            print("POST", r.status_code, r.json()["trials"], "trials so far")
            await anyio.sleep(0.3)
            slowest = 0.0
            for _ in range(5):
                t0 = time.perf_counter()
                status = (await client.get("/studies/demo")).json()
                slowest = max(slowest, time.perf_counter() - t0)
            running = status["states"]["running"]
            print(f"GET while running: {running} trials running, slowest answer {slowest * 1000:.1f} ms")
            r = await client.delete("/studies/demo")
            print("DELETE", r.status_code, "interrupted:", r.json()["states"]["interrupted"])
            r = await client.post("/studies", json=spec)
            print("POST again (resumes)", r.status_code)
            while (status := (await client.get("/studies/demo")).json())["running"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # a client polling the API: what this demonstrates
            print("done:", {k: v for k, v in status["states"].items() if v}, "best:", status["best"]["value"])
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default="web_studies.db")
    parser.add_argument(
        "--self-test", action="store_true", help="serve on a free port, exercise the API, exit"
    )
    args = parser.parse_args()
    if args.self_test:
        asyncio.run(self_test(Path(args.db)))
    else:
        uvicorn.run(create_app(args.db), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
