"""Real processes, real signals: nothing acknowledged is lost, and the study always finishes.

Each test drives ``tests/storage/crash_child.py`` processes that record every report that
``report()`` acknowledged, then reads the file with plain ``sqlite3``.
"""

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
from tests.helpers import connect

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


def _expect(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != word:
        _, err = proc.communicate()
        raise AssertionError(f"child said {line!r}, not {word!r}; stderr: {err}")


def _kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> tuple[str, str]:
    proc.send_signal(sig)
    return proc.communicate(timeout=60)  # reaps it and closes its pipes


def _replayed(db: Path, name: str = "crash") -> Core:
    return anyio.run(_replay, db, name)


async def _replay(db: Path, name: str) -> Core:
    """The stored log, replayed into a fresh core: every transition is validated again."""
    async with SQLiteStorage(db, readonly=True) as storage:
        info, events = await storage.read_study(name)
    core = Core(
        aa.SearchSpace.from_dict(info.config["space"]),
        aa.ASHA.from_dict(info.config["scheduler"]),
        aa.RandomSampler(info.config["sampler"]["seed"]),
    )
    core.replay(events)
    return core


def _check_file(db: Path, ack: Path) -> int:
    """The file is intact, and every acknowledged report is in it, once. Returns how many."""
    with connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT s.name, e.number, e.step, e.value FROM events e JOIN studies s ON s.id = e.study_id "
            "WHERE e.kind = 1"
        ).fetchall()
    stored = {(s, n, st): (math.nan if v is None else v) for s, n, st, v in rows}
    assert len(stored) == len(rows)  # no report recorded twice
    acknowledged = [line.split() for line in ack.read_text().splitlines()]
    missing = [a for a in acknowledged if (a[0], int(a[1]), int(a[2])) not in stored]
    assert not missing, f"{len(missing)} acknowledged reports are not in the file, e.g. {missing[:3]}"
    for study, number, step, value in acknowledged:
        assert stored[(study, int(number), int(step))] == float(value)
    return len(acknowledged)


def _leases(db: Path) -> list[tuple[str, float]]:
    with connect(db) as conn:
        return conn.execute("SELECT holder, expires FROM leases").fetchall()


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_no_acknowledged_report(tmp_path: Path) -> None:
    db, ack = tmp_path / "crash.db", tmp_path / "ack.txt"
    rng = np.random.default_rng(0)
    trials = 1500
    for _ in range(KILLS):
        proc = _child(db, ack, trials, 0.005, "--retry-lease")
        _expect(proc, "ready")
        time.sleep(float(rng.uniform(0.05, 0.4)))
        _kill(proc)
    proc = _child(db, ack, trials, 0.0, "--retry-lease")
    _expect(proc, "ready")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "done" in out
    assert _check_file(db, ack) > 1000

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
    _expect(proc, "ready")
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
def test_a_second_process_fails_fast_then_takes_over_a_dead_runner_at_once(tmp_path: Path) -> None:
    # kill -9, then the same command again: the lease (30 s) names a process of this machine
    # that is gone, so it is taken over at once, not after lease_ttl.
    db, ack = tmp_path / "lease.db", tmp_path / "ack.txt"
    first = _child(db, ack, 100_000, 0.01, "--lease-ttl", "30")
    _expect(first, "ready")
    time.sleep(0.5)  # it holds the lease and runs
    second = _child(db, ack, 100_000, 0.01, "--lease-ttl", "30")
    _expect(second, "ready")
    out, _ = second.communicate(timeout=60)
    assert f"locked: study 'crash' is being run by pid {first.pid} on " in out
    _kill(first)
    t0 = time.monotonic()
    third = _child(db, ack, 5, 0.0, "--lease-ttl", "30")  # no retry: it must get the study now
    _expect(third, "ready")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert "done" in out, out
    assert time.monotonic() - t0 < 20
    core = _replayed(db)
    assert core.counts[TrialState.RUNNING] == core.counts[TrialState.INTERRUPTED] == 0
    assert _leases(db) == []
    _check_file(db, ack)


