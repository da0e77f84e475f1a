"""How trials and runs fail: objectives that never report, a run whose first trials all fail the
same way, and a fatal error that must leave no trial RUNNING."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from tests.helpers import loss, new_study
from tests.virtual_time import run_virtual


def test_an_objective_that_returns_its_value_fails_fast_with_how_to_report() -> None:
    async def objective(trial: aa.Trial) -> float:  # the Optuna habit
        await anyio.sleep(1)
        return loss(trial.params, 27)

    async def main() -> aa.Study:
        study = await new_study()
        with pytest.raises(aa.ReportError, match=r"returned 0\.\d+ without reporting a value: report each"):
            await study.run(objective, max_trials=200, concurrency=2)  # type: ignore[arg-type]
        return study

    study = run_virtual(main)
    failed = [t for t in study.trials if t.state is aa.TrialState.FAILED]
    assert 5 <= len(failed) == len(study.trials) <= 6  # the run stopped; the other slot drained
    assert all(t.error is not None and "ReportError: trial" in t.error for t in failed)
    assert study.counts[aa.TrialState.COMPLETE] == 0


@pytest.mark.asyncio
async def test_a_def_objective_that_never_reports_fails_too() -> None:
    def objective(trial: aa.ThreadTrial) -> None:
        pass

    study = await new_study()
    with pytest.raises(aa.ReportError, match=r"trial \d+'s objective returned without reporting a value"):
        await study.run(objective, max_trials=50, concurrency=1)
    assert study.counts[aa.TrialState.FAILED] == 5 == len(study.trials)


def test_the_same_bug_in_every_first_trial_stops_the_run_with_that_error() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1)
            await trial.report(los(trial.params, step))  # type: ignore[name-defined]  # noqa: F821

    async def main() -> aa.Study:
        study = await new_study()
        with pytest.raises(NameError, match="'los' is not defined"):
            await study.run(objective, max_trials=200, concurrency=4)
        return study

    study = run_virtual(main)
    assert study.counts[aa.TrialState.FAILED] == len(study.trials) == 8  # 5, then the 3 running
    assert all(t.state.is_finished for t in study.trials)


def test_failures_after_a_success_or_in_different_places_do_not_stop_the_run() -> None:
    async def objective(trial: aa.Trial) -> None:
        await anyio.sleep(1)
        if trial.number % 2:
            raise ValueError("odd")
        raise KeyError("even")

    async def after_success(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1)
            if trial.number > 0:
                raise ValueError("broken after the first")
            await trial.report(loss(trial.params, step))

    async def main() -> tuple[aa.Study, aa.Study]:
        mixed = await new_study()
        await mixed.run(objective, max_trials=30, concurrency=1)
        later = await new_study()
        await later.run(after_success, max_trials=30, concurrency=1)
        return mixed, later

    mixed, later = run_virtual(main)
    assert mixed.counts[aa.TrialState.FAILED] == 30
    assert later.counts[aa.TrialState.FAILED] == 29


def test_an_objective_that_reports_then_returns_early_completes() -> None:
    async def objective(trial: aa.Trial) -> float:
        async for step in trial.steps():
            await anyio.sleep(1)
            await trial.report(loss(trial.params, step))
            if step == 2:
                return 0.0  # a returned value after reports is ignored
        return 0.0

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, mode="stopping"))
        await study.run(objective, max_trials=10, concurrency=2)  # type: ignore[arg-type]
        return study

    study = run_virtual(main)
    assert study.counts[aa.TrialState.FAILED] == 0
    assert all(t.state in (aa.TrialState.COMPLETE, aa.TrialState.STOPPED) for t in study.trials)


@pytest.mark.asyncio
async def test_after_a_fatal_error_no_trial_is_left_running() -> None:
    def objective(trial: aa.ThreadTrial) -> Any:
        if trial.number == 3:
            return objective_async(trial)  # a sync function returning an awaitable: misuse
        for step in trial.steps():
            time.sleep(0.005)
            trial.report(loss(trial.params, step))
        return None

    async def objective_async(trial: Any) -> None:
        pass

    study = await new_study()
    with pytest.raises(aa.ConfigError, match="instead of running"):
        await study.run(objective, max_trials=100, concurrency=4)
    assert study.counts[aa.TrialState.RUNNING] == 0
    assert study.trials[3].state is aa.TrialState.INTERRUPTED
    assert not study.is_running
