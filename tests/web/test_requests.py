"""Every bad request gets a 4xx JSON answer that names what was wrong; a storage failure is a
503 JSON answer, an unexpected error a 500 JSON answer; never a plain-text body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import aio_ashb as aa
from aio_ashb.web import Limits, StudyService
from aio_ashb.web._schemas import MAX_DEPTH
from tests.web.helpers import make_objective, running, study_body

pytestmark = pytest.mark.asyncio


def error_of(r: httpx.Response, status: int) -> str:
    """The detail of a JSON error answer with this status."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] and body["detail"]
    detail: str = body["detail"]
    return detail


async def post_raw(
    client: httpx.AsyncClient, path: str, content: bytes, ctype: str = "application/json"
) -> str:
    r = await client.post(path, content=content, headers={"content-type": ctype})
    return r.text


async def test_unknown_fields_are_refused_by_name() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0)})
    async with running(service) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("/studies", {**study_body("x"), "trails": 5}, "unknown field 'trails' in the body"),
            (
                "/studies",
                study_body("x", space={"lr": {"type": "float", "low": 0.1, "high": 1, "lo": 0}}),
                "unknown field 'lo' in space.lr",
            ),
            (
                "/studies",
                study_body("x", space={"lr": {"type": "float", "low": 0.1, "high": 1, "choices": [1]}}),
                "space.lr: field 'choices' does not apply to a float dimension",
            ),
            (
                "/studies",
                study_body("x", space={"n": {"type": "int", "low": 1}}),
                "space.n: an int dimension needs 'high'",
            ),
            (
                "/studies",
                study_body("x", scheduler={"max_resources": 9}),
                "unknown field 'max_resources' in scheduler",
            ),
            (
                "/studies",
                study_body("x", sampler={"type": "random", "seed": 1, "gamma": 0.2}),
                "sampler: field 'gamma' does not apply to the random sampler",
            ),
        ]
        for path, body, message in cases:
            assert message in error_of(await client.post(path, json=body), 422)
        assert (await client.post("/studies", json=study_body("x"))).status_code == 201
        r = await client.post("/studies/x/run", json={"objective": "train", "max_trials": 5, "concurency": 2})
        assert "unknown field 'concurency' in the body" in error_of(r, 422)
        job = (await client.post("/studies/x/jobs")).json()["job"]
        r = await client.post(f"/studies/x/jobs/{job['lease']}/report", json={"value": 1.0, "stepp": 2})
        assert "unknown field 'stepp' in the body" in error_of(r, 422)
        r = await client.post("/studies/x/trials", json={})
        assert error_of(r, 405)
        r = await client.get("/studies/x/trials", params={"page": 2})
        assert "unknown field 'page' in the query" in error_of(r, 422)


async def test_names_are_restricted_and_checked() -> None:
    async with running(StudyService("memory://")) as client:
        for name in ("a/b", "", "-lead", "sp ace", "é", "x" * 129):
            detail = error_of(await client.post("/studies", json=study_body(name)), 422)
            assert "letters, digits, '.', '_' or '-'" in detail and repr(name)[:50] in detail
        r = await client.post(
            "/studies",
            content=b'{"name": "\\ud800x", "space": {}}',
            headers={"content-type": "application/json"},
        )
        assert "'\\ud800', a lone surrogate" in error_of(r, 422)
        assert (await client.post("/studies", json=study_body("A.b_c-9"))).status_code == 201
        assert "no study named 'nope'" in error_of(await client.get("/studies/nope"), 404)
        assert error_of(await client.get("/studies/a/b"), 404)  # no such route: still JSON
        assert "at most 1000 characters" in error_of(await client.get("/studies/" + "y" * 1001), 422)
        assert "already exists" in error_of(await client.post("/studies", json=study_body("A.b_c-9")), 409)


