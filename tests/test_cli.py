from __future__ import annotations

from pathlib import Path

import pytest

from aio_ashb.cli import main


def test_demo_runs_resumes_and_prints_a_leaderboard(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = str(tmp_path / "demo.db")
    assert main(["demo", "--trials", "30", "--concurrency", "4", "--step-time", "0", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "Leaderboard" in out and "started 30/30" in out
    assert main(["demo", "--trials", "40", "--concurrency", "4", "--step-time", "0", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "resuming: 30 trials already there" in out and "started 40/40" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--trials", "0"], "expected a positive integer, got '0'"),
        (["demo", "--step-time", "x"], "expected a number >= 0, got 'x'"),
        (["nope"], "invalid choice"),
    ],
)
def test_bad_options_exit_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_library_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--seed", "-1", "--trials", "2", "--db", str(tmp_path / "d.db")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "aio-ashb: error: seed must be a non-negative integer or None, got -1"
