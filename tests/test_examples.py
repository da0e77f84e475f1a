"""Every example, end to end at a tiny size; the web backend's API through httpx."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(tmp_path: Path, name: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_quickstart(tmp_path: Path) -> None:
    out = run_example(tmp_path, "quickstart.py", "--trials", "20", "--db", "q.db")
    assert "best trial" in out and (tmp_path / "q.db").exists()


def _study_arguments(text: str) -> list[str]:
    """The lines of the quickstart's create_study(...) call that make up its configuration."""
    call = text[text.index("aio_ashb.create_study(") : text.index("load_if_exists=True")]
    keep = [line.split("#")[0].strip() for line in call.splitlines()[1:]]
    return [line for line in keep if line and not line.startswith("storage=")]


def test_readme_docs_and_example_use_one_quickstart_study() -> None:
    # Run one after the other, they continue one study instead of failing with a mismatch.
    readme = _study_arguments((ROOT / "README.md").read_text())
    assert readme == _study_arguments((ROOT / "docs" / "quickstart.md").read_text())
    assert readme == _study_arguments((EXAMPLES / "quickstart.py").read_text())
    assert 'name="quickstart",' in readme and '"batch_size": 64,' in readme


def test_sklearn_digits(tmp_path: Path) -> None:
    out = run_example(
        tmp_path, "sklearn_digits.py", "--trials", "8", "--max-epochs", "3", "--db", "d.db", "--plot", "d.png"
    )
    assert "validation error" in out and "retrained" in out
    assert (tmp_path / "d.png").stat().st_size > 10_000


def test_remote_evaluation(tmp_path: Path) -> None:
    out = run_example(
        tmp_path,
        "remote_evaluation.py",
        "--trials",
        "60",
        "--concurrency",
        "40",
        "--latency",
        "0.001",
        "0.005",
    )
    assert "60 trials" in out and "remote calls" in out and "best trial" in out


def test_web_backend_with_uvicorn_on_loopback(tmp_path: Path) -> None:
    out = run_example(tmp_path, "web_backend.py", "--self-test", "--db", "w.db")
    assert "POST 202" in out and "DELETE 200" in out and "POST again (resumes) 202" in out
    assert "done: {'complete'" in out


@pytest.mark.timeout(120)
def test_dask_cluster(tmp_path: Path) -> None:
    out = run_example(tmp_path, "dask_cluster.py", "--trials", "6", "--db", "k.db")
    assert "trials by state" in out and "best: trial" in out


# ------------------------------------------------------------------ the web backend in-process
def load_web_backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_backend_example", EXAMPLES / "web_backend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def web_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (in this task: it owns a task group, which a
    pytest-asyncio fixture would enter and exit in different tasks)."""
    app = load_web_backend().create_app(tmp_path / "web.db")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def wait_until_done(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    with anyio.fail_after(60):
        while True:
            body: dict[str, Any] = (await client.get(f"/studies/{name}")).json()
            if not body["running"]:
                return body
            await anyio.sleep(0.05)


@pytest.mark.asyncio
async def test_start_poll_cancel_and_restart_resumes(tmp_path: Path) -> None:
    async with web_client(tmp_path) as client:
        await start_poll_cancel_and_restart(client)


async def start_poll_cancel_and_restart(client: httpx.AsyncClient) -> None:
    spec = {"name": "a", "trials": 400, "concurrency": 200, "step_time": 0.05}
    r = await client.post("/studies", json=spec)
    assert r.status_code == 202 and r.json()["running"] is True
    assert (await client.post("/studies", json=spec)).status_code == 409  # already running

    # The server stays responsive while 200 trials run: every answer well under the step time.
    await anyio.sleep(0.3)
    latencies = []
    for _ in range(20):
        t0 = time.perf_counter()
        body = (await client.get("/studies/a")).json()
        latencies.append(time.perf_counter() - t0)
        await anyio.sleep(0.01)
    assert body["running"] and body["states"]["running"] + body["states"]["paused"] > 100
    assert max(latencies) < 0.25, latencies

    r = await client.delete("/studies/a")
    assert r.status_code == 200
    cancelled = r.json()
    assert not cancelled["running"] and cancelled["states"]["running"] == 0
    interrupted = cancelled["states"]["interrupted"]
    assert interrupted > 0
    assert (await client.delete("/studies/a")).status_code == 409

    r = await client.post("/studies", json={**spec, "step_time": 0.001})  # resumes
    assert r.status_code == 202 and r.json()["trials"] == cancelled["trials"]
    final = await wait_until_done(client, "a")
    assert final["error"] is None and final["trials"] == 400
    assert final["states"]["interrupted"] == 0 and final["states"]["running"] == 0
    assert final["states"]["complete"] >= 1 and final["best"]["resource"] == 27


@pytest.mark.asyncio
async def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    async with web_client(tmp_path) as client:
        await bad_requests(client)


@pytest.mark.asyncio
async def test_simultaneous_posts_for_one_name_start_it_once(tmp_path: Path) -> None:
    async with web_client(tmp_path) as client:
        spec = {"name": "r", "trials": 50, "concurrency": 10, "step_time": 0.01}
        codes: list[int] = []

        async def post() -> None:
            codes.append((await client.post("/studies", json=spec)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(post)
        assert sorted(codes) == [202, 409, 409]
        final = await wait_until_done(client, "r")
        assert final["error"] is None and final["trials"] == 50


async def bad_requests(client: httpx.AsyncClient) -> None:
    assert (await client.get("/studies/nope")).json() == {"error": "no study named 'nope'"}
    assert (await client.get("/studies/nope")).status_code == 404
    assert (await client.delete("/studies/nope")).status_code == 404
    cases = [
        (b"not json", "the body must be JSON"),
        (b"[1]", "the body must be a JSON object"),
        (b'{"name": ""}', "name must be a non-empty string, got ''"),
        (b'{"name": "x", "trials": 0}', "trials must be a positive integer, got 0"),
        (b'{"name": "x", "concurrency": true}', "concurrency must be a positive integer, got True"),
        (b'{"name": "x", "step_time": -1}', "step_time must be a number >= 0, got -1"),
    ]
    for body, message in cases:
        r = await client.post("/studies", content=body)
        assert r.status_code == 400 and r.json() == {"error": message}


@pytest.mark.asyncio
async def test_a_study_from_an_earlier_server_is_read_from_the_file(tmp_path: Path) -> None:
    module = load_web_backend()
    for round_ in range(2):
        app = module.create_app(tmp_path / "web.db")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                if round_ == 0:
                    spec = {"name": "b", "trials": 30, "concurrency": 10, "step_time": 0}
                    assert (await c.post("/studies", json=spec)).status_code == 202
                    first = await wait_until_done(c, "b")
                else:  # a new server: not started here, read from the file
                    body = (await c.get("/studies/b")).json()
                    assert body["running"] is False and body["trials"] == first["trials"] == 30
                    assert body["best"] == first["best"]
