"""A large study's dashboard starts from the snapshot its writer stored: what it shows is what
folding the whole log shows (rows, rung counts, best-so-far line, a trial's page), and the
table is sorted, filtered and paged by the server."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import anyio
import pytest

import aio_ashb as aa
import aio_ashb.cli
from aio_ashb.web.dashboard import _app
from tests.helpers import SPACE, connect, loss
from tests.web.test_dashboard import client


async def write(db: Path, trials: int, *, mode: str = "promotion", maximize: bool = False) -> None:
    study = await aa.create_study(
        space=SPACE,
        scheduler=aa.ASHA(1, 9, 3, brackets=2, mode=mode),  # type: ignore[arg-type]
        sampler=aa.RandomSampler(4),
        storage=f"sqlite:///{db}",
        name="s",
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            if trial.number % 17 == 5 and step == 2:
                raise RuntimeError("boom")
            value = loss(trial.params, step)
            await trial.report(-value if maximize else value, checkpoint={"step": step})

    async with study:
        await study.run(objective, max_trials=trials, concurrency=4)


async def everything(db: Path, restore: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the API shows of study "s", from its snapshot or from its whole log."""
    monkeypatch.setattr(_app, "RESTORE_FROM", 0 if restore else 10**12)
    async with client(db) as c:
        first = (await c.get("/api/studies/s")).json()
        for _ in range(200):  # the report count and best line arrive from a background scan
            if first["summary"]["reports"] is not None:
                break
            await anyio.sleep(0.01)
            first = (await c.get("/api/studies/s")).json()
        n = first["summary"]["trials"]
        pages = []
        for sort, order in [("number", "asc"), ("value", "desc"), ("state", "asc"), ("params.c", "desc")]:
            r = await c.get(f"/api/studies/s/table?sort={sort}&order={order}&limit=1000")
            pages.append(r.json())
        filtered = (await c.get("/api/studies/s/table?state=stopped&resource=3&q=c%3Da")).json()
        trial_pages = [(await c.get(f"/api/studies/s/trials/{i}")).json() for i in range(0, n, 7)]
    return {"update": first, "pages": pages, "filtered": filtered, "trials": trial_pages}


def _same(a: Any, b: Any) -> None:
    assert repr(a) == repr(b)  # (NaN == NaN as text)


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "maximize"), [("promotion", False), ("stopping", True)])
async def test_a_restored_view_shows_what_the_whole_log_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, maximize: bool
) -> None:
    db = tmp_path / "s.db"
    await write(db, 150, mode=mode, maximize=maximize)
    await write(db, 190, mode=mode, maximize=maximize)  # a second run: events after a snapshot
    with connect(db) as conn:
        (seq,) = conn.execute("SELECT seq FROM snapshots").fetchone()
        (top,) = conn.execute("SELECT max(seq) FROM events").fetchone()
    assert seq == top  # written at the end of the run
    # Take the newest snapshot away, then put an older one back, so that the view folds events
    # after it (as when a dashboard opens a study while it runs).
    with connect(db) as conn:
        conn.execute("DELETE FROM snapshots")
    await write(db, 150, mode=mode, maximize=maximize)  # nothing to run: a snapshot only
    full = await everything(db, False, monkeypatch)
    restored = await everything(db, True, monkeypatch)
    for key in ("summary", "status", "rungs", "best", "milestones", "param_names"):
        _same(restored["update"][key], full["update"][key])
    _same(restored["pages"], full["pages"])
    _same(restored["filtered"], full["filtered"])
    _same(
        [{k: v for k, v in t.items() if k not in ("segments", "seq")} for t in restored["trials"]],
        [{k: v for k, v in t.items() if k not in ("segments", "seq")} for t in full["trials"]],
    )
    # The drawn curves came with their marks; the timeline has the window's stretches.
    drawn = {t["number"]: t for t in restored["update"]["trials"]}
    fully = {t["number"]: t for t in full["update"]["trials"]}
    assert drawn.keys() == fully.keys() and len(drawn) == 190
    _same(drawn, fully)
    assert restored["update"]["segments"]


