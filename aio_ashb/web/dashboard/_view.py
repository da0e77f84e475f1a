"""What the dashboard shows of one study, folded in event by event (no I/O here).

A :class:`StudyView` is built once from a study's configuration and then fed only the events
it has not seen (``fold``), so a poll costs what changed since the last one, not the whole log.
It keeps the scheduler's core (replayed exactly as a runner would), every trial's curve with
its promotion/pause/stop marks, the best value so far, rung counts, and the worker timeline.

The log has no worker or slot ids, so the timeline's slots are derived: each time a trial starts
running (created, promoted or resumed) it takes the lowest slot that is free at that moment, and
gives it back when it pauses, stops, ends or is interrupted. With ``concurrency=k`` this never
uses more than k slots, but slot *i* is not a particular worker.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from aio_ashb._core import (
    ASHA,
    Checkpointed,
    Core,
    Decision,
    Direction,
    Event,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
)
from aio_ashb._report import StudyStatus, json_safe, status_of, trial_row

#: At most this many points of one curve are sent for the study's chart (a trial's own page
#: gets :data:`TRIAL_POINTS`): the milestones' points are always kept.
CURVE_POINTS = 64
TRIAL_POINTS = 2000


@dataclass(slots=True)
class _Curve:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    marks: list[tuple[str, int, float]] = field(default_factory=list)  # (kind, step, value)
    checkpoints: list[int] = field(default_factory=list)  # the step of every checkpoint taken


@dataclass(slots=True)
class Segment:
    """A stretch of time a trial ran, on a derived slot; ``end`` None while it runs."""

    number: int
    slot: int
    start: float
    end: float | None = None


class _Touched:
    """Keys with the sequence number of their last change, oldest change first, so that the
    keys changed after a given number are read from the end without scanning the rest."""

    def __init__(self) -> None:
        self._seq: dict[int, int] = {}

    def touch(self, key: int, seq: int) -> None:
        self._seq.pop(key, None)
        self._seq[key] = seq

    def last(self, key: int) -> int:
        return self._seq.get(key, 0)

    def since(self, seq: int) -> list[int]:
        out = []
        for key in reversed(self._seq):
            if self._seq[key] <= seq:
                break
            out.append(key)
        out.reverse()
        return out


def finite(v: float) -> float | None:
    """JSON has no NaN or infinity: charts take None as a gap."""
    return v if math.isfinite(v) else None


def thin(steps: list[int], values: list[float], limit: int, keep: set[int]) -> tuple[list[int], list[float]]:
    """At most about ``limit`` points of a curve, evenly spaced, plus its last point and every
    point at a step in ``keep`` (the milestones, where decisions are made)."""
    n = len(steps)
    if n <= limit:
        return list(steps), list(values)
    stride = math.ceil(n / limit)
    idx = [i for i in range(n) if i % stride == 0 or i == n - 1 or steps[i] in keep]
    return [steps[i] for i in idx], [values[i] for i in idx]


class StudyView:
    """The dashboard's state of one study, up to sequence number ``seq`` of its log."""

    def __init__(self, name: str, config: dict[str, Any], created: float, core: Core) -> None:
        self.name = name
        self.config = config
        self.created = created
        self.core = core
        scheduler: ASHA = core.scheduler
        self.bracket_milestones = [list(scheduler.bracket_milestones(b)) for b in range(scheduler.n_brackets)]
        self.milestones = sorted({m for ms in self.bracket_milestones for m in ms})
        self._milestone_set = set(self.milestones)
        self.param_names = list(core.space)
        self.seq = 0
        self.reports = 0
        self.last_time = created
        self._curves: dict[int, _Curve] = {}
        self._sign = 1.0 if core.direction is Direction.MINIMIZE else -1.0
        self._best = math.inf
        self.best_times: list[float] = []
        self.best_values: list[float] = []
        self._promoted: dict[tuple[int, int], int] = {}  # (bracket, milestone promoted from) -> count
        self._stopped: dict[tuple[int, int], int] = {}  # (bracket, highest milestone) -> count
        self.segments: list[Segment] = []
        self._open: dict[int, int] = {}  # trial number -> index of its running segment
        self._free: list[int] = []  # free slots (a heap: the lowest is taken first)
        self.slots = 0
        self._trial_segments: dict[int, list[int]] = {}
        self._bracket: dict[int, int] = {}
        self._status: tuple[int, StudyStatus] | None = None
        self._rows: dict[int, tuple[int, dict[str, Any]]] = {}  # number -> (its change seq, row)
        self._trials = _Touched()
        self._segs = _Touched()

    # ------------------------------------------------------------------ folding events in
    def fold(self, events: list[Event], last_seq: int) -> None:
        """Apply the log's events after ``self.seq`` up to ``last_seq`` (sequence numbers may
        have gaps, so every event of the batch is tagged with ``last_seq``)."""
        for ev in events:
            self._apply(ev, last_seq)
        self.seq = last_seq

    def _apply(self, ev: Event, seq: int) -> None:
        decision = self.core.apply(ev)  # first: an event the core refuses changes nothing here
        if ev.time > self.last_time:
            self.last_time = ev.time
        kind = type(ev)  # exact types (the events are final): cheaper than isinstance chains
        if kind is Reported:
            assert isinstance(ev, Reported)
            number = ev.number
            c = self._curves[number]
            c.steps.append(ev.step)
            c.values.append(ev.value)
            self.reports += 1
            if self._sign * ev.value < self._best and math.isfinite(ev.value):  # as plots: never NaN, inf
                self._best = self._sign * ev.value
                self.best_times.append(ev.time - self.created)
                self.best_values.append(ev.value)
            if decision is Decision.PAUSE:
                c.marks.append(("paused", ev.step, ev.value))
            if decision is not Decision.CONTINUE:  # paused, stopped or complete: it stops running
                self._stop(number, ev.time, seq)
        elif kind is TrialCreated:
            assert isinstance(ev, TrialCreated)
            number = ev.number
            self._curves[number] = _Curve()
            self._bracket[number] = ev.bracket
            self._start(number, ev.time, seq)
        elif kind is TrialPromoted:
            assert isinstance(ev, TrialPromoted)
            number = ev.number
            c = self._curves[number]
            bracket = self._bracket[number]
            key = (bracket, self.bracket_milestones[bracket][ev.rung - 1])
            self._promoted[key] = self._promoted.get(key, 0) + 1
            if c.steps:
                c.marks.append(("promoted", c.steps[-1], c.values[-1]))
            self._start(number, ev.time, seq)
        elif kind is TrialResumed or kind is TrialInterrupted:
            assert isinstance(ev, (TrialResumed, TrialInterrupted))
            number = ev.number
            if kind is TrialResumed:
                self._start(number, ev.time, seq)
            else:
                self._stop(number, ev.time, seq)
        elif kind is TrialEnded:
            assert isinstance(ev, TrialEnded)
            number = ev.number
            self._stop(number, ev.time, seq)
            c = self._curves[number]
            if ev.state in (TrialState.STOPPED, TrialState.FAILED) and c.steps:
                c.marks.append((ev.state.value, c.steps[-1], c.values[-1]))
            if ev.state is TrialState.STOPPED:
                # The highest milestone it reached (the core's FrozenTrial.resource, without
                # building a FrozenTrial for each of the thousands stopped at a study's end).
                bracket = self._bracket[number]
                ms = self.bracket_milestones[bracket]
                reached = bisect.bisect_right(ms, c.steps[-1]) if c.steps else 0
                key = (bracket, ms[reached - 1] if reached else 0)
                self._stopped[key] = self._stopped.get(key, 0) + 1
        elif kind is Checkpointed:
            assert isinstance(ev, Checkpointed)
            number = ev.number
            self._curves[number].checkpoints.append(ev.step)
        else:  # Enqueued: no trial number, it only changes the core's queue
            return
        self._trials.touch(number, seq)

    def _start(self, number: int, t: float, seq: int) -> None:
        if number in self._open:
            return
        if self._free:
            slot = heapq.heappop(self._free)
        else:
            slot, self.slots = self.slots, self.slots + 1
        self._open[number] = len(self.segments)
        self._trial_segments.setdefault(number, []).append(len(self.segments))
        self._segs.touch(len(self.segments), seq)
        self.segments.append(Segment(number, slot, t - self.created))

    def _stop(self, number: int, t: float, seq: int) -> None:
        i = self._open.pop(number, None)
        if i is None:
            return
        seg = self.segments[i]
        seg.end = t - self.created
        heapq.heappush(self._free, seg.slot)
        self._segs.touch(i, seq)

    # ------------------------------------------------------------------ what is sent
    def status(self) -> StudyStatus:
        """The core's status, computed once per change (it scans the paused trials), not once
        per poll."""
        if self._status is None or self._status[0] != self.seq:
            self._status = (self.seq, status_of(self.name, self.core, reports=self.reports))
        return self._status[1]

    def summary(self) -> dict[str, Any]:
        """The study in one line of the studies page."""
        st = self.status()
        best = st.best
        return {
            "name": self.name,
            "direction": self.core.direction.value,
            "trials": st.trials,
            "running": st.running,
            "reports": self.reports,
            "best": None if best is None else finite(best.rung_values[best.resource]),
            "best_trial": None if best is None else best.number,
            "created": self.created,
            "last_event": self.last_time,
            "seq": self.seq,
        }

    def rungs(self) -> list[dict[str, Any]]:
        st = self.status()
        many = len(self.bracket_milestones) > 1
        return [
            {
                "label": f"b{r.bracket} r={r.milestone}" if many else f"r={r.milestone}",
                "bracket": r.bracket,
                "milestone": r.milestone,
                "reached": r.results,
                "promoted": self._promoted.get((r.bracket, r.milestone), 0),
                "paused": r.waiting,
                "stopped": self._stopped.get((r.bracket, r.milestone), 0),
            }
            for r in st.rungs
        ]

    def _level(self, resource: int) -> int:
        return self.milestones.index(resource) if resource in self._milestone_set else -1

    def trial_row(self, number: int, points: int = CURVE_POINTS) -> dict[str, Any]:
        changed = self._trials.last(number)
        cached = self._rows.get(number)
        if points == CURVE_POINTS and cached is not None and cached[0] == changed:
            return cached[1]  # unchanged since built: another page opening reuses it
        t = self.core.frozen(number)
        row: dict[str, Any] = json_safe(trial_row(t, self.param_names))
        c = self._curves.get(number, _Curve())
        steps, values = thin(c.steps, c.values, points, self._milestone_set)
        row["level"] = self._level(t.resource)
        row["curve"] = [steps, [finite(v) for v in values]]
        row["marks"] = [[k, s, finite(v)] for k, s, v in c.marks]
        if points == CURVE_POINTS:
            self._rows[number] = (changed, row)
        return row

    def update(self, since: int) -> dict[str, Any]:
        """Everything a study page needs that changed after sequence number ``since`` (0: all).
        Small parts (status, rungs, best so far) are always sent whole."""
        if since > self.seq:  # a client of an older file (replaced, or study recreated)
            since = 0
        segs = self._segs.since(since)
        best_t, best_v = list(self.best_times), list(self.best_values)
        elapsed = self.last_time - self.created
        if best_t and best_t[-1] < elapsed:  # the line spans the whole run
            best_t.append(elapsed)
            best_v.append(best_v[-1])
        return {
            "name": self.name,
            "seq": self.seq,
            "full": since == 0,
            "summary": self.summary(),
            "status": json_safe(self.status().to_dict()),
            "milestones": self.milestones,
            "param_names": self.param_names,
            "slots": self.slots,
            "best": {"t": best_t, "value": [finite(v) for v in best_v]},
            "rungs": self.rungs(),
            "trials": [self.trial_row(n) for n in self._trials.since(since)],
            "segments": [self._segment(i) for i in segs],
        }

    def _segment(self, i: int) -> list[Any]:
        s = self.segments[i]
        return [i, s.number, s.slot, s.start, s.end]

    def trial(self, number: int) -> dict[str, Any]:
        """One trial's page: its row, the longer curve, the full error, every running stretch,
        the steps of the checkpoints it took and of the one kept (``None`` once dropped).
        Steps only: payloads are never read."""
        t = self.core.frozen(number)
        row = self.trial_row(number, TRIAL_POINTS)
        return {
            **row,
            "params": json_safe(t.params),
            "rung_values": {str(k): json_safe(v) for k, v in t.rung_values.items()},
            "checkpoint_step": t.checkpoint_step,
            "checkpoints": list(self._curves[number].checkpoints) if number in self._curves else [],
            "error": t.error,
            "milestones": self.bracket_milestones[t.bracket],
            "segments": [self._segment(i) for i in self._trial_segments.get(number, [])],
            "seq": self.seq,
        }
