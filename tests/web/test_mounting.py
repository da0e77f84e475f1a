"""The service mounted inside a user's FastAPI or Starlette app, its lifespan run from the
host's; and ``aio_ashb.web``'s import rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from aio_ashb.web import StudyService
from tests.web.helpers import TOKEN, make_objective, study_body, wait_for


async def drive(app: object) -> None:
    """Create and run a study through the mounted service at /hpo; the host's own route works."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as host:
        assert (await host.get("/hello")).text == "host app"
    async with httpx.AsyncClient(transport=transport, base_url="http://test/hpo", headers=headers) as client:
        assert (await client.post("/studies", json=study_body("m"))).status_code == 201
        run = {"objective": "train", "max_trials": 8, "concurrency": 4}
        assert (await client.post("/studies/m/run", json=run)).status_code == 202
        final = await wait_for(client, "m", lambda b: b["run"]["state"] != "running")
        assert final["run"]["state"] == "finished" and final["status"]["trials"] == 8
        assert (await client.get("/openapi.json")).json()["servers"] == [{"url": "/hpo"}]
        r = await client.get("/nope")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert (await client.get("/studies", headers={"Authorization": "Bearer no"})).status_code == 401


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("host app")


@pytest.mark.asyncio
async def test_mounted_in_fastapi() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0.001)}, token=TOKEN)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service:  # a mounted app's own lifespan is not run: the host runs it
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_api_route("/hello", hello)
    app.mount("/hpo", service.app)
    async with app.router.lifespan_context(app):
        await drive(app)


@pytest.mark.asyncio
async def test_mounted_in_starlette() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0.001)}, token=TOKEN)
    app = Starlette(
        routes=[Route("/hello", hello), Mount("/hpo", app=service.app)],
        lifespan=service.lifespan,
    )
    async with app.router.lifespan_context(app):
        await drive(app)


@pytest.mark.asyncio
async def test_a_service_runs_once() -> None:
    service = StudyService("memory://")
    async with service:
        with pytest.raises(RuntimeError, match="already running"):
            async with service:
                pass
        # The app's own lifespan, run by a server that runs mounted lifespans, leaves it alone.
        async with service.app.router.lifespan_context(service.app):
            pass
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/studies")).status_code == 200
    with pytest.raises(RuntimeError, match="already running \\(or was closed\\)"):
        async with service:
            pass


def test_import_rules() -> None:
    """``import aio_ashb`` never imports Starlette; ``aio_ashb.web`` without it says what to
    install."""
    code = (
        "import sys\n"
        "import aio_ashb\n"
        "assert 'starlette' not in sys.modules, 'aio_ashb imported starlette'\n"
        "sys.modules['starlette'] = None  # as if it were not installed\n"
        "try:\n"
        "    import aio_ashb.web\n"
        "except ImportError as exc:\n"
        "    assert isinstance(exc, aio_ashb.AioAshbError)\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'aio_ashb.web needs Starlette: pip install "aio_ashb[web]"'