@pytest.mark.asyncio
async def test_events_after_the_snapshot_are_folded_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    await write(db, 120)
    monkeypatch.setattr(_app, "RESTORE_FROM", 0)
    async with client(db) as c:
        before = (await c.get("/api/studies/s")).json()
        await write(db, 160)  # another run appends, and stores a newer snapshot
        after = (await c.get(f"/api/studies/s?since={before['seq']}")).json()
        assert not after["full"] and after["summary"]["trials"] == 160
        changed = {t["number"] for t in after["trials"]}
        assert set(range(120, 160)) <= changed
    full = await everything(db, False, monkeypatch)
    async with client(db) as c:
        now = (await c.get("/api/studies/s")).json()
        for _ in range(200):
            if now["summary"]["reports"] is not None:
                break
            await anyio.sleep(0.01)
            now = (await c.get("/api/studies/s")).json()
    _same(now["summary"], full["update"]["summary"])
    _same(now["best"], full["update"]["best"])


@pytest.mark.asyncio
async def test_a_damaged_snapshot_falls_back_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    await write(db, 60)
    status = ["status", str(db), "--format", "json"]
    assert await anyio.to_thread.run_sync(aa.cli.main, status) == 0
    from_snapshot = capsys.readouterr().out
    with connect(db) as conn:
        conn.execute("UPDATE snapshots SET data = ?", (b"PK\x03\x04 not a snapshot",))
    full = await everything(db, False, monkeypatch)
    restored = await everything(db, True, monkeypatch)
    _same(restored["update"]["summary"], full["update"]["summary"])
    _same(restored["pages"], full["pages"])
    # The CLI reads it the same way: the log wins, and says what the snapshot said.
    assert await anyio.to_thread.run_sync(aa.cli.main, status) == 0
    assert capsys.readouterr().out == from_snapshot


