"""The benchmark scripts still run: tiny sizes, their tables checked for the rows they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(300)
def test_quality_compares_the_samplers_on_a_simulated_clock(tmp_path: Path) -> None:
    out = run(
        "quality.py",
        *("--problems", "hartmann3", "--workers", "4", "--seeds", "2", "--budget", "10", "--jobs", "1"),
        *("--methods", "random", "ASHA", "ASHA-TPE", "--out", str(tmp_path / "runs.json")),
    )
    for method in ("random", "ASHA", "ASHA-TPE"):
        assert f"| 4 | {method} |" in out
    # The tables come back from the saved runs without running anything.
    again = run("quality.py", "--from-json", str(tmp_path / "runs.json"))
    assert "| 4 | ASHA-TPE |" in again


@pytest.mark.timeout(300)
def test_sampler_cost_prints_both_samplers() -> None:
    out = run("sampler_cost.py", "--trials", "300")
    assert "| LCBench-like (7) | 300 | TPESampler |" in out
    assert "| LCBench-like (7) | 300 | RandomSampler |" in out


def test_flat_prints_a_row_per_mode_and_size() -> None:
    out = run("flat.py", "--sizes", "50", "100", "--repeats", "1")
    for mode in ("promotion", "stopping"):
        assert f"| {mode} | 50 |" in out and f"| {mode} | 100 |" in out


@pytest.mark.timeout(300)
def test_asktell_compares_with_its_reference_on_the_same_schedule() -> None:
    out = run("asktell.py", "--pairs", "500", "--repeats", "1", "--budget", "5")
    assert "job sequences: identical" in out and "schedules: identical" in out
    assert "| aio_ashb Study.ask + Study.tell |" in out and "| aio_ashb simulate() |" in out
    assert "aio_ashb / reference cost:" in out and "simulate() / reference:" in out


def test_coldstart_times_fresh_processes_and_names_the_heaviest_modules() -> None:
    out = run("coldstart.py", "--runs", "1", "--modules", "3")
    assert "| `import aio_ashb` |" in out and "| import + SQLite study + first trial |" in out
    assert "Inside the last row's process (medians): import" in out
    assert out.count("| aio_ashb") + out.count("| numpy") >= 1  # the module table has rows


def test_embedded_prints_the_three_cases() -> None:
    out = run("embedded.py", "--seconds", "0.5")
    for case in ("study alone", "next to a busy application", "next to a busy application, handover off"):
        assert f"| {case} |" in out


def test_scale_prints_a_row_with_and_without_freeze_gc() -> None:
    for extra in ([], ["--freeze-gc"]):
        out = run("scale.py", "--trials", "50", "--storage", "memory", "--latency", "0.01-0.02", *extra)
        assert "| 50 | 10-20 ms | memory |" in out
    assert "run(freeze_gc=True)" in out