@pytest.mark.timeout(120)
def test_a_second_storage_and_an_outside_reader_never_corrupt_the_file(tmp_path: Path) -> None:
    # A runner's process opens a second storage on its file (a web backend does, per request),
    # a colleague reads it with sqlite3, and another process runs a study in it. Closing any
    # descriptor of the file in the runner's process would drop SQLite's locks: the reader would
    # then checkpoint and delete the WAL under the runner, and its reports and the other
    # process's would be lost when it crashed.
    db, ack = tmp_path / "shared.db", tmp_path / "ack.txt"
    first = _child(db, ack, 100_000, 0.002, "--study", "A", "--second", "B")
    _expect(first, "ready")
    _expect(first, "second")
    for _ in range(3):
        outside = sqlite3.connect(db)
        assert outside.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        outside.close()  # the last connection, it believes, if SQLite's locks were dropped
        assert Path(f"{db}-wal").exists()  # so it left the runner's WAL alone
        time.sleep(0.05)
    other = _child(db, ack, 60, 0.001, "--study", "C")
    _expect(other, "ready")
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0 and "done" in out, err
    _kill(first)  # a crash: whatever it wrote must be in the file itself
    assert _check_file(db, ack) > 100
    assert _replayed(db, "C").n_trials == 60
    with connect(db) as conn:
        assert {n for (n,) in conn.execute("SELECT name FROM studies")} == {"A", "B", "C"}


def _write_lock_free(db: Path) -> bool:
    probe = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


@pytest.mark.timeout(120)
def test_a_runner_stopped_past_its_lease_stops_when_it_wakes_and_writes_nothing(tmp_path: Path) -> None:
    db, ack = tmp_path / "stale.db", tmp_path / "ack.txt"
    stale = _child(db, ack, 100_000, 0.02, "--lease-ttl", "1")
    _expect(stale, "ready")
    time.sleep(0.5)
    for _ in range(50):  # stop it at a moment it does not hold SQLite's write lock
        stale.send_signal(signal.SIGSTOP)
        if _write_lock_free(db):
            break
        stale.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    try:
        time.sleep(1.5)  # past its lease
        n = _replayed(db).n_trials
        taker = _child(db, ack, n + 3, 0.0, "--lease-ttl", "1", "--retry-lease")
        _expect(taker, "ready")
        out, err = taker.communicate(timeout=60)
        assert taker.returncode == 0 and "done" in out, err
        assert _leases(db) == []  # the taker released it
    finally:
        stale.send_signal(signal.SIGCONT)
    out, err = stale.communicate(timeout=60)
    assert stale.returncode == 0, err
    assert "locked: study 'crash': this runner's lease was ended by another runner" in out, out + err
    assert _leases(db) == []  # the stale runner did not write a lease for itself
    core = _replayed(db)  # the log is one runner after the other: every transition is valid
    assert core.n_trials == n + 3
    assert core.counts[TrialState.RUNNING] == 0
    _check_file(db, ack)  # and what the stale runner acknowledged before it stalled is there


@pytest.mark.timeout(180)
def test_ctrl_c_at_random_moments_exits_cleanly_and_releases_the_study(tmp_path: Path) -> None:
    db, ack = tmp_path / "sigint.db", tmp_path / "ack.txt"
    rng = np.random.default_rng(1)
    for _ in range(8):
        proc = _child(db, ack, 100_000, 0.002, "--lease-ttl", "30")
        _expect(proc, "ready")
        time.sleep(float(rng.uniform(0.0, 0.5)))  # sometimes while it takes the lease
        _, err = _kill(proc, signal.SIGINT)
        assert proc.returncode == -signal.SIGINT, err  # KeyboardInterrupt, nothing else
        assert "KeyboardInterrupt" in err and "StorageError" not in err, err
        assert _leases(db) == []
        with connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = _replayed(db).n_trials
    proc = _child(db, ack, n + 5, 0.0, "--lease-ttl", "30")  # at once: nothing holds the study
    _expect(proc, "ready")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "done" in out, err
    _check_file(db, ack)
    assert _replayed(db).counts[TrialState.INTERRUPTED] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["--no-close", "--die"])
def test_a_script_that_never_closes_its_study_exits_with_everything_saved(tmp_path: Path, how: str) -> None:
    db, ack = tmp_path / "open.db", tmp_path / "ack.txt"
    proc = _child(db, ack, 40, 0.0, how)
    _expect(proc, "ready")
    out, err = proc.communicate(timeout=30)  # hung forever when the SQLite thread was no daemon
    assert "done" in out
    if how == "--die":
        assert proc.returncode == 1 and "RuntimeError: the script dies here" in err
    else:
        assert proc.returncode == 0, err
    assert _check_file(db, ack) > 40
    assert _replayed(db).n_trials == 40
