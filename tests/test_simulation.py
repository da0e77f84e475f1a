"""simulate(): the real runner on a virtual clock."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import aio_ashb as aa
from aio_ashb.simulation import simulate

SPACE = {"x": aa.Float(0.0, 1.0)}


def curve(params: dict[str, Any], step: int) -> tuple[float, float]:
    """Loss falls with steps; a step takes 1 + x seconds."""
    return (params["x"] - 0.3) ** 2 + 1 / math.sqrt(step), 1.0 + params["x"]


def test_durations_are_exact_and_one_worker_is_serial() -> None:
    result = simulate(curve, space=SPACE, scheduler=aa.ASHA(1, 9, 3), workers=1, max_trials=12, seed=1)
    params = {t.number: t.params for t in result.trials}
    # One worker: the run lasts exactly the sum of every step's duration, and each report lands
    # exactly when its step's time has passed since the previous report.
    assert result.duration == pytest.approx(sum(1.0 + params[n]["x"] for _, n, _, _ in result.reports))
    last = 0.0
    for t, n, step, value in sorted(result.reports):
        assert t - last == pytest.approx(1.0 + params[n]["x"])
        assert value == pytest.approx(curve(params[n], step)[0])
        last = t


def test_more_workers_finish_sooner_and_the_same_seed_repeats() -> None:
    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 27, 3), "max_trials": 60, "seed": 4}
    one = simulate(curve, workers=1, **kw)
    eight = simulate(curve, workers=8, **kw)
    assert eight.duration < one.duration / 4
    again = simulate(curve, workers=8, **kw)
    assert again.reports == eight.reports and again.duration == eight.duration
    times, best = eight.best_so_far()
    assert best == sorted(best, reverse=True) and times == sorted(times)
    assert eight.best_at(times[-1]) == best[-1] and math.isnan(eight.best_at(-1.0))


def test_a_time_budget_ends_the_run_gracefully() -> None:
    result = simulate(curve, space=SPACE, scheduler=aa.ASHA(1, 27, 3), workers=4, time_budget=50.0)
    assert 50.0 <= result.duration < 50.0 + 27 * 2  # running trials finish their segment
    assert all(t.state.is_finished for t in result.trials)
    with pytest.raises(aa.ConfigError, match="needs max_trials or time_budget"):
        simulate(curve, space=SPACE, scheduler=aa.ASHA(1, 27, 3), workers=4)


def test_a_curve_may_take_the_trial_number_and_the_sampler_is_chosen() -> None:
    seen: dict[int, set[int]] = {}

    def noisy(params: dict[str, Any], step: int, number: int) -> tuple[float, float]:
        seen.setdefault(number, set()).add(step)
        value, seconds = curve(params, step)
        return value + 0.01 * math.sin(number * 7 + step), seconds  # noise keyed by trial

    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "workers": 4, "max_trials": 40}
    result = simulate(noisy, sampler=aa.TPESampler(3), **kw)
    assert sorted(seen) == [t.number for t in result.trials]
    assert all(max(seen[n]) == t.step for n, t in ((t.number, t) for t in result.trials))
    for _, n, step, value in result.reports:
        params = result.trials[n].params
        assert value == pytest.approx(curve(params, step)[0] + 0.01 * math.sin(n * 7 + step))
    again = simulate(noisy, sampler=aa.TPESampler(3), **kw)
    assert again.reports == result.reports
    random = simulate(noisy, sampler=aa.RandomSampler(3), **kw)  # other configurations
    assert [t.params for t in random.trials] != [t.params for t in result.trials]
    # By default a simulation samples as a study does: TPESampler(seed).
    default = simulate(noisy, seed=3, **kw)
    assert default.reports == result.reports


# ------------------------------------------------------------------ the two engines
def jittered(params: dict[str, Any], step: int, number: int) -> tuple[float, float]:
    """Durations that never tie (they depend on the trial, the step and a parameter), so the
    two engines' only difference, the order of reports due at the same instant, never shows."""
    spread = (number * 0.6180339887 + step * 0.4142135623) % 1.0
    value = (params["x"] - 0.3) ** 2 + 1 / math.sqrt(step) + 0.05 * math.sin(7 * number + step)
    return value, 0.5 + params["x"] + spread


ENGINE_CASES: dict[str, dict[str, Any]] = {
    "promotion, random, 4 workers": {
        "scheduler": aa.ASHA(1, 27, 3),
        "sampler": aa.RandomSampler(1),
        "workers": 4,
        "max_trials": 80,
    },
    "stopping, time budget": {
        "scheduler": aa.ASHA(1, 27, 3, mode="stopping"),
        "sampler": aa.RandomSampler(2),
        "workers": 8,
        "time_budget": 90.0,
    },
    "hyperband, TPE, 40 workers (more than a fill batch)": {
        "scheduler": aa.ASHA(1, 27, 3, brackets="all"),
        "sampler": aa.TPESampler(3),
        "workers": 40,
        "max_trials": 160,
    },
    "promotion, TPE, maximize, eta 2, time budget": {
        "scheduler": aa.ASHA(1, 16, 2),
        "sampler": aa.TPESampler(4),
        "workers": 6,
        "time_budget": 120.0,
        "direction": "maximize",
    },
}