async def test_limits_bound_trials_concurrency_and_space() -> None:
    limits = Limits(max_trials=1000, max_concurrency=50, max_studies=2, max_params=4, max_resource=100)
    service = StudyService("memory://", objectives={"train": make_objective(0)}, limits=limits)
    async with running(service) as client:
        await client.post("/studies", json=study_body("a"))
        run = {"objective": "train", "max_trials": 10_000_000}
        assert "max_trials must be at most 1000 (this service's limit), got 10000000" in error_of(
            await client.post("/studies/a/run", json=run), 422
        )
        run = {"objective": "train", "max_trials": 10, "concurrency": 10_000_000}
        assert "concurrency must be at most 50" in error_of(
            await client.post("/studies/a/run", json=run), 422
        )
        assert "the body is missing the required field 'max_trials'" in error_of(
            await client.post("/studies/a/run", json={"objective": "train"}), 422
        )
        r = await client.post("/studies/a/jobs", json={"max_trials": 10**7})
        assert "max_trials must be at most 1000" in error_of(r, 422)
        big = study_body("b", space={f"p{i}": {"type": "int", "low": 0, "high": 9} for i in range(5)})
        assert "space must have at most 4 fields, got 5" in error_of(
            await client.post("/studies", json=big), 422
        )
        wide = study_body("b", max_resource=10**6)
        assert "scheduler.max_resource must be at most 100" in error_of(
            await client.post("/studies", json=wide), 422
        )
        assert (await client.post("/studies", json=study_body("b"))).status_code == 201
        assert "holds 2 studies, its limit" in error_of(
            await client.post("/studies", json=study_body("c")), 409
        )


async def test_limits_on_runs_and_open_jobs_at_once() -> None:
    limits = Limits(max_runs=1, max_open_jobs=2)
    service = StudyService("memory://", objectives={"train": make_objective(0.01)}, limits=limits)
    async with running(service) as client:
        for name in ("a", "b"):
            await client.post("/studies", json=study_body(name))
        run = {"objective": "train", "max_trials": 100}
        assert (await client.post("/studies/a/run", json=run)).status_code == 202
        assert "1 runs are in progress" in error_of(await client.post("/studies/b/run", json=run), 429)
        await client.post("/studies/a/cancel")
        for _ in range(2):
            assert (await client.post("/studies/b/jobs")).json()["job"] is not None
        assert "has 2 open jobs, the limit" in error_of(await client.post("/studies/b/jobs"), 429)


async def test_values_the_library_refuses_are_422_with_its_message() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0)})
    async with running(service) as client:
        bad_space = study_body("x", space={"lr": {"type": "float", "low": 1.0, "high": 0.1}})
        assert "Float needs low < high" in error_of(await client.post("/studies", json=bad_space), 422)
        bad_asha = study_body("x", scheduler={"min_resource": 9, "max_resource": 3})
        assert "max_resource must be greater than min_resource" in error_of(
            await client.post("/studies", json=bad_asha), 422
        )
        assert "direction must be one of 'minimize', 'maximize', got 'down'" in error_of(
            await client.post("/studies", json=study_body("x", direction="down")), 422
        )
        await client.post("/studies", json=study_body("x"))
        r = await client.post("/studies/x/run", json={"objective": "nope", "max_trials": 5})
        assert "unknown objective 'nope'; this service has 'train'" in error_of(r, 422)
        r = await client.post("/studies/x/run", json={"objective": "train", "max_trials": True})
        assert "max_trials must be integer, got True" in error_of(r, 422)
        assert "study 'x' has no trial 3" in error_of(await client.get("/studies/x/trials/3"), 404)
        queries: list[tuple[dict[str, str | int], str]] = [
            ({"limit": "abc"}, "limit must be integer, got 'abc'"),
            ({"limit": 0}, "limit must be >= 1"),
            ({"limit": 5000}, "limit must be at most 1000"),
            ({"state": "sleeping"}, "state must be one of 'running', 'paused'"),
        ]
        for query, message in queries:
            assert message in error_of(await client.get("/studies/x/trials", params=query), 422)


