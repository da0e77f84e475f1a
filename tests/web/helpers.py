"""What the web tests share: a study body, an objective, and a client on a running service."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

import aio_ashb as aa
from aio_ashb.web import StudyService

TOKEN = "t0ken-for-the-tests-0123456789"

SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "width": {"type": "int", "low": 8, "high": 256},
    "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
    "batch": {"type": "constant", "value": 64},
}


def study_body(name: str, max_resource: int = 9, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "space": SPACE,
        "scheduler": {"min_resource": 1, "max_resource": max_resource, "reduction_factor": 3},
        "sampler": {"type": "random", "seed": 0},
        **extra,
    }


def loss(params: dict[str, Any], step: int) -> float:
    floor = (math.log10(params["lr"]) + 2) ** 2 / 4 + abs(math.log2(params["width"]) - 6) / 10
    return floor + (0.5 if params["opt"] == "sgd" else 0.3) / math.sqrt(step)


def make_objective(step_time: float, calls: list[int] | None = None) -> Any:
    """A coroutine objective; ``calls`` collects the trial number of every invocation."""

    async def objective(trial: aa.Trial) -> None:
        if calls is not None:
            calls.append(trial.number)
        async for step in trial.steps():
            await anyio.sleep(step_time)
            await trial.report(loss(trial.params, step), checkpoint={"step": step})

    return objective


@asynccontextmanager
async def running(service: StudyService, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """The service running (as a host app's lifespan would run it) and a client on its app."""
    async with service:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client


async def wait_for(client: httpx.AsyncClient, name: str, done: Any) -> dict[str, Any]:
    """Poll the study until ``done(body)`` holds (a client watching the API: what is tested)."""
    with anyio.fail_after(20):
        while True:
            r = await client.get(f"/studies/{name}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if done(body):
                return body
            await anyio.sleep(0.02)


train = make_objective(0.001)  # for `aio-ashb serve --objective train=tests.web.helpers:train`
