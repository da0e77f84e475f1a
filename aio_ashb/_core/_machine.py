"""The ASHA / asynchronous Hyperband state machine: events in, decisions out, no I/O.

Modelled on h11's state machine: every change goes through :meth:`Core.apply`, an illegal event
raises and leaves the state unchanged, and the choices the scheduler makes (start a trial,
promote one, resume one) are themselves events returned by :meth:`Core.next_job`, so the stored
log replays into an identical core.

Rungs are two sorted lists of rank keys: ``results`` (every trial recorded at the rung) and
``waiting`` (paused trials not yet promoted out of it). A report at a milestone inserts in
O(log n); the promotion test of the paper's ``get_job`` ("is the best unpromoted trial among the
top floor(n/eta) of the rung?") is ``results.bisect_left(waiting[0]) < n // eta``, O(log n),
once per rung. Nothing scans a rung or the trial list on the hot path.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from sortedcontainers import SortedList

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
)
from aio_ashb._core._sampler import Sampler
from aio_ashb._core._scheduler import ASHA
from aio_ashb._core._space import SearchSpace
from aio_ashb._exceptions import ReportError, StateError

# (is_bad, signed value, trial number): lower is better. Non-finite values rank worst; the trial
# number breaks ties, so every key is unique and every order deterministic.
Key: TypeAlias = tuple[int, float, int]

_RUNNING, _PAUSED, _INTERRUPTED = TrialState.RUNNING, TrialState.PAUSED, TrialState.INTERRUPTED
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


@dataclass(frozen=True, slots=True)
class FrozenTrial:
    """A read-only snapshot of one trial.

    ``rung_values`` maps each milestone the trial reached (a resource) to the value recorded
    there; ``resource`` is the highest of them (0 when none); ``step`` and ``value`` are the last
    report.
    """

    number: int
    state: TrialState
    params: dict[str, Any]
    bracket: int
    step: int
    value: float | None
    resource: int
    rung_values: dict[int, float]
    error: str | None
    checkpoint_step: int | None


class _Rung:
    __slots__ = ("milestone", "results", "waiting")

    def __init__(self, milestone: int) -> None:
        self.milestone = milestone
        self.results: SortedList[Key] = SortedList()
        self.waiting: SortedList[Key] = SortedList()


class _Trial:
    __slots__ = (
        "number",
        "bracket",
        "params",
        "state",
        "step",
        "value",
        "next_ms",
        "granted",
        "waiting",
        "rung_values",
        "error",
        "checkpoint_step",
    )

    def __init__(self, number: int, bracket: int, params: dict[str, Any]) -> None:
        self.number = number
        self.bracket = bracket
        self.params = params
        self.state = _RUNNING
        self.step = 0
        self.value: float | None = None
        self.next_ms = 0  # index of the first milestone of its bracket not yet crossed
        self.granted = 0  # promotion mode: the rung it may run to (its target milestone)
        self.waiting: Key | None = None  # its key in rungs[granted].waiting while promotable
        self.rung_values: list[float] = []  # value recorded at rung k, for k < next_ms
        self.error: str | None = None
        self.checkpoint_step: int | None = None


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
        self._sign = 1.0 if direction is Direction.MINIMIZE else -1.0
        self._eta = scheduler.reduction_factor
        self._promotion = scheduler.mode == "promotion"
        self._milestones = [scheduler.bracket_milestones(s) for s in range(scheduler.n_brackets)]
        self._rungs = [[_Rung(m) for m in ms] for ms in self._milestones]
        self._cum_probs = np.cumsum(scheduler.bracket_probabilities())
        self._trials: list[_Trial] = []
        self._queue: deque[dict[str, Any]] = deque()
        self._interrupted: SortedList[int] = SortedList()
        self._counts = dict.fromkeys(TrialState, 0)
        self._best: dict[int, tuple[Key, int]] = {}  # milestone -> best (key, number) there
        self._handlers: dict[type, Callable[[Any], Decision | None]] = {
            Reported: self._on_reported,
            Checkpointed: self._on_checkpointed,
            TrialCreated: self._on_created,
            TrialPromoted: self._on_promoted,
            TrialResumed: self._on_resumed,
            TrialInterrupted: self._on_interrupted,
            TrialEnded: self._on_ended,
            Enqueued: self._on_enqueued,
        }

    # ------------------------------------------------------------------ the one entry point
    def apply(self, event: Event) -> Decision | None:
        """Apply one event; a :class:`Reported` event returns the scheduler's decision.

        An event that the current state forbids raises (StateError, ReportError) and changes
        nothing.
        """
        try:
            handler = self._handlers[type(event)]
        except KeyError:
            raise StateError(f"not an event: {event!r}") from None
        return handler(event)

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
            eta = self._eta
            for rungs in self._rungs:
                for k in range(len(rungs) - 2, -1, -1):
                    rung = rungs[k]
                    if rung.waiting:
                        best = rung.waiting[0]
                        if rung.results.bisect_left(best) < len(rung.results) // eta:
                            promoted = TrialPromoted(best[2], k + 1, time)
                            self._on_promoted(promoted)
                            return promoted
        if not can_start:
            return None
        bracket = 0
        if len(self._rungs) > 1:
            bracket = int(np.searchsorted(self._cum_probs, self.rng.random(), side="right"))
            bracket = min(bracket, len(self._rungs) - 1)  # guard the float sum's last ulp
        if self._queue:
            params = self._queue[0]
        else:
            params = self.space.validate(self.sampler.sample(self.space, self.rng))
        state: dict[str, Any] = dict(self.rng.bit_generator.state)
        created = TrialCreated(len(self._trials), bracket, params, state, time)
        self._on_created(created)
        return created

    # ------------------------------------------------------------------ handlers
    def _on_enqueued(self, ev: Enqueued) -> None:
        self._queue.append(self.space.validate(ev.params))

    def _on_created(self, ev: TrialCreated) -> None:
        if ev.number != len(self._trials):
            raise StateError(f"trial {ev.number} created out of order; next is {len(self._trials)}")
        if not 0 <= ev.bracket < len(self._rungs):
            raise StateError(f"bracket {ev.bracket} does not exist")
        if self._queue:
            if ev.params != self._queue[0]:
                raise StateError(f"trial {ev.number} should have taken the enqueued params first")
            self._queue.popleft()
        if self.rng.bit_generator.state != ev.rng_state:
            self.rng.bit_generator.state = ev.rng_state  # replay: restore the generator
        self._trials.append(_Trial(ev.number, ev.bracket, ev.params))
        self._counts[_RUNNING] += 1

    def _trial(self, number: int) -> _Trial:
        if 0 <= number < len(self._trials):
            return self._trials[number]
        raise StateError(f"there is no trial {number!r}")

    def _set_state(self, t: _Trial, state: TrialState) -> None:
        self._counts[t.state] -= 1
        self._counts[state] += 1
        t.state = state

    def _key(self, value: float, number: int) -> Key:
        if _isfinite(value):
            return (0, self._sign * value, number)
        return (1, 0.0, number)

    def _on_reported(self, ev: Reported) -> Decision:
        t = self._trial(ev.number)
        if t.state is not _RUNNING:
            raise StateError(f"trial {t.number} is {t.state.value}; only a running trial reports")
        step = ev.step
        if type(step) is not int or step <= t.step:
            check_step(step)
            raise ReportError(
                f"trial {t.number} reported step {step!r} after step {t.step}; steps must increase"
            )
        value = ev.value if type(ev.value) is float else check_value(ev.value)
        t.step = step
        t.value = value
        milestones = self._milestones[t.bracket]
        k = t.next_ms
        if step < milestones[k]:  # k < len(milestones) while the trial is running
            return Decision.CONTINUE
        # A milestone was reached: record the value at every milestone the step crossed.
        rungs = self._rungs[t.bracket]
        key = self._key(value, t.number)
        first = k
        top = len(milestones) - 1
        while k <= top and step >= milestones[k]:
            rungs[k].results.add(key)
            t.rung_values.append(value)
            m = milestones[k]
            best = self._best.get(m)
            if best is None or key < best[0]:
                self._best[m] = (key, t.number)
            k += 1
        t.next_ms = k
        if k > top:
            self._set_state(t, TrialState.COMPLETE)
            return Decision.COMPLETE
        if self._promotion:
            # The first milestone ahead of a running trial is always its granted one, so it
            # crossed its target: pause in the highest rung reached, promotable from there.
            t.granted = k - 1
            t.waiting = key
            rungs[k - 1].waiting.add(key)
            self._set_state(t, _PAUSED)
            return Decision.PAUSE
        eta = self._eta
        for j in range(first, k):
            results = rungs[j].results
            if results.bisect_left(key) >= max(1, len(results) // eta):
                self._set_state(t, TrialState.STOPPED)
                return Decision.STOP
        return Decision.CONTINUE

    def _on_promoted(self, ev: TrialPromoted) -> None:
        t = self._trial(ev.number)
        if t.state is not _PAUSED or t.waiting is None or t.granted != ev.rung - 1:
            raise StateError(f"trial {t.number} ({t.state.value}) is not waiting in rung {ev.rung - 1}")
        rung = self._rungs[t.bracket][t.granted]
        if rung.results.bisect_left(t.waiting) >= len(rung.results) // self._eta:
            raise StateError(f"trial {t.number} is not in the top 1/eta of rung {t.granted}")
        rung.waiting.remove(t.waiting)
        t.waiting = None
        t.granted = ev.rung
        self._set_state(t, _RUNNING)

    def _on_resumed(self, ev: TrialResumed) -> None:
        t = self._trial(ev.number)
        if t.state is not _INTERRUPTED:
            raise StateError(f"trial {t.number} is {t.state.value}, not interrupted")
        self._interrupted.remove(t.number)
        self._set_state(t, _RUNNING)

    def _on_interrupted(self, ev: TrialInterrupted) -> None:
        t = self._trial(ev.number)
        if t.state is not _RUNNING:
            raise StateError(f"trial {t.number} is {t.state.value}; only a running trial is interrupted")
        self._interrupted.add(t.number)
        self._set_state(t, _INTERRUPTED)

    def _on_ended(self, ev: TrialEnded) -> None:
        t = self._trial(ev.number)
        if t.state.is_finished:
            raise StateError(f"trial {t.number} already ended ({t.state.value})")
        if ev.state is TrialState.COMPLETE and t.state is not _RUNNING:
            raise StateError(f"trial {t.number} is {t.state.value}; only a running trial completes")
        if ev.state not in (TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED):
            raise StateError(f"{ev.state} is not an end state")
        if t.waiting is not None:
            self._rungs[t.bracket][t.granted].waiting.remove(t.waiting)
            t.waiting = None
        if t.state is _INTERRUPTED:
            self._interrupted.remove(t.number)
        t.error = ev.error
        self._set_state(t, ev.state)

    def _on_checkpointed(self, ev: Checkpointed) -> None:
        t = self._trial(ev.number)
        if t.state.is_finished:
            raise StateError(f"trial {t.number} already ended ({t.state.value})")
        t.checkpoint_step = ev.step

    # ------------------------------------------------------------------ queries
    @property
    def n_trials(self) -> int:
        return len(self._trials)

    @property
    def counts(self) -> Mapping[TrialState, int]:
        """Number of trials in each state (kept up to date, O(1))."""
        return self._counts

    @property
    def n_enqueued(self) -> int:
        return len(self._queue)

    def state_of(self, number: int) -> TrialState:
        return self._trial(number).state

    def step_of(self, number: int) -> int:
        return self._trial(number).step

    def target_of(self, number: int) -> int:
        """The resource the trial may run to before its next decision point."""
        t = self._trial(number)
        ms = self._milestones[t.bracket]
        if self._promotion:
            return ms[t.granted] if t.granted >= t.next_ms else ms[min(t.next_ms, len(ms) - 1)]
        return ms[-1]

    def waiting_position(self, number: int) -> tuple[int, Key]:
        """(milestone, rank key) of a paused trial in the rung it waits in; lower key is better."""
        t = self._trial(number)
        if t.waiting is None:
            raise StateError(f"trial {number} is not waiting for promotion")
        return self._milestones[t.bracket][t.granted], t.waiting

    def waiting_trials(self) -> list[int]:
        """Numbers of the paused trials (from the rungs' waiting lists, not a trial scan)."""
        return [key[2] for rungs in self._rungs for rung in rungs for key in rung.waiting]

    def numbers_in(self, state: TrialState) -> list[int]:
        """Numbers of the trials in ``state`` (a scan of all trials: for loading, not hot paths)."""
        return [t.number for t in self._trials if t.state is state]

    def frozen(self, number: int) -> FrozenTrial:
        t = self._trial(number)
        ms = self._milestones[t.bracket]
        rung_values = {ms[k]: v for k, v in enumerate(t.rung_values)}
        return FrozenTrial(
            number=t.number,
            state=t.state,
            params=dict(t.params),
            bracket=t.bracket,
            step=t.step,
            value=t.value,
            resource=ms[len(t.rung_values) - 1] if t.rung_values else 0,
            rung_values=rung_values,
            error=t.error,
            checkpoint_step=t.checkpoint_step,
        )

    def trials(self) -> list[FrozenTrial]:
        return [self.frozen(i) for i in range(len(self._trials))]

    def best(self) -> FrozenTrial | None:
        """The best trial at the highest milestone any trial has reached."""
        if not self._best:
            return None
        return self.frozen(self._best[max(self._best)][1])

    def rung_sizes(self) -> list[list[tuple[int, int]]]:
        """Per bracket, per rung: (milestone, number of results recorded there)."""
        return [[(r.milestone, len(r.results)) for r in rungs] for rungs in self._rungs]

    def rung_members(self, bracket: int, rung: int) -> list[int]:
        """Trial numbers recorded at a rung, best first (a scan: for reports, not the hot path)."""
        return [key[2] for key in self._rungs[bracket][rung].results]

    def is_done(self) -> bool:
        """True when no trial runs, none is interrupted, and none can be promoted now."""
        return self._counts[_RUNNING] == 0 and not self._interrupted and not self._promotable()

    def _promotable(self) -> bool:
        if not self._promotion:
            return False
        for rungs in self._rungs:
            for k in range(len(rungs) - 1):
                rung = rungs[k]
                n = len(rung.results)
                if rung.waiting and rung.results.bisect_left(rung.waiting[0]) < n // self._eta:
                    return True
        return False