async def test_bodies_malformed_too_large_or_not_json() -> None:
    service = StudyService("memory://", limits=Limits(max_body_bytes=2000))
    async with running(service) as client:
        r = await client.post("/studies", content=b"{not json", headers={"content-type": "application/json"})
        assert "the body is not valid JSON" in error_of(r, 400)
        r = await client.post(
            "/studies", content=b'{"name": NaN}', headers={"content-type": "application/json"}
        )
        assert "NaN is not JSON" in error_of(r, 400)
        r = await client.post("/studies", content=b"\xff\xfe", headers={"content-type": "application/json"})
        assert "not UTF-8" in error_of(r, 400)
        r = await client.post("/studies", content=b"[1, 2]", headers={"content-type": "application/json"})
        assert "the body must be object, got [1, 2]" in error_of(r, 422)
        r = await client.post(
            "/studies", content=json.dumps(study_body("x")), headers={"content-type": "text/plain"}
        )
        assert "the body must be application/json, got 'text/plain'" in error_of(r, 415)
        r = await client.post("/studies", content=json.dumps(study_body("x")).encode())
        assert "got 'no content type'" in error_of(r, 415)
        huge = json.dumps(study_body("x", padding="a" * 5000)).encode()
        r = await client.post("/studies", content=huge, headers={"content-type": "application/json"})
        assert "at most 2000 bytes" in error_of(r, 413)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 500

        r = await client.post("/studies", content=chunks(), headers={"content-type": "application/json"})
        assert "at most 2000 bytes" in error_of(r, 413)
        r = await client.post(
            "/studies",
            content=json.dumps(study_body("x")),
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 201


@pytest.mark.asyncio
async def test_a_body_nested_too_deeply_gets_the_same_answer_on_every_python() -> None:
    # CPython's own JSON parser gives up at 1,000 levels (3.11), 5,000 (3.12) or 100,000 (3.13)
    service = StudyService("memory://", limits=Limits(max_body_bytes=300_000))
    async with running(service) as client:
        for depth in (MAX_DEPTH + 1, 1000, 5000, 100_000):
            deep = b"[" * depth + b"]" * depth
            r = await client.post("/studies", content=deep, headers={"content-type": "application/json"})
            assert f"nests arrays or objects more than {MAX_DEPTH} levels deep" in error_of(r, 400)
        inside = b'{"name": "a", "space": ' + b'{"a": ' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH + b"}"
        r = await client.post("/studies", content=inside, headers={"content-type": "application/json"})
        assert f"more than {MAX_DEPTH} levels deep" in error_of(r, 400)
        deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH  # at the limit: JSON, then the wrong shape
        r = await client.post("/studies", content=deep, headers={"content-type": "application/json"})
        assert "the body must be object, got [[[" in error_of(r, 422)


class BrokenStorage(aa.MemoryStorage):
    """A storage whose listing fails as ``failure`` says."""

    failure: Exception | None = None

    async def list_studies(self) -> list[aa.storage.StudyInfo]:
        if self.failure is not None:
            raise self.failure
        return await super().list_studies()


async def test_a_storage_failure_is_503_json_and_a_bug_is_500_json() -> None:
    storage = BrokenStorage()
    async with running(StudyService(storage)) as client:
        storage.failure = aa.StorageError("disk I/O error")
        assert "the study storage failed: disk I/O error" in error_of(await client.get("/studies"), 503)
        assert "disk I/O error" in error_of(await client.post("/studies", json=study_body("x")), 503)
        storage.failure = RuntimeError("a bug")
        detail = error_of(await client.get("/studies"), 500)
        assert "a bug" not in detail and "log" in detail  # the traceback stays on the server
        storage.failure = None
        assert (await client.get("/studies")).status_code == 200
    await storage.close()


async def test_a_service_that_is_not_running_says_how_to_run_it() -> None:
    service = StudyService("memory://")
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert "async with service:" in error_of(await client.get("/studies"), 503)
    with pytest.raises(aa.ConfigError, match="token must be a string of at least 16 characters"):
        StudyService("memory://", token="short")
    with pytest.raises(aa.ConfigError, match="job_lease must be a positive number of seconds, got 0"):
        StudyService("memory://", job_lease=0)
    with pytest.raises(aa.ConfigError, match=r"Limits\.max_trials must be a positive integer, got 0"):
        Limits(max_trials=0)
    with pytest.raises(aa.ConfigError, match="storage must be a URL string or a Storage, got 5"):
        StudyService(5)  # type: ignore[arg-type]


async def test_fields_left_out_take_the_library_defaults() -> None:
    # The sampler too: a study created without one gets TPESampler with a recorded seed, as
    # create_study gives it.
    service = StudyService("memory://", objectives={"train": make_objective(0)})
    async with running(service) as client:
        body = study_body("d")
        del body["sampler"]
        assert (await client.post("/studies", json=body)).status_code == 201
        (study,) = (await client.get("/studies")).json()["studies"]
        sampler = study["config"]["sampler"]
        assert sampler["type"] == "tpe" and isinstance(sampler["seed"], int)
