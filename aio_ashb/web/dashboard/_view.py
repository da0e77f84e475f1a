"""What the dashboard shows of one study, folded in event by event (no I/O here).

A :class:`StudyView` is built once from a study's configuration and then fed only the events
it has not seen (``fold``), so a poll costs what changed since the last one, not the whole log.
It keeps the scheduler's core (replayed exactly as a runner would), every trial's curve with
its promotion/pause/stop marks, the best value so far, rung counts, and the worker timeline.

The log has no worker or slot ids, so the timeline's slots are derived: each time a trial starts
running (created, promoted or resumed) it takes the lowest slot that is free at that moment, and
gives it back when it pauses, stops, ends or is interrupted. With ``concurrency=k`` this never
uses more than k slots, but slot *i* is not a particular worker.

A large study's view starts from the snapshot its writer stored (:meth:`StudyView.restored`):
the core comes from it, and the per-trial history the core does not keep (curves, marks,
checkpoint steps, running stretches) is read trial by trial from the log when it is shown
(:func:`trial_history`): the trials whose curves are drawn, the trials of the timeline's window,
a trial's page. The report count and the best-so-far line come from one query the dashboard runs
in the background (:meth:`StudyView.set_reports_before`).
"""

from __future__ import annotations

import bisect
import heapq
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
from aio_ashb._report import StudyStatus, json_safe, row_of, status_of
from aio_ashb.web.dashboard._table import order_rows

#: At most this many points of one curve are sent for the study's chart (a trial's own page
#: gets :data:`TRIAL_POINTS`): the milestones' points are always kept.
CURVE_POINTS = 64
TRIAL_POINTS = 2000
#: A study page's full update carries the curves of at most this many trials: those the page
#: draws (the furthest first, then the newest: the page's own rule); other rows come without.
CURVE_TRIALS = 500


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


