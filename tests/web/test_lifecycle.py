"""A study's life over HTTP: create, run, watch, cancel, restart the service, resume, finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aio_ashb as aa
from aio_ashb.events import TrialCreated, TrialResumed
from aio_ashb.web import StudyService
from tests.web.helpers import make_objective, running, study_body, wait_for


@pytest.mark.asyncio
async def test_create_run_cancel_restart_resumes_interrupted_trials_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    service = StudyService(url, objectives={"train": make_objective(0.02)})
    async with running(service) as client:
        r = await client.post("/studies", json=study_body("a"))
        assert r.status_code == 201, r.text
        assert r.json()["status"]["trials"] == 0 and r.json()["run"] is None
        assert [s["name"] for s in (await client.get("/studies")).json()["studies"]] == ["a"]

        r = await client.post(
            "/studies/a/run", json={"objective": "train", "max_trials": 40, "concurrency": 8}
        )
        assert r.status_code == 202 and r.json()["state"] == "running", r.text
        again = await client.post("/studies/a/run", json={"objective": "train", "max_trials": 40})
        assert again.status_code == 409 and "is running" in again.json()["detail"]

        seen = await wait_for(client, "a", lambda b: b["status"]["states"]["running"] > 0)
        assert seen["run"]["state"] == "running"
        reports = await wait_for(client, "a", lambda b: b["status"]["reports"] > seen["status"]["reports"])
        assert reports["status"]["trials"] >= seen["status"]["trials"]  # the status moves on

        r = await client.post("/studies/a/cancel")
        assert r.status_code == 200, r.text
        cancelled = r.json()
        assert cancelled["run"]["state"] == "cancelled"
        states = cancelled["status"]["states"]
        assert states["running"] == 0 and states["interrupted"] > 0
        assert (await client.post("/studies/a/cancel")).status_code == 409  # nothing left to cancel

    # A new service on the same file: the server restarted.
    calls: list[int] = []
    service = StudyService(url, objectives={"train": make_objective(0.001, calls)})
    async with running(service) as client:
        before = (await client.get("/studies/a")).json()
        assert before["status"]["states"] == states and before["run"] is None
        interrupted = {
            t["number"]
            for t in (await client.get("/studies/a/trials", params={"state": "interrupted"})).json()["trials"]
        }
        assert len(interrupted) == states["interrupted"]

        r = await client.post(
            "/studies/a/run", json={"objective": "train", "max_trials": 40, "concurrency": 8}
        )
        assert r.status_code == 202
        final = await wait_for(client, "a", lambda b: b["run"]["state"] != "running")
        assert final["run"]["state"] == "finished" and final["run"]["error"] is None
        assert interrupted <= set(calls)
        done: dict[str, Any] = final["status"]
        assert done["trials"] == 40
        assert done["states"]["interrupted"] == done["states"]["running"] == done["states"]["paused"] == 0
        assert done["best"]["resource"] == 9

        page = (await client.get("/studies/a/trials", params={"offset": 35, "limit": 10})).json()
        assert page["total"] == 40 and [t["number"] for t in page["trials"]] == list(range(35, 40))
        best = done["best"]["number"]
        trial = (await client.get(f"/studies/a/trials/{best}")).json()
        assert trial["state"] == "complete" and trial["curve"]["steps"] == list(range(1, 10))
        assert trial["rung_values"]["9"] == trial["curve"]["values"][-1] == done["best"]["value"]

        # Resumed first: the log of the second run opens with the interrupted trials' resumptions.
        async with aa.SQLiteStorage(tmp_path / "studies.db", readonly=True) as storage:
            events = await storage.read_events("a")
        resumed = {i: e.number for i, e in enumerate(events) if isinstance(e, TrialResumed)}
        created = [
            i
            for i, e in enumerate(events)
            if isinstance(e, TrialCreated) and e.number >= before["status"]["trials"]
        ]
        assert set(resumed.values()) == interrupted
        assert max(resumed) < min(created)

        assert (await client.delete("/studies/a")).status_code == 204
        assert (await client.get("/studies/a")).status_code == 404
        assert (await client.get("/studies")).json() == {"studies": []}


@pytest.mark.asyncio
async def test_stop_finishes_the_run_and_closing_the_service_interrupts_a_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    service = StudyService(url, objectives={"train": make_objective(0.01)})
    async with running(service) as client:
        await client.post("/studies", json=study_body("s"))
        await client.post("/studies/s/run", json={"objective": "train", "max_trials": 1000, "concurrency": 4})
        await wait_for(client, "s", lambda b: b["status"]["reports"] > 5)
        r = await client.post("/studies/s/stop")
        assert r.status_code == 202 and r.json()["state"] == "stopping"
        final = await wait_for(client, "s", lambda b: b["run"]["state"] != "stopping")
        assert final["run"]["state"] == "finished" and final["status"]["trials"] < 1000
        assert final["status"]["states"]["running"] == 0 and final["status"]["states"]["interrupted"] == 0
        assert (await client.post("/studies/s/stop")).status_code == 409
        # A run left going when the service stops (server shutdown) is interrupted, not lost.
        await client.post("/studies/s/run", json={"objective": "train", "max_trials": 1000, "concurrency": 4})
        await wait_for(client, "s", lambda b: b["status"]["states"]["running"] > 0)
    async with running(StudyService(url)) as client:
        states = (await client.get("/studies/s")).json()["status"]["states"]
        assert states["running"] == 0 and states["interrupted"] > 0


@pytest.mark.asyncio
async def test_a_failing_run_reports_its_error_and_the_service_goes_on(tmp_path: Path) -> None:
    async def broken(trial: Any) -> None:
        raise ValueError("no GPU here")

    service = StudyService("memory://", objectives={"broken": broken})
    async with running(service) as client:
        await client.post("/studies", json=study_body("f"))
        await client.post("/studies/f/run", json={"objective": "broken", "max_trials": 10})
        final = await wait_for(client, "f", lambda b: b["run"]["state"] != "running")
        assert final["run"]["state"] == "failed" and "ValueError: no GPU here" in final["run"]["error"]
        failed = (await client.get("/studies/f/trials", params={"state": "failed"})).json()
        assert failed["total"] >= 1 and failed["trials"][0]["error"] == "ValueError: no GPU here"
        assert (await client.get("/studies")).status_code == 200
