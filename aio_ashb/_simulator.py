"""``simulate(engine="events")``: the study's core driven by a heap of step completions.

The same :class:`Core` as ``study.run`` (decisions, sampler, rungs, events) and the same
worker-slot rules as the :class:`Runner` for ``simulate()``'s objective (a trial steps on until
its report is not CONTINUE), without the event loop around them: no task per trial, no future
per pause, no timer per step. A step's completion is a heap entry; the clock jumps to the next
one. ``tests/test_simulation.py`` runs both engines on the same studies and checks that they
make the same decisions at the same times.

What the runner does and this mirrors, for that objective:
- A free slot goes to ``next_job`` at once, in the call that freed it (``Runner.fill``); a new
  trial starts at step 1, a promoted one at its last recorded step + 1.
- A PAUSE frees the slot (and may promote the same trial straight back); STOP and COMPLETE free
  it once the trial's objective returns, which for this objective is at the same instant.
- ``time_budget``: at that instant nothing new starts; trials that run finish their segment.
- At the end, paused trials are STOPPED, in ``Core.waiting_trials()`` order.

Where they differ: reports due at exactly the same instant are taken in trial-number order here
(the runner's loop takes timers due together in its heap's order, and timers less than 1e-9 s
apart as due together), and an exception from the curve (or a value or duration it returns
that is not valid) ends the simulation here (a value that is not a number: :class:`ReportError`;
a duration that is not a finite number of seconds >= 0, or that would take the clock past the
largest float: :class:`ConfigError`), where the runner would fail that trial.
"""

from __future__ import annotations

import heapq
import math
import numbers
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from aio_ashb._core import (
    ASHA,
    Decision,
    Direction,
    FrozenTrial,
    Sampler,
    SearchSpace,
    TrialCreated,
    check_value,
)
from aio_ashb._exceptions import ConfigError, ReportError
from aio_ashb._factory import new_core

Report = tuple[float, int, int, float]  # (simulated seconds, trial number, step, value)


def _checked_value(value: object, number: int, step: int) -> float:
    try:
        return check_value(value)
    except ReportError as exc:
        raise ReportError(f"the curve's value for trial {number} at step {step}: {exc}") from None


def _checked_seconds(seconds: object, number: int, step: int, now: float) -> float:
    if isinstance(seconds, (numbers.Real, np.integer, np.floating)) and not isinstance(seconds, bool):
        try:
            as_float = float(seconds)
        except OverflowError:  # an int past 1e308
            as_float = math.inf
        if 0.0 <= as_float < math.inf:
            if now + as_float == math.inf:
                raise ConfigError(
                    f"trial {number}'s step {step} would end after the end of time: {now!r} "
                    f"simulated seconds plus {seconds!r} overflow a float"
                )
            return as_float
    raise ConfigError(
        f"the curve returned {seconds!r} as the duration of trial {number}'s step {step}; "
        "a duration is a finite number of seconds >= 0"
    )


def run_events(
    call: Callable[[dict[str, Any], int, int], tuple[float, float]],
    *,
    space: Mapping[str, Any] | SearchSpace,
    scheduler: ASHA,
    sampler: Sampler,
    direction: str | Direction,
    workers: int,
    max_trials: int | None,
    time_budget: float | None,
) -> tuple[list[FrozenTrial], list[Report], float, Direction]:
    """Simulate; ``call(params, step, number)`` is the curve. Returns (trials, reports in the
    order they were made, simulated duration, direction)."""
    core = new_core(space=space, scheduler=scheduler, sampler=sampler, direction=direction)
    core.replayable = False  # no log: its TrialCreated events need no generator state
    origin = time.time()  # events carry wall-clock time, as a study's do: the start plus virtual seconds
    deadline = math.inf if time_budget is None else time_budget
    # Steps in progress, (due, trial, step, value): reports due at the same instant are taken
    # in trial-number order.
    heap: list[tuple[float, int, int, float]] = []
    params: list[dict[str, Any]] = []  # by trial number: what the curve is called with
    reports: list[Report] = []
    running = 0
    starting = True  # False once the time budget is spent
    report, reported, continue_, inf = core.report, reports.append, Decision.CONTINUE, math.inf
    heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace

    def started(number: int, s: int, now: float) -> tuple[float, int, int, float]:
        """Trial ``number``'s step ``s``, started at ``now``, as a heap entry."""
        value, seconds = call(params[number], s, number)  # its exceptions end the simulation
        if type(value) is not float:
            value = _checked_value(value, number, s)
        # (now is finite and >= 0: a due time below inf means a finite duration, no overflow)
        if type(seconds) is not float or not seconds >= 0.0 or not (due := now + seconds) < inf:
            due = now + _checked_seconds(seconds, number, s, now)  # (raises, or converts)
        return (due, number, s, value)

    def fill(now: float) -> None:
        """Runner.fill: every free slot gets the scheduler's next job, now."""
        nonlocal running
        while running < workers and starting:
            can_start = max_trials is None or core.n_trials < max_trials
            job = core.next_job(can_start=can_start, time=origin + now)
            if job is None:
                return
            running += 1
            n = job.number
            if type(job) is TrialCreated:
                params.append(dict(job.params))  # a copy: the core's is not the curve's
                heappush(heap, started(n, 1, now))
            else:  # promoted: on from its last report
                heappush(heap, started(n, core.step_of(n) + 1, now))

    fill(0.0)
    now = 0.0
    while heap:
        entry = heap[0]
        now, n, s, value = entry
        if starting and now >= deadline:  # the budget is spent first: nothing new from here on
            starting = False
        decision = report(n, s, value)  # (Reported(n, s, value, origin + now), with no log to keep)
        reported(entry)  # (the heap entry is the report's record: its tuple is never changed)
        if decision is continue_:  # (the usual case: one sift of the heap, not two)
            heapreplace(heap, started(n, s + 1, now))
        else:  # PAUSE, STOP or COMPLETE: the slot is free (a pause may be promoted straight back)
            heappop(heap)
            running -= 1
            fill(now)
    core.stop_paused(core.waiting_trials(), origin + now)
    return core.trials(), reports, now, core.direction
