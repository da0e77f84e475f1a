"""Every example, end to end at a tiny size; the web backend's service through httpx."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
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
    assert "created 201" in out and "run 202" in out and "cancel 200" in out
    assert "run again (resumes) 202" in out and "done: {'complete'" in out
    assert "job API: 20 trials" in out


@pytest.mark.timeout(120)
def test_dask_cluster(tmp_path: Path) -> None:
    out = run_example(tmp_path, "dask_cluster.py", "--trials", "6", "--db", "k.db")
    assert "trials by state" in out and "best: trial" in out


# ------------------------------------------------------------------ the web backend in-process
def load_web_backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_backend_example", EXAMPLES / "web_backend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_web_backend_answers_fast_while_200_trials_run(tmp_path: Path) -> None:
    """The example's service (tests/web covers the service itself): the server stays
    responsive while 200 trials run, every answer well under the step time."""
    module = load_web_backend()
    service = module.make_service(tmp_path / "web.db", step_time=0.05)
    async with service:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"name": "a", "space": module.SPACE, "scheduler": module.SCHEDULER}
            assert (await client.post("/studies", json=body)).status_code == 201
            run = {"objective": "train", "max_trials": 400, "concurrency": 200}
            assert (await client.post("/studies/a/run", json=run)).status_code == 202
            await anyio.sleep(0.3)
            latencies = []
            for _ in range(20):
                t0 = time.perf_counter()
                status: dict[str, Any] = (await client.get("/studies/a")).json()["status"]
                latencies.append(time.perf_counter() - t0)
                await anyio.sleep(0.01)
            assert status["states"]["running"] + status["states"]["paused"] > 100
            assert max(latencies) < 0.25, latencies
            cancelled = (await client.post("/studies/a/cancel")).json()
            assert cancelled["run"]["state"] == "cancelled" and cancelled["status"]["states"]["running"] == 0