def trial_history(
    events: list[Event], milestones: list[int], promotion: bool, stopped: bool
) -> tuple[_Curve, list[tuple[float, float | None]]]:
    """One trial's curve (with its decision marks and checkpoint steps) and the stretches of
    time it ran, from its own events and its final state (``stopped``). What the core decided is
    implied by them: a report that crosses a milestone completes the trial at the top one and,
    in promotion mode, pauses it below; a failure, and a stop in promotion mode, end with a
    ``TrialEnded``; a stop in stopping mode ends the trial at its last report."""
    c = _Curve()
    runs: list[tuple[float, float | None]] = []
    start: float | None = None
    last_report = 0.0
    crossed = 0  # milestones crossed so far
    top = len(milestones) - 1
    for ev in events:
        kind = type(ev)
        if kind is Reported:
            assert isinstance(ev, Reported)
            c.steps.append(ev.step)
            c.values.append(ev.value)
            last_report = ev.time
            if crossed <= top and ev.step >= milestones[crossed]:
                while crossed <= top and ev.step >= milestones[crossed]:
                    crossed += 1
                if crossed > top or promotion:
                    if crossed <= top:
                        c.marks.append(("paused", ev.step, ev.value))
                    if start is not None:
                        runs.append((start, ev.time))
                        start = None
        elif kind is TrialCreated or kind is TrialPromoted or kind is TrialResumed:
            if kind is TrialPromoted and c.steps:
                c.marks.append(("promoted", c.steps[-1], c.values[-1]))
            if start is None:
                start = ev.time
        elif kind is TrialInterrupted or kind is TrialEnded:
            if kind is TrialEnded:
                assert isinstance(ev, TrialEnded)
                if ev.state in (TrialState.STOPPED, TrialState.FAILED) and c.steps:
                    c.marks.append((ev.state.value, c.steps[-1], c.values[-1]))
            if start is not None:
                runs.append((start, ev.time))
                start = None
        elif kind is Checkpointed:
            assert isinstance(ev, Checkpointed)
            c.checkpoints.append(ev.step)
    if stopped and c.steps and not (c.marks and c.marks[-1][0] == "stopped"):
        c.marks.append(("stopped", c.steps[-1], c.values[-1]))
        if start is not None:
            runs.append((start, last_report))
            start = None
    if start is not None:
        runs.append((start, None))
    return c, runs


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
        self._promoted_before: dict[tuple[int, int], int] = {}  # the same, before a restored view's snapshot
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
        # Restored from a snapshot (see the module docstring): trials below this number have
        # their history (curve, marks, stretches) loaded only on demand, and the reports and the
        # best-so-far line before sequence number ``restored_seq`` arrive later (None until then).
        self.restored_trials = 0
        self.restored_seq = 0
        self.reports_known = True  # False while a restored view waits for set_reports_before
        self._order: tuple[Any, list[int]] | None = None  # the table's last sort (see table)
        self.instance = secrets.token_hex(6)  # names this view to clients (see update)
        self._texts: list[str] = []  # each trial's params as searchable text
        self._columns: tuple[int, list[tuple[Any, ...]]] | None = None  # Core.table, at a seq

    @classmethod
    def restored(
        cls, name: str, config: dict[str, Any], created: float, core: Core, seq: int, last_time: float
    ) -> StudyView:
        """A view of ``core``, restored from the snapshot taken at sequence number ``seq``, whose
        last event was written at ``last_time``."""
        view = cls(name, config, created, core)
        view.seq = view.restored_seq = seq
        view.restored_trials = core.n_trials
        view.reports_known = False
        # Rung counts of the past, from the core's columns: a stopped trial counts at the
        # highest milestone it crossed; in promotion mode a trial granted rung g was promoted
        # from each of its bracket's first g milestones.
        brackets, crossed, granted = core.progress_columns()
        ms = view.bracket_milestones
        stopped = core.numbers_in(TrialState.STOPPED)
        for (b, k), count in Counter((brackets[n], crossed[n]) for n in stopped).items():
            view._stopped[(b, ms[b][k - 1] if k else 0)] = count
        if core.scheduler.mode == "promotion":
            # An estimate until the log's promotions arrive (set_reports_before): a trial granted
            # rung g was promoted from each of its first g milestones, unless a report jumped
            # past some of them (then it paused above them without a promotion).
            for (b, g), count in Counter(zip(brackets, granted, strict=True)).items():
                for j in range(g):
                    key = (b, ms[b][j])
                    view._promoted_before[key] = view._promoted_before.get(key, 0) + count
        view.last_time = max(last_time, created)
        return view

    def missing(self, numbers: Any) -> list[int]:
        """Of ``numbers``, the trials whose history is still to be loaded (:meth:`preload`)."""
        return [n for n in numbers if n < self.restored_trials and n not in self._curves]

    def preload(self, histories: dict[int, list[Event]], *, timeline: bool = False) -> None:
        """Take the history of trials restored from the snapshot: their events up to
        ``restored_seq`` (:func:`trial_history`). With ``timeline``, their running stretches
        join the timeline (the window a restored view shows of the time before its snapshot)."""
        promotion = self.core.scheduler.mode == "promotion"
        stretches: list[tuple[float, int, float | None]] = []  # (start, trial, end)
        for number, events in histories.items():
            if number in self._curves or number >= self.restored_trials:
                continue
            t = self.core.frozen(number)
            bracket = t.bracket
            stopped = t.state is TrialState.STOPPED
            curve, runs = trial_history(events, self.bracket_milestones[bracket], promotion, stopped)
            self._curves[number] = curve
            self._bracket[number] = bracket
            self._rows.pop(number, None)  # a row built before had no curve
            if timeline:
                stretches += [(start, number, end) for start, end in runs]
        # A sweep in time, as folding the log meets them: before a stretch starts, every one
        # that ended by then gives its slot back, so stretches that overlap never share a slot
        # (and one that starts and ends at the same instant still opens before it closes).
        ends: list[tuple[float, int]] = []
        for start, number, end in sorted(stretches, key=lambda r: (r[0], r[1])):
            while ends and ends[0][0] <= start:
                when, ended = heapq.heappop(ends)
                self._stop(ended, when, self.restored_seq)
            self._start(number, start, self.restored_seq)
            if end is not None:
                heapq.heappush(ends, (end, number))
        while ends:
            when, ended = heapq.heappop(ends)
            self._stop(ended, when, self.restored_seq)

    def set_reports_before(
        self, count: int, best: list[tuple[float, float]], promoted: list[tuple[int, int]]
    ) -> None:
        """The number of reports up to ``restored_seq``, (time, value) of every report there
        that improved on the best before it, and (trial, rung) of every promotion there: with
        them the count, the best-so-far line and the promotion counts are exact. The
        improvements folded in since the snapshot were found against an empty past: those that
        do not beat the earlier best drop out."""
        brackets = self.core.progress_columns()[0]
        exact: dict[tuple[int, int], int] = {}
        for number, rung in promoted:
            b = brackets[number]
            key = (b, self.bracket_milestones[b][rung - 1])
            exact[key] = exact.get(key, 0) + 1
        self._promoted_before = exact
        self.reports += count
        sign = self._sign
        running = sign * best[-1][1] if best else math.inf
        times = [t - self.created for t, _ in best]
        values = [v for _, v in best]
        for t, v in zip(self.best_times, self.best_values, strict=True):
            if sign * v < running:
                running = sign * v
                times.append(t)
                values.append(v)
        self._best = running
        self.best_times, self.best_values = times, values
        self.reports_known = True
        self._status = None  # (it carries the report count)

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
            elif decision is Decision.STOP:  # stopping mode: no TrialEnded follows
                c.marks.append(("stopped", ev.step, ev.value))
                self._count_stopped(number, ev.step)
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
                self._count_stopped(number, c.steps[-1] if c.steps else 0)
        elif kind is Checkpointed:
            assert isinstance(ev, Checkpointed)
            number = ev.number
            self._curves[number].checkpoints.append(ev.step)
        else:  # Enqueued: no trial number, it only changes the core's queue
            return
        self._trials.touch(number, seq)

    def _count_stopped(self, number: int, step: int) -> None:
        """Count a stopped trial at the highest milestone it reached (the core's
        FrozenTrial.resource, without building a FrozenTrial for each of the thousands stopped
        at a promotion-mode study's end)."""
        bracket = self._bracket[number]
        ms = self.bracket_milestones[bracket]
        reached = bisect.bisect_right(ms, step)
        key = (bracket, ms[reached - 1] if reached else 0)
        self._stopped[key] = self._stopped.get(key, 0) + 1

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
            "reports": self.reports if self.reports_known else None,  # None: still counting
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
                "promoted": self._promoted.get((r.bracket, r.milestone), 0)
                + self._promoted_before.get((r.bracket, r.milestone), 0),
                "paused": r.waiting,
                "stopped": self._stopped.get((r.bracket, r.milestone), 0),
            }
            for r in st.rungs
        ]

    def _level(self, resource: int) -> int:
        return self.milestones.index(resource) if resource in self._milestone_set else -1

    def trial_row(self, number: int, points: int = CURVE_POINTS) -> dict[str, Any]:
        return self.trial_rows([number], points)[0]

    def trial_rows(
        self, numbers: list[int], points: int = CURVE_POINTS, drawn: set[int] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of the trial table (``_report.trial_row``'s columns, with the curve thinned to
        ``points`` and the decision marks), built from the core's columns: a study page's first
        update holds every trial. Rows are cached until their trial changes. Trials not in
        ``drawn`` (when given) come without their curve and marks."""
        out: list[dict[str, Any]] = []
        build: list[int] = []
        cache, last = self._rows, self._trials.last
        for n in numbers:
            cached = cache.get(n) if points == CURVE_POINTS else None
            if cached is not None and cached[0] == last(n):
                full = cached[1]
                out.append(full if drawn is None or n in drawn else {**full, "curve": [[], []], "marks": []})
            else:
                out.append({})
                build.append(len(out) - 1)
        names, keep, empty = self.param_names, self._milestone_set, _Curve()
        for i, (state, bracket, step, value, resource, at_resource, params, error) in zip(
            build, self.core.table([numbers[i] for i in build]), strict=True
        ):
            n = numbers[i]
            row = json_safe(
                row_of(n, state, bracket, step, value, resource, at_resource, params, error, names)
            )
            row["level"] = self._level(resource)
            if drawn is not None and n not in drawn:
                row["curve"], row["marks"] = [[], []], []
            else:
                c = self._curves.get(n, empty)
                steps, values = thin(c.steps, c.values, points, keep)
                row["curve"] = [steps, [finite(v) for v in values]]
                row["marks"] = [[k, s, finite(v)] for k, s, v in c.marks]
                if points == CURVE_POINTS:
                    cache[n] = (last(n), row)
            out[i] = row
        return out

    def table(
        self,
        *,
        sort: str = "number",
        descending: bool = False,
        state: str | None = None,
        resource: int | None = None,
        search: str = "",
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """A page of the trial table: the trials matching the filters (``search``: words found
        in the ``name=value`` text of their params), sorted by a column, blanks (None, NaN) last
        either way and ties by number; rows without curves. The order is kept until the study
        changes, so paging and polls of a large study sort once."""
        key = (sort, descending, state, resource, search, self.seq)
        if self._order is None or self._order[0] != key:
            self._order = (key, self._sorted(sort, descending, state, resource, search))
        order = self._order[1]
        rows = self.trial_rows(order[offset : offset + limit], drawn=set())
        return {"seq": self.seq, "total": len(order), "offset": offset, "rows": rows}

    def _sorted(
        self, sort: str, descending: bool, state: str | None, resource: int | None, search: str
    ) -> list[int]:
        if self._columns is None or self._columns[0] != self.seq:  # the table's tuples, per change
            self._columns = (self.seq, self.core.table(range(self.core.n_trials)))
        cols = self._columns[1]
        words = search.lower().split()
        texts = self._param_texts(cols) if words else []
        return order_rows(cols, sort, descending, state, resource, words, texts)

    def _param_texts(self, cols: list[tuple[Any, ...]]) -> list[str]:
        """Each trial's params as lower-case ``name=value`` text (params never change: cached)."""
        texts = self._texts
        names = self.param_names
        for i in range(len(texts), len(cols)):
            params = cols[i][6]
            texts.append(" ".join(f"{p}={params.get(p)}" for p in names).lower())
        return texts

    def drawn(self) -> list[int]:
        """The trials whose curves a study page draws: at most :data:`CURVE_TRIALS`, those at
        the highest milestone first, then the newest (the page's own rule)."""
        brackets, crossed, _ = self.core.progress_columns()
        n = len(crossed)
        if n <= CURVE_TRIALS:
            return list(range(n))
        # By numpy over the columns: a sort of 100,000 trials in Python took 0.1 s.
        width = max(len(ms) for ms in self.bracket_milestones)
        levels = np.full((len(self.bracket_milestones), width + 1), -1)
        for b, ms in enumerate(self.bracket_milestones):
            levels[b, 1 : len(ms) + 1] = [self._level(m) for m in ms]
        level = levels[np.asarray(brackets), np.asarray(crossed)]
        numbers = np.arange(n)
        order = np.lexsort((-numbers, -level))[:CURVE_TRIALS]
        return [int(i) for i in order]

    def update(self, since: int, view: str | None = None) -> dict[str, Any]:
        """Everything a study page needs that changed after sequence number ``since`` (0: all).
        Small parts (status, rungs, best so far) are always sent whole. ``view`` is the
        ``view`` of the answer ``since`` came from: segment ids are this view's own, so a
        client of another one (the dashboard restarted, or reopened the study from a newer
        snapshot) gets everything."""
        if since > self.seq or since < self.restored_seq or (view is not None and view != self.instance):
            # A client of an older file (replaced, or study recreated), of a time before the
            # snapshot this view started from (which it knows no changes of), or of another
            # view: everything.
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
            "view": self.instance,
            "full": since == 0,
            "summary": self.summary(),
            "status": json_safe(self.status().to_dict()),
            "milestones": self.milestones,
            "param_names": self.param_names,
            "slots": self.slots,
            "best": {"t": best_t, "value": [finite(v) for v in best_v]},
            "rungs": self.rungs(),
            # The rows whose curves the page draws, or those changed: the table's rows come
            # from :meth:`table`, a page at a time.
            "trials": self.trial_rows(self.drawn() if since == 0 else self._trials.since(since)),
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
