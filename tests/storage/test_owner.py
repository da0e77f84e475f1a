"""Who holds a lease: is its process on this machine alive, stopped, gone or a reused pid?"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from aio_ashb.storage import _owner
from aio_ashb.storage._owner import Liveness, Owner

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _owner_of(pid: int) -> Owner:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return Owner(pid, _owner.this_process().machine, int(fields[19]))


def test_this_process_is_alive() -> None:
    me = _owner.this_process()
    assert me.pid == os.getpid() and me.machine is not None and me.started is not None
    assert _owner.liveness(me) is Liveness.ALIVE


def test_a_gone_process_is_dead_and_a_stopped_one_is_stopped(sleeper: subprocess.Popen[bytes]) -> None:
    owner = _owner_of(sleeper.pid)
    assert _owner.liveness(owner) is Liveness.ALIVE
    sleeper.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while _owner.state_letter(sleeper.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)  # a signal is delivered a moment later
    assert _owner.liveness(owner) is Liveness.STOPPED
    sleeper.send_signal(signal.SIGCONT)
    sleeper.kill()
    sleeper.wait()  # reaped: the pid is gone
    assert _owner.liveness(owner) is Liveness.DEAD


def test_a_zombie_is_dead(sleeper: subprocess.Popen[bytes]) -> None:
    owner = _owner_of(sleeper.pid)
    sleeper.kill()
    deadline = time.monotonic() + 5
    while _owner.state_letter(sleeper.pid) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.01)  # killed, not reaped yet: a zombie holds nothing
    assert _owner.liveness(owner) is Liveness.DEAD


def test_a_reused_pid_is_not_the_holder() -> None:
    me = _owner.this_process()
    assert me.started is not None
    assert _owner.liveness(replace(me, started=me.started - 1)) is Liveness.DEAD


def test_another_machine_is_trusted_to_its_expiry() -> None:
    me = _owner.this_process()
    assert _owner.liveness(replace(me, machine="elsewhere|boot|pid:[1]")) is Liveness.UNKNOWN
    assert _owner.liveness(replace(me, machine=None)) is Liveness.UNKNOWN
    assert _owner.liveness(Owner(999_999_999, None, None)) is Liveness.UNKNOWN
