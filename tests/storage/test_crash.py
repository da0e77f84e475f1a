"""Real processes, real SIGKILLs: nothing acknowledged is lost, and the study always finishes."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

import aio_ashb as aa
from aio_ashb._core import Core, TrialState
from aio_ashb.storage._sqlite import SQLiteStorage

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("AIO_ASHB_CRASH_KILLS", "30"))  # more in a longer run by hand


def _child(db: Path, ack: Path, trials: int, step_sleep: float, *extra: str) -> subprocess.Popen[str]:
    args = [str(db), str(ack), str(trials), str(step_sleep), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        _, err = proc.communicate()
        raise AssertionError(f"child said {line!r}; stderr: {err}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipes


def _replayed(db: Path) -> Core:
    return anyio.run(_replay, db)


async def _replay(db: Path) -> Core:
    """The stored log, replayed into a fresh core: every transition is validated again."""
    async with SQLiteStorage(db, readonly=True) as storage:
        info = await storage.get_study("crash")
        events = await storage.read_events("crash")
    core = Core(
        aa.SearchSpace.from_dict(info.config["space"]),
        aa.ASHA.from_dict(info.config["scheduler"]),
        aa.RandomSampler(info.config["sampler"]["seed"]),
    )
    core.replay(events)
    return core


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_no_acknowledged_report(tmp_path: Path) -> None:
    db, ack = tmp_path / "crash.db", tmp_path / "ack.txt"
    rng = np.random.default_rng(0)
    trials = 1500
    for _ in range(KILLS):
        proc = _child(db, ack, trials, 0.005, "--retry-lease")
        _wait_ready(proc)
        time.sleep(float(rng.uniform(0.05, 0.4)))
        _kill(proc)
    proc = _child(db, ack, trials, 0.0, "--retry-lease")
    _wait_ready(proc)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "done" in out

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT number, step, value FROM events WHERE kind = 1").fetchall()
    stored = {(n, s): (math.nan if v is None else v) for n, s, v in rows}
    acknowledged = [line.split() for line in ack.read_text().splitlines()]
    assert len(acknowledged) > 1000
    for number, step, value in acknowledged:
        assert stored[(int(number), int(step))] == float(value)
    assert len(stored) == len(rows)  # no report recorded twice

    core = _replayed(db)
    assert core.n_trials == trials
    counts = core.counts
    assert counts[TrialState.RUNNING] == counts[TrialState.PAUSED] == counts[TrialState.INTERRUPTED] == 0
    for t in core.trials():
        if t.resource == 27:
            assert t.state is TrialState.COMPLETE


@pytest.mark.timeout(120)
def test_a_reader_process_always_sees_a_consistent_study(tmp_path: Path) -> None:
    db, ack = tmp_path / "read.db", tmp_path / "ack.txt"
    proc = _child(db, ack, 400, 0.002)
    _wait_ready(proc)
    polls = 0
    seen_trials = 0
    while proc.poll() is None or polls == 0:
        try:
            core = _replayed(db)
        except (aa.StudyNotFoundError, aa.StorageLocationError):
            continue  # not created yet
        # A consistent state: replay validated every transition; counts add up.
        assert sum(core.counts.values()) == core.n_trials
        assert core.n_trials >= seen_trials
        seen_trials = core.n_trials
        polls += 1
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert polls >= 5
    assert _replayed(db).n_trials == 400


@pytest.mark.timeout(120)
def test_a_second_process_fails_fast_then_takes_over_a_dead_runners_lease(tmp_path: Path) -> None:
    db, ack = tmp_path / "lease.db", tmp_path / "ack.txt"
    first = _child(db, ack, 100_000, 0.01)
    _wait_ready(first)
    time.sleep(0.5)  # it holds the lease and runs
    second = _child(db, ack, 100_000, 0.01)
    _wait_ready(second)
    out, _ = second.communicate(timeout=60)
    assert f"locked: study 'crash' is being run by pid {first.pid} on " in out
    _kill(first)
    t0 = time.monotonic()
    third = _child(db, ack, 5, 0.0, "--retry-lease")  # max_trials reached: it resumes and ends
    _wait_ready(third)
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert "done" in out
    assert time.monotonic() - t0 < 30
    core = _replayed(db)
    assert core.counts[TrialState.RUNNING] == core.counts[TrialState.INTERRUPTED] == 0
