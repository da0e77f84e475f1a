"""``aio-ashb serve``: the study service from the command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aio_ashb.cli import main
from tests.web.helpers import TOKEN, study_body

ROOT = Path(__file__).resolve().parents[2]


def test_serve_refuses_what_it_cannot_serve_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "s.db")
    assert main(["serve", db, "--host", "0.0.0.0"]) == 1
    assert "refusing to serve on '0.0.0.0' without a token" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert main(["serve", db, "--token-env", "NO_SUCH_TOKEN_VAR"]) == 1
    assert "NO_SUCH_TOKEN_VAR: that environment variable is not set" in capsys.readouterr().err
    assert main(["serve", db, "--objective", "train"]) == 1
    assert "--objective must look like NAME=MODULE:FUNCTION, got 'train'" in capsys.readouterr().err
    assert main(["serve", db, "--objective", "t=tests.web.helpers:nope"]) == 1
    assert "cannot import 'tests.web.helpers:nope'" in capsys.readouterr().err
    assert not Path(db).exists()  # nothing was created by a refused command


@pytest.mark.timeout(30)
def test_serve_runs_a_study_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port (released just before the server takes it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "aio_ashb", "serve", str(tmp_path / "s.db"), "--port", str(port)]
    command += ["--token-env", "HPO_TOKEN", "--objective", "train=tests.web.helpers:train"]
    env = {**os.environ, "HPO_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        client.get("/openapi.json")
                        break
                    except httpx.ConnectError:
                        assert time.monotonic() < deadline and server.poll() is None, server.stderr
                        time.sleep(0.05)
                assert client.get("/studies", headers={"Authorization": ""}).status_code == 401
                assert client.post("/studies", json=study_body("c")).status_code == 201
                run = {"objective": "train", "max_trials": 10, "concurrency": 5}
                assert client.post("/studies/c/run", json=run).status_code == 202
                while (body := client.get("/studies/c").json())["run"]["state"] == "running":
                    time.sleep(0.02)
                assert body["run"]["state"] == "finished" and body["status"]["trials"] == 10
        finally:
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=10) == 0, server.stderr.read() if server.stderr else ""
