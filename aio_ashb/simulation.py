"""Rehearse a study in simulated time: the study's own scheduler, on a clock that jumps.

Before spending a week of GPU time, try your scheduler settings (η, rungs, brackets, promotion
or stopping, the number of workers) on learning curves you already have, or on a surrogate, in
seconds::

    from aio_ashb.simulation import simulate

    def curve(params, step):  # the value after `step` units, and how long that unit took
        return table[params["config"]][step], seconds_per_epoch[params["config"]]

    result = simulate(curve, space=space, scheduler=aio_ashb.ASHA(1, 81, 3), workers=16,
                      max_trials=2000)
    times, best = result.best_so_far()

Nothing here re-implements the scheduler. By default :func:`simulate` drives the study's core
(decisions, sampler, rungs) from a heap of step completions (``_simulator``); with
``engine="runner"`` it runs ``study.run`` itself, with trials that ``await asyncio.sleep`` for
each step's duration, on a :class:`VirtualTimeLoop`: when the loop has nothing to do but wait
for a timer, the clock jumps to that timer. The two make the same decisions at the same times
(``tests/test_simulation.py`` runs both); the event engine is about five times faster.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import selectors
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from aio_ashb._core import (
    ASHA,
    Direction,
    FrozenTrial,
    Reported,
    Sampler,
    SearchSpace,
    TPESampler,
    TrialCreated,
)
from aio_ashb._exceptions import ConfigError, StateError
from aio_ashb._factory import create_study
from aio_ashb._run_options import check_limit
from aio_ashb._simulator import run_events
from aio_ashb._trial import Trial

__all__ = ["SimulationResult", "VirtualTimeLoop", "now", "run_virtual", "simulate"]

T = TypeVar("T")

# curve(params, step) or curve(params, step, trial_number) -> (value, seconds)
Curve = Callable[..., tuple[float, float]]


class _FastForwardSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual: when it would sleep until its next timer,
    the clock jumps there instead. ``await anyio.sleep(3600)`` takes no real time, and
    durations are exact. I/O still works (ready descriptors are polled first; a loop with no
    timer at all blocks on the real selector), but threads that run while timers are pending
    would see virtual time run ahead of them: simulate with coroutines."""

    def __init__(self) -> None:
        selector = _FastForwardSelector()
        selector.loop = self
        self._virtual_now = 0.0
        super().__init__(selector)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh :class:`VirtualTimeLoop`, then close it. Not from
    inside a running event loop (a notebook's, an application's): asyncio runs one loop per
    thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # none: the usual case
    else:
        raise StateError(
            "run_virtual() and simulate(engine='runner') run an event loop of their own, and this "
            "thread is running one already; call them from plain code (or a thread of their own), "
            "or use simulate()'s default engine, which needs no loop"
        )
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())  # type: ignore[arg-type,unused-ignore]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def now() -> float:
    """The running loop's clock (virtual seconds on a :class:`VirtualTimeLoop`)."""
    return asyncio.get_running_loop().time()


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a simulated study did: its trials, and every report with its simulated time."""

    trials: list[FrozenTrial]
    # (simulated seconds since the run started, trial, step, value), in the order made
    reports: list[tuple[float, int, int, float]]
    duration: float  # simulated seconds until the last trial settled
    direction: Direction

    def best_so_far(self) -> tuple[list[float], list[float]]:
        """(simulated time, best value reported so far, at any step) at each improvement."""
        sign = 1.0 if self.direction is Direction.MINIMIZE else -1.0
        times: list[float] = []
        best: list[float] = []
        current = math.inf
        for t, _, _, v in sorted(self.reports):
            if math.isfinite(v) and sign * v < current:
                current = sign * v
                times.append(t)
                best.append(v)
        return times, best

    def best_at(self, time: float) -> float:
        """The best value reported up to simulated ``time`` (NaN before the first report)."""
        times, best = self.best_so_far()
        value = math.nan
        for t, v in zip(times, best, strict=True):
            if t > time:
                break
            value = v
        return value


def _plain_int(value: T) -> T | int:
    """A numpy integer as an int (a count read from an array is one)."""
    return int(value) if isinstance(value, np.integer) else value


def _takes_three(curve: Curve) -> bool:
    try:
        inspect.signature(curve).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): called the documented way
        return False
    return True


def simulate(
    curve: Curve,
    *,
    space: Mapping[str, Any] | SearchSpace,
    scheduler: ASHA,
    workers: int,
    max_trials: int | None = None,
    time_budget: float | None = None,
    seed: int = 0,
    direction: str | Direction = "minimize",
    sampler: Sampler | None = None,
    engine: str = "events",
) -> SimulationResult:
    """Run a study of ``curve`` on a virtual clock with ``workers`` trials at once.

    ``curve(params, step)`` returns ``(value, seconds)``: the value reported after ``step``
    units of resource, and how long that unit took to train. A trial takes (virtually) that
    long, then reports. A curve that takes a third argument also gets the trial's number (to
    key observation noise by trial, or to record what each trial was shown). ``sampler``
    defaults to ``TPESampler(seed)``, as a study's does (``RandomSampler(seed)`` for random
    search). The study ends at ``max_trials`` or, gracefully, after ``time_budget`` simulated
    seconds (one of them is required; a curve whose steps take no time never reaches a time
    budget). Deterministic for a given ``seed``.

    ``engine="events"`` (default) drives the study's core from a heap of step completions;
    ``engine="runner"`` runs ``study.run`` itself on a :class:`VirtualTimeLoop`, trial
    coroutines and all, five times slower or more (it also wakes every 10 simulated seconds for
    the study's lease). Both make the same decisions at the same times (tested); they differ only
    in the order of reports due at exactly the same instant, and in what the curve gets wrong:
    an exception, a value that is not a number or a duration that is not a finite number of
    seconds >= 0 ends an "events" simulation with that error, while "runner" fails the trial as
    it would an objective's error (and stops with it once its first five trials failed the same
    way before any report).
    """
    if max_trials is None and time_budget is None:
        raise ConfigError("simulate() needs max_trials or time_budget, or it would never end")
    if workers is None:  # (check_limit lets None through: it means "no limit" elsewhere)
        raise ConfigError("workers must be a number >= 1, got None")
    workers, max_trials = _plain_int(workers), _plain_int(max_trials)
    check_limit("workers", workers, minimum=1, integer=True)
    check_limit("max_trials", max_trials, minimum=0, integer=True)
    check_limit("time_budget", time_budget, minimum=0)
    if time_budget == 0:  # (the runner would start its first jobs, the event engine all: neither means it)
        raise ConfigError("time_budget must be more than 0 simulated seconds, got 0")
    if engine not in ("events", "runner"):
        raise ConfigError(f"engine must be 'events' or 'runner', got {engine!r}")
    with_number = _takes_three(curve)
    if sampler is None:
        sampler = TPESampler(seed)
    if engine == "events":
        call = curve if with_number else (lambda params, step, _: curve(params, step))
        trials, reports, duration, direction_ = run_events(
            call,
            space=space,
            scheduler=scheduler,
            sampler=sampler,
            direction=direction,
            workers=workers,
            max_trials=max_trials,
            time_budget=time_budget,
        )
        return SimulationResult(trials, reports, duration, direction_)

    async def main() -> SimulationResult:
        study = await create_study(
            space=space,
            scheduler=scheduler,
            sampler=sampler,
            direction=direction,
        )

        async def objective(trial: Trial) -> None:
            params, number = trial.params, trial.number
            async for step in trial.steps():
                value, seconds = curve(params, step, number) if with_number else curve(params, step)
                await asyncio.sleep(seconds)  # what anyio.sleep calls here, minus its backend lookup
                await trial.report(value)

        start = now()
        async with study:
            await study.run(objective, max_trials=max_trials, concurrency=workers, timeout=time_budget)
            events = await study.storage.read_events(study.name)
        # The study's own record, on its own (simulated) time axis: the first trial was created
        # when the run started (max_trials=0: there is none, and no report).
        t0 = next((e.time for e in events if isinstance(e, TrialCreated)), 0.0)
        reports = [(e.time - t0, e.number, e.step, e.value) for e in events if isinstance(e, Reported)]
        return SimulationResult(study.trials, reports, now() - start, study.direction)

    return run_virtual(main)
