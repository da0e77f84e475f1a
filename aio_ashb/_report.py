"""What a study looks like now, and what happened in it: plain data for the CLI, the progress
display, the plots and web backends. No I/O here: callers pass the core's state and the events
they read."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aio_ashb._core import Core, Direction, Event, FrozenTrial, Reported, TrialCreated, TrialState

__all__ = ["RungStatus", "StudyStatus", "TrialCurve", "curves_from_events", "status_of", "trial_row"]


@dataclass(frozen=True, slots=True)
class RungStatus:
    """One rung: its milestone, the results recorded there, the paused trials waiting in it."""

    bracket: int
    rung: int
    milestone: int
    results: int
    waiting: int


@dataclass(frozen=True, slots=True)
class StudyStatus:
    """A snapshot of a study: trials by state, rung occupancy per bracket, the best trial."""

    name: str
    direction: Direction
    trials: int
    states: dict[TrialState, int]
    rungs: list[RungStatus]
    best: FrozenTrial | None
    reports: int = 0
    elapsed: float | None = None

    @property
    def running(self) -> int:
        return self.states.get(TrialState.RUNNING, 0)

    @property
    def paused(self) -> int:
        return self.states.get(TrialState.PAUSED, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``aio-ashb status --format json`` and web backends return."""
        best = None
        if self.best is not None:
            best = {
                "number": self.best.number,
                "value": _json_float(self.best.rung_values[self.best.resource]),
                "resource": self.best.resource,
                "params": self.best.params,
            }
        return {
            "name": self.name,
            "direction": self.direction.value,
            "trials": self.trials,
            "states": {s.value: self.states.get(s, 0) for s in TrialState},
            "rungs": [
                {
                    "bracket": r.bracket,
                    "rung": r.rung,
                    "milestone": r.milestone,
                    "results": r.results,
                    "waiting": r.waiting,
                }
                for r in self.rungs
            ],
            "best": best,
            "reports": self.reports,
            "elapsed": self.elapsed,
        }


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN or infinity


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float, however deep in dicts and lists, as a string ("nan",
    "inf", "-inf"): JSON has neither, and reported values may be either."""
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def status_of(name: str, core: Core, *, reports: int = 0, elapsed: float | None = None) -> StudyStatus:
    waiting: dict[tuple[int, int], int] = {}
    for n in core.waiting_trials():
        milestone, _ = core.waiting_position(n)
        key = (core.frozen(n).bracket, milestone)
        waiting[key] = waiting.get(key, 0) + 1
    rungs = [
        RungStatus(b, k, m, size, waiting.get((b, m), 0))
        for b, bracket in enumerate(core.rung_sizes())
        for k, (m, size) in enumerate(bracket)
    ]
    return StudyStatus(
        name=name,
        direction=core.direction,
        trials=core.n_trials,
        states=dict(core.counts),
        rungs=rungs,
        best=core.best(),
        reports=reports,
        elapsed=elapsed,
    )


@dataclass(slots=True)
class TrialCurve:
    """Every report of one trial, in order: steps, values and wall-clock times (Unix seconds)."""

    number: int
    bracket: int
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def curves_from_events(events: Iterable[Event]) -> dict[int, TrialCurve]:
    """The learning curve of every trial, from the study's event log."""
    curves: dict[int, TrialCurve] = {}
    for ev in events:
        if isinstance(ev, Reported):
            c = curves[ev.number]
            c.steps.append(ev.step)
            c.values.append(ev.value)
            c.times.append(ev.time)
        elif isinstance(ev, TrialCreated):
            curves[ev.number] = TrialCurve(ev.number, ev.bracket)
    return curves


def trial_row(t: FrozenTrial, param_names: Sequence[str]) -> dict[str, Any]:
    """One trial as a flat row (table, CSV, JSON): its best-known value is the one at its highest
    milestone, the value the scheduler ranks it by."""
    value = t.rung_values.get(t.resource) if t.resource else None
    return row_of(
        t.number, t.state, t.bracket, t.step, t.value, t.resource, value, t.params, t.error, param_names
    )


def row_of(
    number: int,
    state: TrialState,
    bracket: int,
    step: int,
    last_value: float | None,
    resource: int,
    value: float | None,
    params: Mapping[str, Any],
    error: str | None,
    param_names: Sequence[str],
) -> dict[str, Any]:
    """:func:`trial_row` from its parts (``Core.table`` gives them for many trials at once)."""
    row: dict[str, Any] = {
        "number": number,
        "state": state.value,
        "bracket": bracket,
        "resource": resource,
        "value": value,
        "step": step,
        "last_value": last_value,
    }
    for p in param_names:
        row[f"params.{p}"] = params.get(p)
    row["error"] = error.strip().splitlines()[-1] if error else None
    return row
