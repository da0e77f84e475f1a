"""Bearer tokens, the refusal to serve an exposed host without one, and the OpenAPI document."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from starlette.routing import Route

import aio_ashb as aa
from aio_ashb.web import StudyService, check_host, serve
from tests.web.helpers import TOKEN, make_objective, running, study_body


@pytest.mark.asyncio
async def test_every_endpoint_but_the_document_needs_the_token() -> None:
    service = StudyService("memory://", token=TOKEN, objectives={"train": make_objective(0)})
    async with running(service) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            for method, path in [
                ("GET", "/studies"),
                ("POST", "/studies"),
                ("GET", "/studies/x"),
                ("DELETE", "/studies/x"),
                ("POST", "/studies/x/run"),
                ("POST", "/studies/x/cancel"),
                ("POST", "/studies/x/jobs"),
                ("POST", "/studies/x/jobs/abc/report"),
            ]:
                r = await client.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        assert (
            "requires the header 'Authorization: Bearer <token>'"
            in (await client.get("/studies")).json()["detail"]
        )
        assert (await client.get("/openapi.json")).status_code == 200
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.post("/studies", json=study_body("x"), headers=good)).status_code == 201
        assert (
            await client.post("/studies/x/jobs", headers={"Authorization": f"bearer {TOKEN}"})
        ).status_code == 200


def test_an_exposed_host_needs_a_token() -> None:
    open_service = StudyService("memory://")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_host(host, open_service)
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        with pytest.raises(aa.ConfigError, match=f"refusing to serve on '{re.escape(host)}' without a token"):
            check_host(host, open_service)
        check_host(host, StudyService("memory://", token=TOKEN))
    with pytest.raises(aa.ConfigError, match=r"refusing to serve on '0\.0\.0\.0' without a token"):
        serve(open_service, host="0.0.0.0", port=1)  # refused before anything is bound


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, TOKEN])
async def test_the_openapi_document_lists_every_route(token: str | None) -> None:
    service = StudyService("memory://", token=token)
    async with running(service) as client:
        r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = json.loads(r.text)
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == aa.__version__
    routes = {
        (method.lower(), route.path.replace("{number:int}", "{number}"))
        for route in service.app.routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented and len(routes) == 13
    schemas = doc["components"]["schemas"]
    for ops in doc["paths"].values():
        for op in ops.values():
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.removeprefix("#/components/schemas/") in schemas
            assert ("security" in op) is (token is not None)
            assert "503" in op["responses"]
    # The published schemas are the ones requests are checked against.
    assert schemas["StartRun"] == service.schemas["StartRun"]
    assert schemas["StartRun"]["properties"]["max_trials"]["maximum"] == service.limits.max_trials
    assert ("securitySchemes" in doc["components"]) is (token is not None)


@pytest.mark.asyncio
async def test_the_document_names_the_mount_prefix_as_its_server() -> None:
    service = StudyService("memory://")
    async with running(service):
        transport = httpx.ASGITransport(app=service.app, root_path="/hpo")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            doc = (await client.get("/hpo/openapi.json")).json()
    assert doc["servers"] == [{"url": "/hpo"}]
