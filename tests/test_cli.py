"""The aio-ashb command: the demo, every reading command (also while another process writes),
and each error path's message and exit code."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import aio_ashb as aa
from aio_ashb.cli import main
from tests.helpers import SPACE, connect, loss

ROOT = Path(__file__).resolve().parent.parent


def make_study(db: Path, name: str = "s", trials: int = 30) -> None:
    async def go() -> None:
        study = await aa.create_study(
            space=SPACE,
            scheduler=aa.ASHA(1, 9, 3),
            sampler=aa.RandomSampler(1),
            storage=f"sqlite:///{db}",
            name=name,
        )

        async def objective(trial: aa.Trial) -> None:
            async for step in trial.steps():
                await trial.report(loss(trial.params, step))

        async with study:
            await study.run(objective, max_trials=trials, concurrency=4)

    asyncio.run(go())


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_trains_resumes_and_prints_a_leaderboard(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = str(tmp_path / "demo.db")
    small = ["--max-epochs", "9", "--concurrency", "2", "--db", db]
    code, out, err = run_cli(capsys, "demo", "--trials", "10", *small)
    assert code == 0, err
    assert "Leaderboard" in out and "trials 10/10" in out and "params.hidden" in out
    assert "trials" in err  # progress lines (not a terminal: plain lines on stderr)
    code, out, _ = run_cli(capsys, "demo", "--trials", "14", "--no-progress", *small)
    assert code == 0
    assert "resuming: 10 trials already there" in out and "trials 14/14" in out


def test_the_demo_uses_tpe_and_resumes_a_file_made_with_random_search(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from aio_ashb import demo

    async def stored_sampler(db: str) -> dict[str, Any]:
        async with aa.SQLiteStorage(db, readonly=True) as storage:
            (info,) = await storage.list_studies()
            return dict(info.config["sampler"])

    small = ["--max-epochs", "9", "--concurrency", "2", "--trials", "3", "--no-progress"]
    new = str(tmp_path / "new.db")
    assert run_cli(capsys, "demo", "--seed", "5", "--db", new, *small)[0] == 0
    assert asyncio.run(stored_sampler(new)) == aa.TPESampler(5).to_dict()

    # A demo file from before TPESampler was the default goes on with its RandomSampler.
    old = str(tmp_path / "old.db")

    async def make_old() -> None:
        study = await aa.create_study(
            space=demo.SPACE,
            scheduler=demo.scheduler(9),
            sampler=aa.RandomSampler(0),
            name="digits-mlp",
            storage=f"sqlite:///{old}",
        )
        await study.close()

    asyncio.run(make_old())
    code, out, err = run_cli(capsys, "demo", "--db", old, *small)
    assert code == 0, err
    assert "trials 3/3" in out
    assert asyncio.run(stored_sampler(old))["type"] == "random"


def test_reading_commands_on_a_finished_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    make_study(db)
    code, out, _ = run_cli(capsys, "studies", str(db))
    assert code == 0 and out.splitlines()[1].split()[:2] == ["s", "30"]

    code, out, _ = run_cli(capsys, "status", str(db))
    assert code == 0
    assert "study 's' (minimize): 30 trials" in out and "bracket 0 rung 0 (resource 1): 30 results" in out
    code, out, _ = run_cli(capsys, "status", str(db), "s", "--format", "json")
    status = json.loads(out)
    assert status["trials"] == 30 and status["states"]["running"] == 0
    assert [r["milestone"] for r in status["rungs"]] == [1, 3, 9]

    code, out, _ = run_cli(capsys, "trials", str(db), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 30 and {"number", "state", "value", "params.lr"} <= set(rows[0])
    code, out, _ = run_cli(
        capsys, "trials", str(db), "--format", "json", "--sort", "value", "--state", "complete"
    )
    ranked = json.loads(out)
    assert ranked and all(r["state"] == "complete" for r in ranked)
    assert [r["value"] for r in ranked] == sorted(r["value"] for r in ranked)
    code, out, _ = run_cli(capsys, "trials", str(db))
    assert code == 0 and len(out.splitlines()) == 31

    code, out, _ = run_cli(capsys, "best", str(db), "--format", "json")
    best = json.loads(out)
    assert best["resource"] == 9 and set(best["params"]) == {"lr", "x", "c"}
    for row in rows:
        if row["resource"] == "9":
            assert float(row["value"]) >= best["value"]

    png = tmp_path / "s.png"
    code, out, _ = run_cli(capsys, "plot", str(db), "-o", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    code, out, _ = run_cli(capsys, "export", str(db))
    doc = json.loads(out)
    assert doc["name"] == "s" and len(doc["trials"]) == 30 and doc["config"]["scheduler"]["max_resource"] == 9
    t0 = doc["trials"][0]
    assert [r[0] for r in t0["reports"]] == list(range(1, t0["resource"] + 1)) or t0["state"] != "complete"
    assert all(len(r) == 3 for t in doc["trials"] for r in t["reports"])


def test_reading_while_another_process_writes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db, ack = tmp_path / "live.db", tmp_path / "ack"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(db), str(ack), "200", "0.01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not ack.exists() or len(ack.read_text().splitlines()) < 20:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        seen = []
        for argv in (["status"], ["trials", "--format", "csv"], ["best"], ["export"], ["studies"]):
            code, out, err = run_cli(capsys, argv[0], str(db), *argv[1:])
            assert code == 0, err
            seen.append(child.poll() is None)
        code, out, _ = run_cli(capsys, "status", str(db), "--format", "json")
        assert json.loads(out)["trials"] >= 1
        assert seen[0], "the writer finished before the reads: make it slower"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--trials", "0"], "expected a positive integer, got '0'"),
        (["status"], "the following arguments are required: DB"),
        (["trials", "x.db", "--format", "xml"], "invalid choice: 'xml'"),
        (["nope"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def error(*argv: str) -> str:
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("aio-ashb: error: ")
        return err.strip().removeprefix("aio-ashb: error: ")

    missing = str(tmp_path / "missing.db")
    for cmd in ("studies", "status", "trials", "best", "export"):
        assert error(cmd, missing) == f"no such file: {missing}"
    db = tmp_path / "two.db"
    make_study(db, "a", trials=3)
    make_study(db, "b", trials=3)
    assert error("status", str(db)) == f"{db} holds 2 studies (a, b); name one of them"
    assert error("status", str(db), "c") == f"no study named 'c' in {db}"
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    assert "not" in error("status", str(text))
    empty = tmp_path / "empty.db"
    asyncio.run(_create_empty(empty))
    assert error("best", str(empty)) == "study 'e' has no trial at a milestone yet"
    assert error("demo", "--seed", "-1", "--trials", "2", "--db", str(tmp_path / "d.db")) == (
        "seed must be a non-negative integer or None, got -1"
    )
    assert error("export", str(db), "a", "-o", str(tmp_path / "no" / "dir.json")).startswith("[Errno 2]")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert error("plot", str(db), "a", "-o", str(tmp_path / "p.png")) == (
        'plots need matplotlib: pip install "aio_ashb[plot]"'
    )


async def _create_empty(db: Path) -> None:
    study = await aa.create_study(space=SPACE, storage=f"sqlite:///{db}", name="e")
    await study.close()


def test_json_output_stays_json_with_nan_and_infinite_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "nan.db"

    async def go() -> None:
        study = await aa.create_study(
            space=SPACE, scheduler=aa.ASHA(1, 9, 3), storage=f"sqlite:///{db}", name="n"
        )

        async def objective(trial: aa.Trial) -> None:
            async for step in trial.steps():
                await trial.report([math.nan, math.inf, -math.inf, 0.5][trial.number % 4] + step)

        async with study:
            await study.run(objective, max_trials=8, concurrency=2)

    asyncio.run(go())

    def strict(text: str) -> object:
        def refuse(name: str) -> None:
            raise ValueError(f"non-standard JSON: {name}")

        return json.loads(text, parse_constant=refuse)

    for argv in (
        ["trials", "--format", "json"],
        ["export"],
        ["best", "--format", "json"],
        ["status", "--format", "json"],
    ):
        code, out, err = run_cli(capsys, argv[0], str(db), *argv[1:])
        assert code == 0, err
        strict(out)
    rows = strict(run_cli(capsys, "trials", str(db), "--format", "json")[1])
    assert isinstance(rows, list) and {r["value"] for r in rows} >= {"nan", "inf"}


def test_plot_to_an_unknown_image_type_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    make_study(db, trials=6)
    code, out, err = run_cli(capsys, "plot", str(db), "-o", str(tmp_path / "x.foo"))
    assert code == 1 and len(err.splitlines()) == 1 and "supported image types are" in err
    code, out, _ = run_cli(capsys, "plot", str(db), "-o", str(tmp_path / "x"))
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'x.png'}"


def _writer(db: Path, ack: Path, trials: int, step_sleep: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(db), str(ack), str(trials), str(step_sleep)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while not ack.exists() or len(ack.read_text().splitlines()) < 20:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.02)
    return child


def test_export_during_a_run_is_one_snapshot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The trials' states and their reports come from one read transaction: every milestone a
    # trial's reports crossed is one its state has reached, and no report runs past it.
    db, ack = tmp_path / "live.db", tmp_path / "ack"
    child = _writer(db, ack, 100_000, 0.001)
    try:
        for _ in range(30):
            code, out, err = run_cli(capsys, "export", str(db))
            assert code == 0, err
            doc = json.loads(out)
            scheduler = aa.ASHA.from_dict(doc["config"]["scheduler"])
            for t in doc["trials"]:
                last = max((r[0] for r in t["reports"]), default=0)
                crossed = {m for m in scheduler.bracket_milestones(t["bracket"]) if m <= last}
                assert crossed == {int(k) for k in t["rung_values"]}, t
        assert child.poll() is None, "the writer finished before the reads: make it slower"
    finally:
        child.kill()
        child.communicate()


def test_delete_asks_first_and_refuses_a_study_being_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "d.db"
    make_study(db, "a", trials=3)
    make_study(db, "b", trials=3)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: --yes is required
    code, _, err = run_cli(capsys, "delete", str(db), "a")
    assert code == 1 and "cannot be undone: pass --yes to confirm" in err
    code, out, _ = run_cli(capsys, "delete", str(db), "a", "--yes")
    assert code == 0 and out.strip() == f"deleted study 'a' (3 trials) from {db}"
    code, out, _ = run_cli(capsys, "studies", str(db))
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["b"]
    code, _, err = run_cli(capsys, "delete", str(db), "a", "--yes")
    assert code == 1 and err.strip() == f"aio-ashb: error: no study named 'a' in {db}"

    live, ack = tmp_path / "live.db", tmp_path / "ack"
    child = _writer(live, ack, 100_000, 0.005)
    try:
        code, _, err = run_cli(capsys, "delete", str(live), "crash", "--yes")
        assert code == 1 and f"study 'crash' is being run by pid {child.pid}" in err
    finally:
        child.kill()
        child.communicate()
    code, out, _ = run_cli(capsys, "delete", str(live), "crash", "--yes")  # its runner is dead now
    assert code == 0, out


def test_empty_damaged_and_odd_files_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "zero.db"
    empty.touch()
    assert run_cli(capsys, "studies", str(empty))[1].strip() == f"{empty}: no studies"
    code, _, err = run_cli(capsys, "status", str(empty))
    assert code == 1 and err.strip() == f"aio-ashb: error: {empty} holds no studies"
    assert empty.stat().st_size == 0

    db = tmp_path / "bad.db"
    make_study(db, "good", trials=3)
    make_study(db, "bad", trials=3)

    with connect(db) as conn:
        conn.execute("UPDATE studies SET config = '{\"space\": 1}' WHERE name = 'bad'")
    code, _, err = run_cli(capsys, "status", str(db), "bad")
    assert code == 1 and len(err.splitlines()) == 1 and "study 'bad'" in err and "malformed" in err
    code, out, _ = run_cli(capsys, "studies", str(db))  # the damaged one does not hide the other
    assert code == 0 and out.splitlines()[1].split()[:2] == ["good", "3"] and "unreadable" in out


def test_a_nan_constant_stays_json_and_does_not_block_loading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "nan-constant.db"
    space = {**SPACE, "eps": math.nan}

    async def go() -> None:
        for _ in range(2):  # the second time loads the first one's study
            study = await aa.create_study(
                space=space,
                storage=f"sqlite:///{db}",
                name="n",
                scheduler=aa.ASHA(1, 9, 3),
                load_if_exists=True,
            )

            async def objective(trial: aa.Trial) -> None:
                async for step in trial.steps():
                    await trial.report(loss(trial.params, step))

            async with study:
                await study.run(objective, max_trials=len(study.trials) + 3)

    asyncio.run(go())
    for argv in (["status", "--format", "json"], ["best", "--format", "json"], ["export"]):
        code, out, err = run_cli(capsys, argv[0], str(db), *argv[1:])
        assert code == 0, err
        json.loads(out, parse_constant=lambda name: pytest.fail(f"non-standard JSON: {name}"))


def test_a_name_with_a_lone_surrogate_is_refused_before_any_file_is_made(tmp_path: Path) -> None:
    with pytest.raises(aa.ConfigError, match="valid Unicode text"):
        asyncio.run(aa.create_study(space=SPACE, storage=f"sqlite:///{tmp_path}/s.db", name="bad\udc80"))
    assert list(tmp_path.iterdir()) == []