@pytest.mark.asyncio
async def test_the_table_endpoint_sorts_filters_pages_and_refuses_bad_values(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await write(db, 40)
    async with client(db) as c:
        page = (await c.get("/api/studies/s/table?sort=value&order=asc&limit=10&offset=5")).json()
        everything = (await c.get("/api/studies/s/table?sort=value&order=asc&limit=1000")).json()
        assert page["total"] == everything["total"] == 40
        assert page["rows"] == everything["rows"][5:15]
        values = [r["value"] for r in everything["rows"]]
        present = [v for v in values if v is not None and not (isinstance(v, str) or math.isnan(v))]
        assert present == sorted(present) and values[: len(present)] == present  # blanks last
        desc = (await c.get("/api/studies/s/table?sort=value&order=desc&limit=1000")).json()
        assert [r["value"] for r in desc["rows"]][: len(present)] == sorted(present, reverse=True)
        assert all(r["curve"] == [[], []] for r in page["rows"])  # rows only: curves come with updates
        failed = (await c.get("/api/studies/s/table?state=failed")).json()
        assert failed["total"] >= 1 and {r["state"] for r in failed["rows"]} == {"failed"}
        searched = (await c.get("/api/studies/s/table?q=C%3DB")).json()  # case-insensitive words
        assert searched["total"] >= 1 and {r["params.c"] for r in searched["rows"]} == {"b"}
        for query, word in [
            ("sort=nope", "sort"),
            ("sort=params.nope", "parameter"),
            ("order=up", "order"),
            ("state=lost", "state"),
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("offset=-1", "offset"),
            ("resource=x", "resource"),
            ("q=" + "a" * 201, "q must"),
            ("colour=red", "unknown"),
        ]:
            r = await c.get(f"/api/studies/s/table?{query}")
            assert r.status_code == 400, query
            assert r.json()["error"] == "bad_request" and word in r.json()["detail"], (query, r.json())


def _schedule(jump: bool) -> tuple[Any, list[Any]]:
    """A promotion-mode schedule, four trials at once; with ``jump`` every first report is at
    step 3, past milestone 1 (a trial then pauses at 3 without a promotion)."""
    from aio_ashb._core import ASHA, Core, Decision, Direction, Float, RandomSampler, Reported, SearchSpace

    def make() -> Core:
        return Core(SearchSpace({"x": Float(0.0, 1.0)}), ASHA(1, 9, 3), RandomSampler(3), Direction.MINIMIZE)

    core, draw, t = make(), random.Random(1), 1000.0
    events: list[Any] = []
    running: dict[int, int] = {}
    for _ in range(600):
        t += 1.0
        while len(running) < 4:
            job = core.next_job(time=t)
            assert job is not None
            events.append(job)
            running[job.number] = core.step_of(job.number) + 1
        n = draw.choice(sorted(running))
        step = 3 if jump and core.step_of(n) == 0 else running[n]
        ev = Reported(n, step, draw.random(), t)
        events.append(ev)
        if core.apply(ev) is Decision.CONTINUE:
            running[n] = step + 1
        else:
            del running[n]
    return make, events


def _restored(make: Any, events: list[Any], at: int) -> Any:
    from aio_ashb._core._snapshot import dump, load
    from aio_ashb.web.dashboard._view import StudyView

    original, restored = make(), make()
    original.replay(events[:at])
    load(restored, dump(original))
    view = StudyView.restored("s", {}, 1000.0, restored, at, events[at - 1].time)
    histories: dict[int, list[Any]] = {}
    for ev in events[:at]:
        histories.setdefault(ev.number, []).append(ev)
    window = {ev.number for ev in events[at - 40 : at]}
    view.preload({n: histories[n] for n in view.missing(window)}, timeline=True)
    rest = events[at:]
    view.preload({n: histories.get(n, []) for n in view.missing({ev.number for ev in rest})})
    view.fold(rest, len(events))
    return view


@pytest.mark.parametrize("jump", [False, True])
def test_restored_rung_counts_and_timeline_match_the_folded_view(jump: bool) -> None:
    from aio_ashb._core import TrialPromoted
    from aio_ashb.web.dashboard._view import StudyView

    make, events = _schedule(jump)
    at = len(events) * 2 // 3
    full = StudyView("s", {}, 1000.0, make())
    full.fold(events, len(events))
    view = _restored(make, events, at)
    promoted = [(ev.number, ev.rung) for ev in events[:at] if isinstance(ev, TrialPromoted)]
    reports = sum(1 for ev in events[:at] if type(ev).__name__ == "Reported")
    view.set_reports_before(reports, [], promoted)  # what the background scan brings
    assert view.rungs() == full.rungs()
    # Stretches that overlap in time never share a slot, and the same trials run at the end.
    segs = view.segments
    for i, a in enumerate(segs):
        for b in segs[i + 1 :]:
            a_end, b_end = a.end if a.end is not None else math.inf, b.end if b.end is not None else math.inf
            assert a.slot != b.slot or not (a.start < b_end and b.start < a_end), (a, b)
    assert {s.number for s in segs if s.end is None} == {s.number for s in full.segments if s.end is None}


def test_a_client_of_another_view_gets_everything() -> None:
    # Segment ids are a view's own: after the dashboard reopened the study (from a newer
    # snapshot), a page that passes the old view's sequence number must get a full answer.
    make, events = _schedule(False)
    old = _restored(make, events[:520], 400)
    first = old.update(0)
    new = _restored(make, events, 500)
    assert not new.update(first["seq"])["full"]  # (without the view: ids would collide)
    answer = new.update(first["seq"], first["view"])
    assert answer["full"] and answer["view"] == new.instance != first["view"]
    assert not new.update(answer["seq"], answer["view"])["full"]


@pytest.mark.asyncio
async def test_the_background_count_finds_studies_created_later_and_retries_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_app, "RESTORE_FROM", 0)
    monkeypatch.setattr(_app, "SUMMARY_RETRY", 0.0)
    db = tmp_path / "s.db"
    await write(db, 30)

    async def counted(c: Any, name: str) -> Any:
        for _ in range(300):
            summary = (await c.get(f"/api/studies/{name}")).json()["summary"]
            if summary["reports"] is not None:
                return summary["reports"]
            await anyio.sleep(0.01)
        return None

    async with client(db) as c:
        assert await counted(c, "s")  # the scanning connection opens now
        study = await aa.create_study(
            space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{db}", name="later"
        )
        async with study:
            for _ in range(4):
                await study.tell(await study.ask(), 0.5)
        assert await counted(c, "later") == 4  # a study the scanner had never seen
    # One failed scan (a storage error) is tried again, not given up for good.
    real = aa.SQLiteStorage.read_reports_summary
    calls = []

    async def flaky(self: aa.SQLiteStorage, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise aa.StorageError("the disk is busy")
        return await real(self, *args)

    monkeypatch.setattr(aa.SQLiteStorage, "read_reports_summary", flaky)
    async with client(db) as c:
        assert await counted(c, "s") and len(calls) == 2
