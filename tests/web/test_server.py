"""The service on a real uvicorn server on 127.0.0.1: remote worker processes take jobs over
HTTP, one is killed with SIGKILL in the middle of a job, its lease expires, and the surviving
worker resumes that same trial; the study ends with every result exactly once."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from aio_ashb.web import StudyService
from tests.web.helpers import study_body
from tests.web.worker import value

WORKER = Path(__file__).with_name("worker.py")


@asynccontextmanager
async def served(service: StudyService) -> AsyncIterator[str]:
    """``service.app`` (its lifespan included) on uvicorn on a free loopback port."""
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP, and without that every answer waits ~40 ms for an ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(service.app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        server.should_exit = True


class Lines:
    """A worker process and the lines it has printed."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._text = ""

    async def until(self, predicate: str) -> str:
        """Read until a line starting with ``predicate`` appears; return it."""
        assert self.process.stdout is not None
        stream = TextReceiveStream(self.process.stdout)
        with anyio.fail_after(15):
            while True:
                for line in self.lines:
                    if line.startswith(predicate):
                        return line
                self._text += await stream.receive()
                *done, self._text = self._text.split("\n")
                self.lines += done

    async def rest(self) -> list[str]:
        assert self.process.stdout is not None
        async for chunk in TextReceiveStream(self.process.stdout):
            self._text += chunk
        self.lines += [line for line in self._text.split("\n") if line]
        return self.lines


@pytest.mark.asyncio
@pytest.mark.timeout(40)
async def test_a_killed_workers_job_is_resumed_by_another_worker(tmp_path: Path) -> None:
    service = StudyService(f"sqlite:///{tmp_path / 'jobs.db'}", job_lease=0.5)
    # No milestone before step 4: the first job cannot be stopped before it is killed at step 2.
    scheduler = {"min_resource": 4, "max_resource": 12, "reduction_factor": 3, "mode": "stopping"}
    async with served(service) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.post("/studies", json=study_body("w", scheduler=scheduler))).status_code == 201

        def worker() -> list[str]:
            return [sys.executable, str(WORKER), base, "w", "6", "0.01"]

        async with await anyio.open_process(worker()) as p1, await anyio.open_process(worker()) as p2:
            doomed, survivor = Lines(p1), Lines(p2)
            victim = int((await doomed.until("took")).split()[1])
            await doomed.until(f"reported {victim} 2")  # in the middle of a 12-step job
            p1.send_signal(signal.SIGKILL)
            assert await p1.wait() == -signal.SIGKILL
            await survivor.until("done")
            lines = await survivor.rest()
            assert await p2.wait() == 0
        # The victim's trial was resumed from its checkpoint at step 2 (or later), not copied.
        resumed = [line.split() for line in lines if line.startswith(f"took {victim} ")]
        assert len(resumed) == 1 and int(resumed[0][2]) >= 2, lines

        study = (await client.get("/studies/w")).json()
        states = study["status"]["states"]
        assert study["status"]["trials"] == 6 and study["jobs"] == []
        assert states["running"] == states["interrupted"] == 0
        assert states["complete"] + states["stopped"] == 6
        for t in (await client.get("/studies/w/trials")).json()["trials"]:
            curve = (await client.get(f"/studies/w/trials/{t['number']}")).json()["curve"]
            # Every step once, in order, each with the value for that step: none lost or doubled.
            assert curve["steps"] == list(range(1, len(curve["steps"]) + 1))
            assert curve["values"] == [value(t["params"], s) for s in curve["steps"]]
            assert curve["steps"][-1] == t["step"] and (t["state"] != "complete" or t["step"] == 12)
        victim_curve = (await client.get(f"/studies/w/trials/{victim}")).json()["curve"]
        assert victim_curve["steps"][-1] >= 4  # trained on after the resume