@pytest.mark.parametrize("case", ENGINE_CASES, ids=list(ENGINE_CASES))
def test_the_event_engine_decides_as_the_runner_does(case: str) -> None:
    kw = {"space": SPACE, **ENGINE_CASES[case]}
    events = simulate(jittered, **kw)
    runner = simulate(jittered, engine="runner", **kw)
    # The same reports (trial, step, value), each at the same simulated time (the runner's go
    # through the log's wall-clock floats: equal to about 1e-7 s).
    assert len(events.reports) == len(runner.reports) > 100
    by_key = {(n, s): (t, v) for t, n, s, v in runner.reports}
    for t, n, s, v in events.reports:
        rt, rv = by_key[(n, s)]
        assert v == rv
        assert t == pytest.approx(rt, abs=1e-6)
    assert events.duration == pytest.approx(runner.duration, abs=1e-6)
    # And the same trials, ending the same way.
    fields = ("number", "state", "params", "bracket", "step", "value", "rung_values")
    assert [[getattr(t, f) for f in fields] for t in events.trials] == [
        [getattr(t, f) for f in fields] for t in runner.trials
    ]
    assert all(t.state.is_finished for t in events.trials)
    assert {t.state for t in events.trials} >= {aa.TrialState.STOPPED}


def test_reports_due_together_are_taken_in_trial_number_order() -> None:
    def flat(params: dict[str, Any], step: int) -> tuple[float, float]:
        return params["x"] + 1 / step, 1.0  # every step takes one second: ties everywhere

    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "workers": 5, "max_trials": 30}
    result = simulate(flat, **kw)
    assert result.reports == simulate(flat, **kw).reports  # deterministic
    times = [t for t, _, _, _ in result.reports]
    assert times == sorted(times) and all(t == int(t) for t in times)
    for t in set(times):
        numbers = [n for u, n, _, _ in result.reports if u == t]
        assert numbers == sorted(numbers)


def test_what_the_curve_gets_wrong_ends_an_event_simulation() -> None:
    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "workers": 2, "max_trials": 5}

    def broken(params: dict[str, Any], step: int) -> tuple[float, float]:
        if step == 3:
            raise KeyError("no epoch 3 in the table")
        return 1.0, 1.0

    with pytest.raises(KeyError, match="no epoch 3"):
        simulate(broken, **kw)
    with pytest.raises(aa.ReportError, match=r"trial 0 at step 1: .* got 'high'"):
        simulate(lambda p, s: ("high", 1.0), **kw)  # type: ignore[arg-type,return-value]

    def lasting(seconds: object) -> Any:
        return lambda params, step: (1.0, seconds)

    for seconds in (-1.0, math.nan, math.inf, "1", None, True, 10**400):
        match = rf"returned {re.escape(repr(seconds))} as the duration of trial 0's step 1"
        with pytest.raises(aa.ConfigError, match=match):
            simulate(lasting(seconds), **kw)
    with pytest.raises(
        aa.ConfigError, match=r"step 1 would end after the end of time: 1e\+308 .* plus 1e\+308"
    ):
        simulate(lasting(1e308), **kw)  # each finite, their sum not
    assert simulate(lambda p, s: (1, 2), **kw).duration > 0  # ints are numbers, numpy's too
    assert simulate(lasting(Fraction(1, 2)), **kw).duration % 0.5 == 0
    result = simulate(lambda p, s: (np.float32(0.5), np.float32(1.5)), **kw)  # type: ignore[arg-type,return-value]
    assert result.duration % 1.5 == 0 and {v for _, _, _, v in result.reports} == {0.5}
    # The runner engine fails the trial instead, as it would an objective's error.
    result = simulate(broken, engine="runner", **kw)
    assert aa.TrialState.FAILED in {t.state for t in result.trials}


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("workers", 0),
        ("workers", None),
        ("workers", 1.5),
        ("workers", True),
        ("max_trials", -1),
        ("time_budget", math.nan),
        ("time_budget", 0),
    ],
)
def test_bad_arguments_are_named(arg: str, value: object) -> None:
    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "workers": 2, "max_trials": 5}
    kw[arg] = value
    with pytest.raises(aa.ConfigError, match=rf"{arg} must be .*, got {re.escape(repr(value))}"):
        simulate(curve, **kw)
    with pytest.raises(aa.ConfigError, match="engine must be 'events' or 'runner', got 'fast'"):
        simulate(curve, space=SPACE, scheduler=aa.ASHA(1, 9, 3), workers=2, max_trials=5, engine="fast")


@pytest.mark.parametrize("engine", ["events", "runner"])
def test_counts_may_be_numpy_integers_and_zero_trials_is_an_empty_study(engine: str) -> None:
    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "engine": engine}
    result = simulate(curve, workers=np.int64(2), max_trials=np.int64(4), **kw)  # type: ignore[arg-type]
    assert len(result.trials) == 4
    empty = simulate(curve, workers=2, max_trials=0, **kw)
    assert (empty.trials, empty.reports, empty.duration) == ([], [], 0.0)


@pytest.mark.asyncio
async def test_the_event_engine_runs_inside_a_running_event_loop() -> None:
    """A notebook or an async application calls simulate() from a running loop: the event engine
    needs none of its own (the runner engine starts a loop, which asyncio refuses there)."""
    kw: dict[str, Any] = {"space": SPACE, "scheduler": aa.ASHA(1, 9, 3), "workers": 4, "max_trials": 20}
    result = simulate(curve, **kw)
    assert len(result.trials) == 20
    with pytest.raises(aa.StateError, match="this thread is running one already"):
        simulate(curve, engine="runner", **kw)
