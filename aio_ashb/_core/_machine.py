"""The ASHA / asynchronous Hyperband state machine: events in, decisions out, no I/O.

Modelled on h11's state machine: every change goes through :meth:`Core.apply`, an illegal event
raises and leaves the state unchanged, and the choices the scheduler makes (start a trial,
promote one, resume one) are themselves events returned by :meth:`Core.next_job`, so the stored
log replays into an identical core.

Each rung (``_rung.Rung``) keeps its results split into the best ``floor(n / eta)`` and the
rest, in two heaps, plus a heap of the paused trials waiting there. A report at a milestone costs
O(log n) (see ``_rung``); a report between milestones, most of them, a few list look-ups; the
promotion test of the paper's ``get_job`` ("is the best
unpromoted trial among the top floor(n/eta) of the rung?") is one comparison per rung, and rungs
that did not change since they were last found settled are skipped. Nothing scans a rung or the
trial list on the hot path.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from aio_ashb._core._events import (
    Checkpointed,
    Decision,
    Direction,
    Enqueued,
    Event,
    Job,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
    pack_rng_state,
    unpack_rng_state,
)
from aio_ashb._core._frozen import FrozenTrial
from aio_ashb._core._history import History
from aio_ashb._core._rung import Key, Rung, heapify_max, heapreplace_max
from aio_ashb._core._sampler import LearningSampler, RandomSampler, Sampler
from aio_ashb._core._scheduler import ASHA
from aio_ashb._core._space import SearchSpace
from aio_ashb._exceptions import ReportError, StateError

# Key = (signed value, trial number): lower is better. The value is negated when maximizing, and
# NaN and +-inf become +inf, so they rank worst. The trial number breaks ties, so every key is
# unique and every order deterministic. Two-tuples of numbers compare fast and are not tracked
# by the garbage collector.
_INF = math.inf

_RUNNING, _PAUSED, _INTERRUPTED = TrialState.RUNNING, TrialState.PAUSED, TrialState.INTERRUPTED
_COMPLETE, _STOPPED = TrialState.COMPLETE, TrialState.STOPPED
_CONTINUE, _PAUSE, _STOP, _DONE = Decision.CONTINUE, Decision.PAUSE, Decision.STOP, Decision.COMPLETE
_isfinite = math.isfinite


def check_value(value: object) -> float:
    """Return ``value`` as a float, or raise ReportError naming it (None, str, bool...)."""
    if type(value) is float:  # the common case, first
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise ReportError(f"a reported value must be a real number, got {value!r}")


def check_step(step: object) -> int:
    if isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step >= 1:
        return int(step)
    raise ReportError(f"step must be an integer >= 1, got {step!r}")


class Core:
    """The scheduler state of one study.

    Construct it from the study's configuration, then feed it events with :meth:`apply` (a
    report returns its :class:`Decision`) and ask it for work with :meth:`next_job`.
    """

    def __init__(
        self,
        space: SearchSpace,
        scheduler: ASHA,
        sampler: Sampler,
        direction: Direction = Direction.MINIMIZE,
    ) -> None:
        self.space = space
        self.scheduler = scheduler
        self.sampler = sampler
        self.direction = direction
        self.rng = np.random.default_rng(sampler.seed)
        # False for a core whose events are never replayed (simulate()'s event engine): its
        # TrialCreated events carry no generator state (numpy builds it anew on each read, a
        # third of the cost of creating a trial).
        self.replayable = True
        # A learning sampler sees the study through a History the handlers keep up to date;
        # for random search there is none, and the hot paths skip it with one test.
        self._learner = sampler if isinstance(sampler, LearningSampler) else None
        # RandomSampler.sample is space.sample, whose params are valid by construction: the
        # hot path calls it directly and skips the validation.
        self._plain_random = type(sampler) is RandomSampler
        self.history = History(space) if self._learner is not None else None
        self.unpromotable: list[int] = []  # paused trials found hopeless (limit_results, _hope)
        self._sign = 1.0 if direction is Direction.MINIMIZE else -1.0
        self._eta = scheduler.reduction_factor
        self._promotion = scheduler.mode == "promotion"
        self._milestones = [scheduler.bracket_milestones(s) for s in range(scheduler.n_brackets)]
        self._rungs = [[Rung(m, self._eta, k) for k, m in enumerate(ms)] for ms in self._milestones]
        # Per bracket, what a report at a milestone needs, in one lookup: milestones, rungs and
        # the index of the top one.
        self._geometry = [
            (ms, rungs, len(ms) - 1) for ms, rungs in zip(self._milestones, self._rungs, strict=True)
        ]
        # get_job's scan order, flattened once: brackets in order, in each the rungs that can
        # promote (all but the top one) from the top down.
        self._scan = [rungs[k] for rungs in self._rungs for k in range(len(rungs) - 2, -1, -1)]
        # The same floats as numpy's cumsum, in a list: bisect on it gives searchsorted's
        # answer (side="right") for a scalar without numpy's per-call cost.
        self._cum_probs: list[float] = np.cumsum(scheduler.bracket_probabilities()).tolist()
        self._multi_bracket = scheduler.n_brackets > 1
        # Per-trial state, one list per field, indexed by trial number. Columns rather than an
        # object per trial: 100,000 small objects would make every full garbage collection walk
        # them all, while lists of numbers, tuples and shared enums cost it almost nothing.
        self._bracket: list[int] = []
        self._params: list[dict[str, Any]] = []
        self._state: list[TrialState] = []
        self._step: list[int] = []
        self._value: list[float | None] = []
        # The first milestone not crossed yet (while there is one): a report below it is
        # answered with one comparison, without looking up the bracket's milestones. Its index
        # in the bracket is len(_rung_values[n]), the number of milestones crossed.
        self._next_at: list[int] = []
        self._granted: list[int] = []  # promotion mode: the rung it may run to
        self._waiting: list[Key | None] = []  # its key in the rung it waits in, while paused
        self._rung_values: list[tuple[float, ...]] = []  # the value recorded at each rung crossed
        self._error: dict[int, str] = {}
        self._checkpoint_step: dict[int, int] = {}
        self._queue: deque[dict[str, Any]] = deque()
        # Numbers of the INTERRUPTED trials, sorted (a plain list: there are at most as many as
        # ran at once, and its truth test on the get_job path is free).
        self._interrupted: list[int] = []
        # Keyed by the state's string value: Enum.__hash__ is Python code, str hashes are cached.
        self._counts = {state.value: 0 for state in TrialState}

    # ------------------------------------------------------------------ applying events
    def apply(self, event: Event) -> Decision | None:
        """Apply one event; a :class:`Reported` event returns the scheduler's decision.

        An event that the current state forbids raises (StateError, ReportError) and changes
        nothing.
        """
        if type(event) is not Reported:
            try:
                handler = _HANDLERS[type(event)]
            except KeyError:
                raise StateError(f"not an event: {event!r}") from None
            return handler(self, event)
        return self.report(event.number, event.step, event.value)

    def report(self, n: int, step: int, value: float) -> Decision:
        """What applying ``Reported(n, step, value, time)`` does, without building the event:
        for a caller that keeps no log (``simulate()``'s event engine). Returns the decision."""
        # The hot path. The checks are _state_of's and check_step's, inlined and ordered so
        # that a well-formed report pays for a few type and range tests only.
        try:
            state = self._state[n] if type(n) is int and n >= 0 else None
        except IndexError:
            state = None
        if state is not _RUNNING:
            if state is None:
                raise StateError(f"there is no trial {n!r}")
            raise StateError(f"trial {n} is {state.value}; only a running trial reports")
        if type(step) is not int:
            step = check_step(step)  # numpy integers are fine; anything else raises
        last = self._step[n]
        if step <= last:  # also catches step < 1, as last >= 0
            check_step(step)
            raise ReportError(f"trial {n} reported step {step!r} after step {last}; steps must increase")
        if type(value) is not float:
            value = check_value(value)
        self._step[n] = step
        self._value[n] = value
        if step < self._next_at[n]:
            return _CONTINUE
        return self._at_milestone(n, step, value)

    def replay(self, events: Sequence[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def next_job(self, *, can_start: bool = True, time: float = 0.0) -> Job | None:
        """Decide what a free worker slot does next, apply that decision and return it.

        In order: resume an INTERRUPTED trial (lowest number first); else promote (the paper's
        ``get_job``: brackets in order, in each the rungs from the top down, the best paused
        trial among the top ``floor(n / eta)`` of its rung); else, if ``can_start``, create a
        trial (enqueued params first, then the sampler; the bracket is drawn from the study
        generator). ``None`` means there is nothing to do now.
        """
        if self._interrupted:
            resumed = TrialResumed(self._interrupted[0], time)
            self._on_resumed(resumed)
            return resumed
        if self._promotion:
            for rung in self._scan:
                if rung.settled:
                    continue
                best = rung.promotable()
                if best is not None:
                    promoted = TrialPromoted(best[1], rung.to, time)
                    self._promote(best[1], rung.to, rung, best)  # valid by construction
                    return promoted
        if not can_start:
            return None
        rng = self.rng
        bracket = 0
        if self._multi_bracket:
            bracket = bisect.bisect_right(self._cum_probs, rng.random())
            bracket = min(bracket, len(self._rungs) - 1)  # guard the float sum's last ulp
        if self._queue:
            params = self._queue.popleft()
        elif self._plain_random:
            params = self.space.sample(rng)
        else:
            if self._learner is not None and self.history is not None:
                params = self._learner.propose(self.space, rng, self.history)
            else:
                params = self.sampler.sample(self.space, rng)
            params = self.space.validate(params)
        state = pack_rng_state(rng.bit_generator.state) if self.replayable else None
        number = len(self._state)
        created = TrialCreated(number, bracket, params, state, time)
        self._create(number, bracket, params)
        return created

    def stop_paused(self, numbers: Sequence[int], time: float = 0.0) -> list[TrialEnded]:
        """End the paused trials ``numbers`` as STOPPED and return the events that record it,
        applied: for paused trials, what applying ``TrialEnded(n, STOPPED, None, time)`` to
        each does, in half the time (most trials of a promotion-mode run end this way). Only
        paused trials: a number that is not one raises StateError (where ``TrialEnded`` would
        also stop a running or interrupted trial); the trials before it stay stopped, their
        events unreturned, as when applying the events one by one fails midway."""
        states, waiting, granted, brackets, rungs = (
            self._state,
            self._waiting,
            self._granted,
            self._bracket,
            self._rungs,
        )
        history, counts = self.history, self._counts
        events = []
        for n in numbers:
            if type(n) is not int or not 0 <= n < len(states) or states[n] is not _PAUSED:
                state = self._state_of(n)  # (raises for a number that is no trial)
                raise StateError(f"trial {n} is {state.value}, not paused")
            key = waiting[n]
            if key is not None:
                rungs[brackets[n]][granted[n]].unwait(key)
                waiting[n] = None
            states[n] = _STOPPED
            counts["paused"] -= 1
            counts["stopped"] += 1
            if history is not None:
                history.settled(n)
            events.append(TrialEnded(n, _STOPPED, None, time))
        return events

    # ------------------------------------------------------------------ handlers
    def _on_enqueued(self, ev: Enqueued) -> None:
        self._queue.append(self.space.validate(ev.params))

    def _on_created(self, ev: TrialCreated) -> None:
        n = len(self._state)
        if ev.number != n:
            raise StateError(f"trial {ev.number} created out of order; next is {n}")
        if not 0 <= ev.bracket < len(self._rungs):
            raise StateError(f"bracket {ev.bracket} does not exist")
        if self._queue and ev.params != self._queue[0]:
            raise StateError(f"trial {ev.number} should have taken the enqueued params first")
        if ev.rng_state is None:
            raise StateError(f"trial {ev.number}'s creation carries no generator state to replay")
        # Replay: restore the generator as it was after this trial's draws (numpy checks the
        # state before it takes it: a bad one raises here, with nothing changed yet).
        self.rng.bit_generator.state = unpack_rng_state(ev.rng_state)
        if self._queue:
            self._queue.popleft()
        self._create(n, ev.bracket, ev.params)

    def _create(self, n: int, bracket: int, params: dict[str, Any]) -> None:
        """Add trial ``n``, RUNNING, checked (replay) or valid by construction (next_job)."""
        first = self._milestones[bracket][0]
        self._bracket.append(bracket)
        self._params.append(params)
        self._state.append(_RUNNING)
        self._step.append(0)
        self._value.append(None)
        self._next_at.append(first)
        self._granted.append(0)
        self._waiting.append(None)
        self._rung_values.append(())
        self._counts["running"] += 1
        if self.history is not None:
            self.history.created(n, params, first)

    def _state_of(self, number: int) -> TrialState:
        if type(number) is int and 0 <= number < len(self._state):
            return self._state[number]
        raise StateError(f"there is no trial {number!r}")

    def _set_state(self, n: int, state: TrialState) -> None:
        counts = self._counts
        counts[self._state[n]._value_] -= 1
        counts[state._value_] += 1
        self._state[n] = state

    def _at_milestone(self, n: int, step: int, value: float) -> Decision:
        """The rest of a report (checked and stored by ``apply``) that reached a milestone:
        record the value at every milestone the step crossed, then decide."""
        milestones, rungs, top = self._geometry[self._bracket[n]]
        key = (self._sign * value, n) if _isfinite(value) else (_INF, n)
        values = self._rung_values[n]
        k = first = len(values)  # the first milestone not crossed before: step >= milestones[k]
        leads = rungs[k].add(key)  # the stopping rule, at every milestone crossed
        values += (value,)
        history = self.history
        if history is not None:
            history.recorded(n, milestones[k], key[0])
        k += 1
        while k <= top and step >= milestones[k]:  # a report that jumped past several
            leads = rungs[k].add(key) and leads
            values += (value,)
            if history is not None:
                history.recorded(n, milestones[k], key[0])
            k += 1
        self._rung_values[n] = values
        states, counts = self._state, self._counts
        if k > top:
            if first < top and rungs[first].room >= 0:  # it jumped past rungs to the end
                self._hope(rungs, first, top - 1, key, -1)
            states[n] = _COMPLETE
            counts["running"] -= 1
            counts["complete"] += 1
            if history is not None:
                history.settled(n)
            return _DONE
        self._next_at[n] = milestones[k]
        if self._promotion:
            # The first milestone ahead of a running trial is always its granted one, so it
            # crossed its target: pause in the highest rung reached, promotable from there.
            self._granted[n] = k - 1
            self._waiting[n] = key
            rung = rungs[k - 1]
            rung.wait(key)
            if rung.room >= 0:  # limit_results: which trials are hopeless now?
                self._hope(rungs, first, k - 1, key, k - 1)
            states[n] = _PAUSED
            counts["running"] -= 1
            counts["paused"] += 1
            if history is not None:
                history.settled(n)
            return _PAUSE
        if not leads:
            states[n] = _STOPPED
            counts["running"] -= 1
            counts["stopped"] += 1
            if history is not None:
                history.settled(n)
            return _STOP
        if history is not None:
            history.heading(n, milestones[k])
        return _CONTINUE

    def _hope(self, rungs: list[Rung], first: int, last: int, key: Key, waits: int) -> None:
        """limit_results: a trial recorded ``key`` at rungs ``first`` to ``last`` and waits in
        rung ``waits`` (-1: nowhere). List in ``unpromotable`` the trials that can no longer be
        promoted: itself, if ``room`` results rank before it where it waits, or one its key
        pushes out of a rung's ``hope`` while it still waits there (not one promoted from there
        since, or failed)."""
        waiting, granted = self._waiting, self._granted
        for k in range(first, last + 1):
            rung = rungs[k]
            hope = rung.hope
            if len(hope) < rung.room:  # not full yet: a list, made a heap once full
                hope.append(key)
                if len(hope) == rung.room:
                    heapify_max(hope)
            elif hope and key < hope[0]:  # better than the worst of the best: that one is out
                out = heapreplace_max(hope, key)[1]
                if waiting[out] is not None and granted[out] == k:
                    self.unpromotable.append(out)
            elif k == waits:
                self.unpromotable.append(key[1])

    def _on_promoted(self, ev: TrialPromoted) -> None:
        n = ev.number
        state = self._state_of(n)
        key = self._waiting[n]
        granted = self._granted[n]
        if state is not _PAUSED or key is None or granted != ev.rung - 1:
            raise StateError(f"trial {n} ({state.value}) is not waiting in rung {ev.rung - 1}")
        rung = self._rungs[self._bracket[n]][granted]
        if not rung.in_top(key):
            raise StateError(f"trial {n} is not in the top 1/eta of rung {granted}")
        self._promote(n, ev.rung, rung, key)

    def _promote(self, n: int, to: int, rung: Rung, key: Key) -> None:
        """Move the paused trial ``n`` (``key`` in ``rung``, rung ``to - 1``) on to rung ``to``."""
        rung.unwait(key)
        self._waiting[n] = None
        self._granted[n] = to
        self._state[n] = _RUNNING
        counts = self._counts
        counts["paused"] -= 1
        counts["running"] += 1
        if self.history is not None:
            self.history.heading(n, self._milestones[self._bracket[n]][to])

    def _on_resumed(self, ev: TrialResumed) -> None:
        state = self._state_of(ev.number)
        if state is not _INTERRUPTED:
            raise StateError(f"trial {ev.number} is {state.value}, not interrupted")
        self._interrupted.remove(ev.number)
        self._set_state(ev.number, _RUNNING)

    def _on_interrupted(self, ev: TrialInterrupted) -> None:
        state = self._state_of(ev.number)
        if state is not _RUNNING:
            raise StateError(f"trial {ev.number} is {state.value}; only a running trial is interrupted")
        bisect.insort(self._interrupted, ev.number)
        self._set_state(ev.number, _INTERRUPTED)

    def _on_ended(self, ev: TrialEnded) -> None:
        n = ev.number
        state = self._state_of(n)
        if state.is_finished:
            raise StateError(f"trial {n} already ended ({state.value})")
        if ev.state is TrialState.COMPLETE and state is not _RUNNING:
            raise StateError(f"trial {n} is {state.value}; only a running trial completes")
        if ev.state not in (TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED):
            raise StateError(f"{ev.state} is not an end state")
        key = self._waiting[n]
        if key is not None:
            self._rungs[self._bracket[n]][self._granted[n]].unwait(key)
            self._waiting[n] = None
        if state is _INTERRUPTED:
            self._interrupted.remove(n)
        if ev.error is not None:
            self._error[n] = ev.error
        self._set_state(n, ev.state)
        if self.history is not None:
            if ev.state is TrialState.FAILED:
                self.history.failed(n)
            else:
                self.history.settled(n)

    def _on_checkpointed(self, ev: Checkpointed) -> None:
        state = self._state_of(ev.number)
        if state.is_finished:
            raise StateError(f"trial {ev.number} already ended ({state.value})")
        self._checkpoint_step[ev.number] = ev.step

    # ------------------------------------------------------------------ queries
    @property
    def n_trials(self) -> int:
        return len(self._state)

    @property
    def counts(self) -> Mapping[TrialState, int]:
        """Number of trials in each state (kept up to date, O(1))."""
        return {state: self._counts[state.value] for state in TrialState}

    @property
    def n_enqueued(self) -> int:
        return len(self._queue)

    def state_of(self, number: int) -> TrialState:
        return self._state_of(number)

    def step_of(self, number: int) -> int:
        self._state_of(number)
        return self._step[number]

    def target_of(self, number: int) -> int:
        """The resource the trial may run to before its next decision point."""
        self._state_of(number)
        ms = self._milestones[self._bracket[number]]
        if self._promotion:
            granted, next_ms = self._granted[number], len(self._rung_values[number])
            return ms[granted] if granted >= next_ms else ms[min(next_ms, len(ms) - 1)]
        return ms[-1]

    def segment_end(self, number: int) -> int:
        """Where a budget-style call for this trial ends: its next milestone (the next decision
        point in either mode), never beyond what it may run to (``target_of``)."""
        ms = self._milestones[self._bracket[number]]
        step = self._step[number]
        nxt = ms[min(bisect.bisect_right(ms, step), len(ms) - 1)]
        return min(nxt, self.target_of(number))

    def has_checkpoint(self, number: int) -> bool:
        return number in self._checkpoint_step

    def waiting_position(self, number: int) -> tuple[int, Key]:
        """(milestone, rank key) of a paused trial in the rung it waits in; lower key is better."""
        self._state_of(number)
        key = self._waiting[number]
        if key is None:
            raise StateError(f"trial {number} is not waiting for promotion")
        return self._milestones[self._bracket[number]][self._granted[number]], key

    def limit_results(self, at_most: int | None) -> None:
        """From now on, expect at most ``at_most`` results per rung (None: no limit, the
        default), as a run with ``max_trials`` can: a rung gets one result per trial at most.

        Then every paused trial that can no longer be promoted (see ``Rung.limit``) is
        appended to :attr:`unpromotable` as it becomes so, once, for the caller to let its call
        go. It stays PAUSED (the decisions do not change). Not part of the study's state: it
        lasts while the caller keeps it (one run), and is not in snapshots."""
        for rungs in self._rungs:
            for rung in rungs:
                rung.limit(at_most)
        self.unpromotable.clear()

    def waiting_trials(self) -> list[int]:
        """Numbers of the paused trials (from the rungs' waiting lists, not a trial scan): rung
        by rung, best first. Sorted, not in the heaps' order, so that a core restored from a
        snapshot (whose heaps are laid out anew) lists them as the original does: the end of a
        run stops them in this order."""
        return [key[1] for rungs in self._rungs for rung in rungs for key in sorted(rung.waiting_keys())]

    def numbers_in(self, state: TrialState) -> list[int]:
        """Numbers of the trials in ``state`` (a scan of all trials: for loading, not hot paths)."""
        return [n for n, s in enumerate(self._state) if s is state]

    def frozen(self, number: int) -> FrozenTrial:
        self._state_of(number)
        return self._frozen(number)

    def _frozen(self, number: int) -> FrozenTrial:
        """``frozen(number)`` for a number known to be a trial's."""
        ms = self._milestones[self._bracket[number]]
        values = self._rung_values[number]
        return FrozenTrial(  # (positional, in field order: 2.3 µs against 3.1 by keyword)
            number,
            self._state[number],
            dict(self._params[number]),
            self._bracket[number],
            self._step[number],
            self._value[number],
            ms[len(values) - 1] if values else 0,  # resource
            {ms[k]: v for k, v in enumerate(values)},  # rung_values
            self._error.get(number),
            self._checkpoint_step.get(number),
        )

    def progress_columns(self) -> tuple[list[int], list[int], list[int]]:
        """Per trial, by number: its bracket, the number of milestones it crossed, and the rung
        it may run to (in promotion mode, the promotions it was granted). Copies, for readers
        that summarise many trials at once (a FrozenTrial each costs a hundred times more)."""
        return list(self._bracket), list(map(len, self._rung_values)), list(self._granted)

    def table(self, numbers: Sequence[int]) -> list[tuple[Any, ...]]:
        """For each of ``numbers``: (state, bracket, step, last value, resource, value at the
        resource or None, params, error), what a row of a trial table shows, without building
        a FrozenTrial per trial (a dashboard shows 100,000 of them). ``params`` is the core's
        own dict: do not change it."""
        out = []
        milestones, rung_values, errors = self._milestones, self._rung_values, self._error
        for n in numbers:
            values = rung_values[n]
            resource = milestones[self._bracket[n]][len(values) - 1] if values else 0
            out.append(
                (
                    self._state[n],
                    self._bracket[n],
                    self._step[n],
                    self._value[n],
                    resource,
                    values[-1] if values else None,
                    self._params[n],
                    errors.get(n),
                )
            )
        return out

    def trials(self) -> list[FrozenTrial]:
        return list(map(self._frozen, range(len(self._state))))

    def best(self) -> FrozenTrial | None:
        """The best trial at the highest milestone any trial has reached."""
        # Rungs track their best key; a milestone is shared by rungs of several brackets.
        for m in reversed(self.scheduler.milestones):
            keys = [rung.best for rungs in self._rungs for rung in rungs if rung.milestone == m and len(rung)]
            if keys:
                return self.frozen(int(min(keys)[1]))
        return None

    def rung_sizes(self) -> list[list[tuple[int, int]]]:
        """Per bracket, per rung: (milestone, number of results recorded there)."""
        return [[(r.milestone, len(r)) for r in rungs] for rungs in self._rungs]

    def rung_members(self, bracket: int, rung: int) -> list[int]:
        """Trial numbers recorded at a rung, best first (a scan: for reports, not the hot path)."""
        return [key[1] for key in self._rungs[bracket][rung].ranked()]

    def is_done(self) -> bool:
        """True when no trial runs, none is interrupted, and none can be promoted now."""
        return self._counts["running"] == 0 and not self._interrupted and not self._promotable()

    def _promotable(self) -> bool:
        if not self._promotion:
            return False
        return any(not rung.settled and rung.promotable() is not None for rung in self._scan)


# Core.apply's handlers, by event type: plain functions of the class, not bound methods kept
# on each core, which would make every core a reference cycle, freed only by a full collection
# (with its columns of 100,000 trials) instead of when its last reference goes.
_HANDLERS: dict[type, Callable[[Core, Any], Decision | None]] = {
    Checkpointed: Core._on_checkpointed,
    TrialCreated: Core._on_created,
    TrialPromoted: Core._on_promoted,
    TrialResumed: Core._on_resumed,
    TrialInterrupted: Core._on_interrupted,
    TrialEnded: Core._on_ended,
    Enqueued: Core._on_enqueued,
}
