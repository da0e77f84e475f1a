"""simulate(): the real runner on a virtual clock."""

from __future__ import annotations

import math
from typing import Any

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
