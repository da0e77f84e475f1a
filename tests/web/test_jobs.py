"""The job API for remote workers, through HTTP in-process: leases, heartbeats, expiry and the
hand-back of an expired job's trial; and the lease table itself, with plain calls."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

import aio_ashb as aa
from aio_ashb.web import StudyService
from aio_ashb.web._leases import JobLeases, LeaseGone
from tests.web.helpers import loss, make_objective, running, study_body


async def ask(client: httpx.AsyncClient, name: str = "j", **body: Any) -> dict[str, Any]:
    r = await client.post(f"/studies/{name}/jobs", json=body)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def report(client: httpx.AsyncClient, job: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post(f"/studies/j/jobs/{job['lease']}/report", json=body)


@pytest.mark.asyncio
async def test_a_job_from_ask_to_decision() -> None:
    service = StudyService("memory://", job_lease=30)
    async with running(service) as client:
        await client.post("/studies", json=study_body("j"))
        job = (await ask(client))["job"]
        fields = {"lease", "lease_expires_at", "lease_ttl", "number", "params", "bracket", "step", "target"}
        assert set(job) == fields | {"checkpoint"}
        assert (job["number"], job["step"], job["target"], job["checkpoint"], job["lease_ttl"]) == (
            0,
            0,
            1,
            None,
            30,
        )
        assert set(job["params"]) == {"lr", "width", "opt", "batch"} and job["params"]["batch"] == 64
        r = await report(client, job, value=loss(job["params"], 1), checkpoint={"w": [1, 2]})
        assert r.status_code == 200 and r.json()["decision"] == "pause" and r.json()["done"] is True
        assert "is over (finished)" in (await report(client, job, value=1.0)).json()["detail"]
        assert (await report(client, job, value=1.0)).status_code == 409
        study = (await client.get("/studies/j")).json()
        assert study["status"]["states"]["paused"] == 1 and study["jobs"] == []

        jobs = [(await ask(client))["job"] for _ in range(3)]  # three more at rung 0
        for j in jobs:
            await report(client, j, value=loss(j["params"], 1) + 10)  # trial 0 is the best
        promoted = (await ask(client))["job"]
        assert (promoted["number"], promoted["step"], promoted["target"]) == (0, 1, 3)
        assert promoted["checkpoint"] == {"w": [1, 2]}
        r = await report(client, promoted, value="nan", step=2)  # JSON has no NaN: the string
        assert r.json()["decision"] == "continue" and r.json()["lease_expires_at"] is not None
        trial = (await client.get("/studies/j/trials/0")).json()
        assert trial["curve"]["steps"] == [1, 2] and trial["curve"]["values"][1] == "nan"
        r = await report(client, promoted, value=0.5, step=2)
        assert "steps must increase" in r.json()["detail"] and r.status_code == 422
        r = await client.post(
            f"/studies/j/jobs/{promoted['lease']}/fail", json={"error": "CUDA out of memory"}
        )
        assert r.status_code == 200 and r.json() == {"number": 0, "state": "failed"}
        trial = (await client.get("/studies/j/trials/0")).json()
        assert trial["state"] == "failed" and trial["error"] == "CUDA out of memory"
        assert "is over (failed)" in (await report(client, promoted, value=1.0)).json()["detail"]
        assert "no job lease 'nope'" in (await report(client, {"lease": "nope"}, value=1.0)).json()["detail"]


@pytest.mark.asyncio
async def test_an_expired_lease_gives_the_trial_back_and_refuses_the_late_report() -> None:
    service = StudyService("memory://", job_lease=0.4)
    async with running(service) as client:
        await client.post(
            "/studies",
            json=study_body("j", max_resource=9, scheduler={"mode": "stopping", "max_resource": 9}),
        )
        lost = (await ask(client))["job"]
        assert (await report(client, lost, value=1.0, step=1, checkpoint={"at": 1})).json()[
            "decision"
        ] == "continue"
        kept = (await ask(client))["job"]
        for _ in range(8):  # heartbeats keep this one alive for twice the lease time
            await anyio.sleep(0.1)
            r = await client.post(f"/studies/j/jobs/{kept['lease']}/heartbeat")
            assert r.status_code == 200 and r.json()["lease_ttl"] == 0.4
        # Nobody touched the lost lease: the service gave its trial back on its own.
        study = (await client.get("/studies/j")).json()
        assert study["jobs"] == [kept["number"]] and study["status"]["states"]["interrupted"] == 1
        r = await report(client, lost, value=0.9, step=2)
        assert r.status_code == 409 and r.json()["error"] == "lease_gone"
        assert "expired (no heartbeat or report within 0.4 s)" in r.json()["detail"]
        again = (await ask(client))["job"]  # the same trial, from its checkpoint: not a copy
        assert (again["number"], again["params"], again["step"], again["checkpoint"]) == (
            lost["number"], lost["params"], 1, {"at": 1}
        )  # fmt: skip
        assert (await report(client, again, value=0.9, step=9)).json()["decision"] == "complete"
        assert (await report(client, kept, value=0.8, step=9)).json()["decision"] in ("complete", "stop")
        final = (await client.get("/studies/j")).json()["status"]
        assert (
            final["trials"] == 2 and final["states"]["complete"] >= 1 and final["states"]["interrupted"] == 0
        )


@pytest.mark.asyncio
async def test_cancel_gives_jobs_back_and_runs_and_jobs_exclude_each_other() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0.01)})
    async with running(service) as client:
        await client.post("/studies", json=study_body("j"))
        jobs = [(await ask(client))["job"] for _ in range(2)]
        run = {"objective": "train", "max_trials": 20, "concurrency": 2}
        r = await client.post("/studies/j/run", json=run)
        assert r.status_code == 409 and "2 job(s) handed out to workers (trials [0, 1])" in r.json()["detail"]
        assert (await client.delete("/studies/j")).status_code == 409
        r = await client.post("/studies/j/cancel")
        assert (
            r.status_code == 200
            and r.json()["status"]["states"]["interrupted"] == 2
            and r.json()["jobs"] == []
        )
        assert "is over (cancelled)" in (await report(client, jobs[0], value=1.0)).json()["detail"]
        assert (await client.post("/studies/j/run", json=run)).status_code == 202
        r = await client.post("/studies/j/jobs")
        assert r.status_code == 409 and "is being run by this service" in r.json()["detail"]
        await client.post("/studies/j/cancel")


@pytest.mark.asyncio
async def test_ask_says_when_to_wait_and_when_the_study_is_done() -> None:
    async with running(StudyService("memory://")) as client:
        await client.post("/studies", json=study_body("j"))
        job = (await ask(client, max_trials=1))["job"]
        assert await ask(client, max_trials=1) == {"job": None, "done": False, "retry_after": 1.0}
        await report(client, job, value=1.0)  # paused at rung 0, alone: never promotable
        assert await ask(client, max_trials=1) == {"job": None, "done": True, "retry_after": None}


def test_lease_table_rules() -> None:
    leases: JobLeases[str] = JobLeases(10.0, remember=2)
    a = leases.grant("s", "job a", now=0.0)
    b = leases.grant("s", "job b", now=1.0)
    assert leases.next_deadline() == 10.0 and len(leases) == 2
    assert leases.renew(a.id, now=5.0).deadline == 15.0
    assert leases.next_deadline() == 11.0  # a's old deadline is skipped
    assert leases.expired(now=10.5) == []
    assert leases.expired(now=11.0) == [b]
    with pytest.raises(LeaseGone) as gone:
        leases.get(b.id, now=11.0)
    assert gone.value.reason == "expired"
    leases.end(b.id, "expired")
    with pytest.raises(LeaseGone) as gone:
        leases.get(b.id, now=0.0)
    assert gone.value.reason == "expired"  # remembered after it ended
    assert leases.get(a.id, now=14.9) is a
    leases.end(a.id, "finished")
    c = leases.grant("t", "job c", now=0.0)
    leases.end(c.id, "cancelled")
    with pytest.raises(LeaseGone) as gone:
        leases.get(b.id, now=0.0)
    assert gone.value.reason is None  # beyond ``remember`` ended leases: unknown
    assert leases.next_deadline() is None and leases.of_study("s") == [] and leases.count("s") == 0
    d = leases.grant("u", "job d", now=0.0)
    assert leases.of_study("u") == [d] and leases.count("u") == 1 and leases.of_study("s") == []


@pytest.mark.asyncio
async def test_simultaneous_requests_on_one_study_never_share_a_trial() -> None:
    service = StudyService("memory://", objectives={"train": make_objective(0.01)})
    async with running(service) as client:
        await client.post("/studies", json=study_body("j"))
        numbers: list[int] = []

        async def take() -> None:
            numbers.append((await ask(client))["job"]["number"])

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(take)
        assert sorted(numbers) == list(range(10))
        await client.post("/studies/j/cancel")
        codes: list[int] = []

        async def start() -> None:
            run = {"objective": "train", "max_trials": 30, "concurrency": 5}
            codes.append((await client.post("/studies/j/run", json=run)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(start)
        assert sorted(codes) == [202, 409, 409]
        await client.post("/studies/j/cancel")


@pytest.mark.asyncio
async def test_a_stopped_service_gives_its_jobs_back_and_a_new_one_resumes_them() -> None:
    storage = aa.MemoryStorage()  # shared by both services, as a file would be
    async with running(StudyService(storage)) as client:
        await client.post("/studies", json=study_body("j"))
        await client.post("/studies", json=study_body("k"))
        job = (await ask(client))["job"]
        assert (await report(client, job, value=2.0, step=1)).json()["decision"] == "pause"
        job = (await ask(client))["job"]
        r = await client.post(f"/studies/k/jobs/{job['lease']}/report", json={"value": 1.0})
        assert r.status_code == 404 and "study 'k' has no job lease" in r.json()["detail"]
    async with running(StudyService(storage)) as client:
        states = (await client.get("/studies/j")).json()["status"]["states"]
        assert states["interrupted"] == 1 and states["running"] == 0
        r = await report(client, job, value=1.0)
        assert r.status_code == 404  # leases do not outlive their service
        again = (await ask(client))["job"]
        assert (again["number"], again["params"]) == (job["number"], job["params"])
    await storage.close()
