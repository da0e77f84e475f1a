"""The dashboard's JSON API through httpx: every endpoint, incremental updates, bad requests,
and the read-only guarantees (a writer keeps writing; a malicious checkpoint runs nothing)."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import aio_ashb as aa
from aio_ashb.cli import main
from aio_ashb.web import Dashboard, check_host
from tests.helpers import SPACE, connect, loss

TOKEN = "dashboard-t0ken-0123456789"


async def run_study(
    db: Path,
    name: str = "s",
    trials: int = 20,
    step_time: float = 0.0,
    fail: int | None = None,
    run_for: float | None = None,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> None:
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(1, 9, 3),
        sampler=aa.RandomSampler(1),
        storage=f"sqlite:///{db}",
        name=name,
        load_if_exists=True,
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            if step_time:
                await anyio.sleep(step_time)
            if trial.number == fail:
                raise RuntimeError(f"boom at step {step}")
            await trial.report(loss(trial.params, step), checkpoint={"step": step})
            if pace is not None:
                await pace()

    async with study:
        await study.run(objective, max_trials=trials, concurrency=3, timeout=run_for)


@asynccontextmanager
async def client(db: Path, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = Dashboard(db, **kw)
    transport = httpx.ASGITransport(app=dashboard.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        await dashboard.aclose()


@pytest.mark.asyncio
async def test_studies_update_and_trial(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=20, fail=3)
    await run_study(db, name="other", trials=5)
    async with client(db) as c:
        r = await c.get("/api/studies")
        assert r.status_code == 200
        studies = {s["name"]: s for s in r.json()["studies"]}
        assert set(studies) == {"s", "other"}
        assert studies["s"]["trials"] == 20 and studies["s"]["running"] == 0
        best = studies["s"]["best"]
        assert isinstance(best, float)

        u = (await c.get("/api/studies/s")).json()
        assert u["full"] and u["seq"] == studies["s"]["seq"] > 0
        assert len(u["trials"]) == 20
        assert u["summary"]["best"] == best
        assert u["milestones"] == [1, 3, 9]
        assert u["param_names"] == list(SPACE)
        # Best so far: decreasing (minimize), ends at the best value, spans the run.
        vals = u["best"]["value"]
        assert vals == sorted(vals, reverse=True) and min(vals) <= best
        # Rungs: what reached each, and what went on from it.
        rungs = {r["milestone"]: r for r in u["rungs"]}
        assert rungs[1]["reached"] == 19  # trial 3 fails before its first report
        assert rungs[1]["promoted"] == rungs[3]["reached"]
        assert rungs[3]["promoted"] == rungs[9]["reached"]
        assert all(r["paused"] == 0 for r in u["rungs"])  # a finished run stops its paused trials
        assert sum(r["stopped"] for r in u["rungs"]) == u["status"]["states"]["stopped"]
        # The timeline: every stretch closed, never more slots than the run's concurrency.
        assert u["segments"] and all(s[4] is not None and s[4] >= s[3] for s in u["segments"])
        assert u["slots"] <= 3
        for seg in u["segments"]:
            overlapping = [
                o
                for o in u["segments"]
                if o[2] == seg[2] and o is not seg and o[3] < seg[4] and seg[3] < o[4]
            ]
            assert not overlapping
        rows = {t["number"]: t for t in u["trials"]}
        top = rows[u["summary"]["best_trial"]]
        assert top["resource"] == 9 and top["level"] == 2 and top["curve"][0][-1] == 9
        assert any(m[0] == "promoted" for t in rows.values() for m in t["marks"])
        assert rows[3]["state"] == "failed" and "boom at step 1" in rows[3]["error"]

        # Nothing new: an update since the last sequence number is empty.
        again = (await c.get(f"/api/studies/s?since={u['seq']}")).json()
        assert (again["seq"], again["trials"], again["segments"], again["full"]) == (u["seq"], [], [], False)

        t = (await c.get("/api/studies/s/trials/3")).json()
        assert "RuntimeError: boom at step 1" in t["error"] and "Traceback" in t["error"]
        assert t["params"]["c"] == rows[3]["params.c"] and t["params"]["lr"] == rows[3]["params.lr"]
        assert t["curve"] == [[], []] and t["milestones"] == [1, 3, 9]
        t = (await c.get(f"/api/studies/s/trials/{top['number']}")).json()
        # Steps only, never a payload: taken where it paused (at 1 or 3), the last one kept.
        assert t["checkpoints"] and set(t["checkpoints"]) <= {1, 3}
        assert t["checkpoint_step"] in (None, t["checkpoints"][-1])
        assert set(t["rung_values"]) == {"1", "3", "9"} and t["segments"]


@pytest.mark.asyncio
async def test_an_update_brings_only_what_changed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=6)
    async with client(db) as c:
        u = (await c.get("/api/studies/s")).json()
        await run_study(db, trials=9)  # the same study goes on: three more trials
        v = (await c.get(f"/api/studies/s?since={u['seq']}")).json()
        assert v["seq"] > u["seq"] and not v["full"]
        assert v["summary"]["trials"] == 9
        changed = {t["number"] for t in v["trials"]}
        assert {6, 7, 8} <= changed and len(changed) < 9
        ids = {s[0] for s in u["segments"]}
        assert all(s[0] not in ids or s[4] is not None for s in v["segments"])
        # A client that is ahead (the file was replaced) gets everything again.
        w = (await c.get(f"/api/studies/s?since={v['seq'] + 100}")).json()
        assert w["full"] and len(w["trials"]) == 9
        # The same as a new dashboard that reads it all at once.
        async with client(db) as fresh:
            x = (await fresh.get("/api/studies/s")).json()
        assert x["trials"] == w["trials"] and x["rungs"] == w["rungs"] and x["best"] == w["best"]


@pytest.mark.asyncio
async def test_a_running_study_is_read_while_it_writes(tmp_path: Path) -> None:
    """The dashboard takes no lock the writer would wait for: a writer keeps writing (each
    step is a durable commit) while the dashboard polls, and the dashboard sees it grow."""
    db = tmp_path / "s.db"
    seen: list[int] = []
    polled = anyio.Event()

    async def pace() -> None:
        """The writer goes on once the dashboard was read after its last report (or after a
        second): the test sees the run grow however slow the machine is."""
        nonlocal polled
        with anyio.move_on_after(1.0):
            await polled.wait()
        polled = anyio.Event()

    async with client(db) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_study, db, "s", 12, 0.01, pace=pace))
            with anyio.fail_after(60):
                while True:
                    await anyio.sleep(0.05)
                    r = await c.get("/api/studies")
                    if r.status_code == 200 and r.json()["studies"]:
                        seen.append(r.json()["studies"][0]["reports"])
                        polled.set()
                        if r.json()["studies"][0]["trials"] == 12 and r.json()["studies"][0]["running"] == 0:
                            break
        final = (await c.get("/api/studies/s")).json()
    assert len(set(seen)) >= 3  # it saw the run grow, several times
    async with client(db) as fresh:
        assert (await fresh.get("/api/studies/s")).json()["trials"] == final["trials"]


@pytest.mark.asyncio
async def test_reading_never_changes_the_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=8)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    mtime = os.stat(db).st_mtime_ns
    async with client(db) as c:
        for path in ["/api/studies", "/api/studies/s", "/api/studies/s/trials/0", "/", "/studies/s"]:
            assert (await c.get(path)).status_code == 200
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and os.stat(db).st_mtime_ns == mtime
    try:  # nor a write-ahead log with anything in it
        wal = os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        wal = 0
    assert wal == 0


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {os.environ['EVIL_MARK']}",))


@pytest.mark.asyncio
async def test_a_malicious_checkpoint_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.db"
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{db}", name="s"
    )

    async def objective(trial: aa.Trial) -> None:
        await trial.report(1.0, checkpoint={"ok": 1})
        raise RuntimeError("stop here, leaving the checkpoint")

    async with study:
        await study.run(objective, max_trials=1)
    # Plant the checkpoint an attacker would: unpickling it runs a command.
    with connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO checkpoints (study_id, number, step, payload) VALUES (1, 0, 1, ?)",
            (pickle.dumps(_Evil()),),
        )
    async with client(db) as c:
        for path in ["/api/studies", "/api/studies/s", "/api/studies/s/trials/0", "/studies/s/trials/0"]:
            assert (await c.get(path)).status_code == 200, path
    assert not mark.exists()
    # The test can fail: the planted payload does run when unpickled.
    with connect(db) as conn:
        blob = conn.execute("SELECT payload FROM checkpoints").fetchone()[0]
    pickle.loads(blob)
    assert mark.exists()


@pytest.mark.asyncio
async def test_bad_requests_are_json_4xx(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=3)
    async with client(db) as c:
        cases = {
            "/api/studies/nope": 404,
            "/api/studies/s/trials/99": 404,
            "/api/studies/s/trials/x": 404,
            "/api/studies/s?since=-1": 400,
            "/api/studies/s?since=abc": 400,
            f"/api/studies/s?since={10**30}": 400,
            "/api/nothing": 404,
        }
        for path, status in cases.items():
            r = await c.get(path)
            assert r.status_code == status, (path, r.text)
            assert r.headers["content-type"] == "application/json" and r.json()["detail"], path
        r = await c.post("/api/studies")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    async with client(tmp_path / "missing.db") as c:
        r = await c.get("/api/studies")
        assert r.status_code == 503 and "does not exist" in r.json()["detail"]


@pytest.mark.asyncio
async def test_pages_assets_and_token(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=3)
    async with client(db, token=TOKEN) as c:
        page = await c.get("/studies/s%3Cb%3E")
        assert page.status_code == 200 and "s&lt;b&gt;" in page.text and "<b>" not in page.text
        for path in ["/", "/studies/s/trials/1", "/static/dashboard.js", "/static/dashboard.css"]:
            assert (await c.get(path)).status_code == 200, path
        js = await c.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000]
        assert (await c.get("/api/studies")).status_code == 401
        r = await c.get("/api/studies/s", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await c.get("/api/studies", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
    open_dashboard = Dashboard(db)
    check_host("127.0.0.1", open_dashboard)
    with pytest.raises(aa.ConfigError, match="could read every study"):
        check_host("0.0.0.0", open_dashboard)
    check_host("0.0.0.0", Dashboard(db, token=TOKEN))


def test_cli_refuses_an_exposed_host_or_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    db.touch()
    assert main(["dashboard", str(db), "--host", "0.0.0.0"]) == 1
    assert "without a token" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path / "nope.db")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_thinning_keeps_milestones_and_the_last_point() -> None:
    from aio_ashb.web.dashboard._view import thin

    steps = list(range(1, 1001))
    values = [math.sqrt(s) for s in steps]
    s, v = thin(steps, values, 50, {81, 243})
    assert len(s) <= 53 and s[0] == 1 and s[-1] == 1000 and {81, 243} <= set(s)
    assert v == [math.sqrt(x) for x in s]
    assert thin([1, 2], [0.5, 0.25], 50, set()) == ([1, 2], [0.5, 0.25])


@pytest.mark.asyncio
async def test_mounted_under_a_prefix(tmp_path: Path) -> None:
    """Mounted in a host's Starlette app: its pages point at the prefix, its API answers there."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    db = tmp_path / "s.db"
    await run_study(db, trials=3)
    dashboard = Dashboard(db)
    host = Starlette(routes=[Mount("/dash", app=dashboard.app)])
    try:
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            page = await c.get("/dash/studies/s")
            assert page.status_code == 200 and 'data-root="/dash"' in page.text
            assert 'src="/dash/static/dashboard.js"' in page.text
            assert (await c.get("/dash/static/dashboard.js")).status_code == 200
            # The page loads plotly.js itself, from data-root + "/static/plotly.min.js".
            assert (await c.get("/dash/static/plotly.min.js")).status_code == 200
            assert (await c.get("/dash/api/studies/s")).json()["summary"]["trials"] == 3
    finally:
        await dashboard.aclose()


