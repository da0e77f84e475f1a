"""Plot data extraction, the PNG, and the live progress display (on virtual time)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import anyio
import pytest

import aio_ashb as aa
from aio_ashb import plots
from aio_ashb._core import Direction
from aio_ashb._progress import Progress
from aio_ashb._report import RungStatus, StudyStatus, TrialCurve
from tests.helpers import SPACE, loss
from tests.virtual_time import run_virtual


def hand_made(direction: Direction = Direction.MINIMIZE) -> plots.PlotData:
    curves = {
        0: TrialCurve(0, 0, [1], [0.9], [100.0]),
        1: TrialCurve(1, 0, [1, 2, 3], [0.5, 0.4, 0.3], [101.0, 102.0, 103.0]),
        2: TrialCurve(
            2, 0, [1, 2, 3, 4, 9], [0.6, math.nan, 0.2, 0.1, 0.05], [101.5, 104.0, 105.0, 106.0, 110.0]
        ),
        3: TrialCurve(3, 0, [], [], []),  # created, nothing reported yet
    }
    status = StudyStatus(
        name="h",
        direction=direction,
        trials=4,
        states={aa.TrialState.COMPLETE: 1, aa.TrialState.PAUSED: 1, aa.TrialState.RUNNING: 2},
        rungs=[RungStatus(0, 0, 1, 3, 0), RungStatus(0, 1, 3, 2, 1), RungStatus(0, 2, 9, 1, 0)],
        best=None,
    )
    return plots.PlotData(status, curves, [[1, 3, 9]])


def test_curve_series_marks_the_highest_rung_reached() -> None:
    series = {s.number: s for s in plots.curve_series(hand_made())}
    assert [series[n].top_milestone for n in range(4)] == [1, 3, 9, 0]
    assert [series[n].level for n in range(4)] == [0, 1, 2, -1]
    assert series[3].steps == []
    assert series[2].steps == [1, 2, 3, 4, 9]


def test_best_so_far_counts_improvements_in_time_order_and_skips_nan() -> None:
    times, best = plots.best_so_far_series(hand_made())
    # reports by time: .9@100 .5@101 .6@101.5 .4@102 .3@103 nan@104 .2@105 .1@106 .05@110
    assert times == [0.0, 1.0, 2.0, 3.0, 5.0, 6.0, 10.0]
    assert best == [0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    times, best = plots.best_so_far_series(hand_made(Direction.MAXIMIZE))
    assert best == [0.9, 0.9] and times == [0.0, 10.0]  # nothing beats the first; the line spans the run


def test_rung_series_and_the_png(tmp_path: Path) -> None:
    data = hand_made()
    assert plots.rung_series(data) == [("r=1", 3, 0), ("r=3", 2, 1), ("r=9", 1, 0)]
    out = plots.draw(data, tmp_path / "h.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert plots.draw(data, tmp_path / "no_suffix") == tmp_path / "no_suffix.png"
    assert (tmp_path / "no_suffix.png").exists()
    with pytest.raises(aa.ConfigError, match=r"cannot write .*h\.foo: supported image types are .*png"):
        plots.draw(data, tmp_path / "h.foo")
    with pytest.raises(aa.ConfigError, match="is a directory"):
        plots.draw(data, tmp_path)


@pytest.mark.asyncio
async def test_collect_reads_every_report_of_a_real_study() -> None:
    study = await aa.create_study(
        space=SPACE, scheduler=aa.ASHA(1, 9, 3, brackets=2), sampler=aa.RandomSampler(3)
    )

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    await study.run(objective, max_trials=20, concurrency=3)
    data = await plots.collect(study)
    assert data.milestones == [[1, 3, 9], [3, 9]]
    assert len(data.curves) == 20
    for t in study.trials:
        curve = data.curves[t.number]
        assert dict(zip(curve.steps, curve.values, strict=True)) == await study.learning_curve(t.number)
        assert curve.bracket == t.bracket
    labels = [label for label, _, _ in plots.rung_series(data)]
    assert labels == ["b0 r=1", "b0 r=3", "b0 r=9", "b1 r=3", "b1 r=9"]
    # The same resource has the same level (colour) in every bracket.
    levels = {(s.bracket, s.top_milestone): s.level for s in plots.curve_series(data)}
    assert levels[(0, 9)] == levels[(1, 9)] == 2
    assert levels[(0, 3)] == levels[(1, 3)] == 1


def test_progress_prints_plain_lines_on_the_loops_clock(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> aa.Study:
        study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(0))

        async def objective(trial: aa.Trial) -> None:
            async for step in trial.steps():
                await anyio.sleep(1.0)  # one virtual second per step
                await trial.report(loss(trial.params, step))

        await study.run(objective, max_trials=12, concurrency=2, progress=True)
        return study

    run_virtual(main)
    lines = capsys.readouterr().err.splitlines()
    # one at the start, one every 5 virtual seconds, one at the end
    assert lines[0].startswith("[    0.0s] trials ") and "/12" in lines[0]
    assert lines[1].startswith("[    5.0s] ") and lines[2].startswith("[   10.0s] ")
    assert "rungs 1:" in lines[-1] and "reports/s" in lines[-1] and "best " in lines[-1]
    assert "trials 12/12" in lines[-1]
    assert "paused" not in lines[-1] and "stopped" in lines[-1]  # drawn after the run settled


def test_the_last_progress_line_of_a_cancelled_run_shows_interrupted_trials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> None:
        study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3), sampler=aa.RandomSampler(0))

        async def objective(trial: aa.Trial) -> None:
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(loss(trial.params, step))

        with anyio.move_on_after(2.5):
            await study.run(objective, max_trials=12, concurrency=3, progress=True)

    run_virtual(main)
    last = capsys.readouterr().err.splitlines()[-1]
    assert "interrupted 3" in last and "running" not in last, last


def test_live_table_with_rich() -> None:
    async def main() -> str:
        study = await aa.create_study(
            space=SPACE, scheduler=aa.ASHA(1, 9, 3, brackets=2), sampler=aa.RandomSampler(0)
        )
        stream = io.StringIO()
        progress = Progress(study.status, max_trials=10, stream=stream, live=True, interval=0.5)

        async def objective(trial: aa.Trial) -> None:
            async for step in trial.steps():
                await anyio.sleep(0.3)
                await trial.report(loss(trial.params, step))

        progress.open()
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.run)
            await study.run(objective, max_trials=10, concurrency=2)
            tg.cancel_scope.cancel()
        progress.close()
        return stream.getvalue()

    text = run_virtual(main)
    assert "aio_ashb study" in text and "rungs (bracket 0)" in text and "rungs (bracket 1)" in text
    assert "trials" in text and "of 10" in text and "throughput" in text