@pytest.mark.asyncio
async def test_a_damaged_log_is_a_json_503_and_read_again(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await run_study(db, trials=3)
    async with client(db) as c:
        seq = (await c.get("/api/studies/s")).json()["seq"]
        # A report of a trial that was never created: the scheduler's core refuses it.
        with connect(db) as conn:
            conn.execute(
                "INSERT INTO events (study_id, seq, kind, number, step, value, time, data) "
                "VALUES (1, ?, 1, 99, 1, 0.5, 0, NULL)",
                (seq + 1,),
            )
        for _ in range(2):  # the view was dropped, not left half-folded: the same answer again
            r = await c.get(f"/api/studies/s?since={seq}")
            assert r.status_code == 503 and "cannot be replayed" in r.json()["detail"], r.text
        with connect(db) as conn:
            conn.execute("DELETE FROM events WHERE seq = ?", (seq + 1,))
        r = await c.get("/api/studies/s")
        assert r.status_code == 200 and r.json()["summary"]["trials"] == 3


@pytest.mark.asyncio
async def test_an_empty_file_has_no_studies(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()  # a 0-byte file is a valid, empty SQLite database
    async with client(db) as c:
        assert (await c.get("/api/studies")).json() == {"file": "empty.db", "studies": []}
        r = await c.get("/api/studies/s")
        assert r.status_code == 404 and "the file is empty" in r.json()["detail"]
    assert db.stat().st_size == 0  # nor did it create any table
