"""States, decisions and the events of the append-only log.

Every change to a study is one of the events below. The core applies them (``Core.apply``), the
runner appends them to storage, and replaying the stored events into a fresh core rebuilds it
exactly. Events are frozen, slotted dataclasses: cheap to build on the hot path and safe to share.

The events built once per report or per job (``Reported``, ``TrialCreated``, ``TrialPromoted``,
``TrialResumed``) write their slots through the slots' own descriptors in a hand-written
``__init__``: a frozen dataclass's generated one goes through ``object.__setattr__`` per field,
which made building a ``Reported`` cost as much as the core's whole answer to it. Same fields,
same signature, still frozen (``tests/core/test_events.py`` checks).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias


class TrialState(enum.Enum):
    """Where a trial is in its lifecycle.

    ``RUNNING -> (PAUSED <-> RUNNING)* -> COMPLETE | STOPPED | FAILED``; ``INTERRUPTED`` is a
    trial whose run was cancelled (or whose process died) while it ran: it resumes first.
    """

    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED})


class Decision(enum.Enum):
    """What the scheduler says after a report."""

    CONTINUE = "continue"  # keep training
    PAUSE = "pause"  # milestone reached (promotion mode): wait here until promoted
    STOP = "stop"  # stopping mode: not good enough at a milestone
    COMPLETE = "complete"  # max_resource reached


class Direction(enum.Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


# ---------------------------------------------------------------- events of the log
_Setter: TypeAlias = Callable[[Any, Any], None]


def slot_setters(cls: type, *names: str) -> tuple[_Setter, ...]:
    """The ``__set__`` of each named slot of ``cls``: it writes the slot past the frozen
    dataclass's ``__setattr__``, as the generated ``__init__`` does, but in one call."""
    return tuple(vars(cls)[name].__set__ for name in names)


RngState: TypeAlias = tuple[str, int, int, int, int]


def pack_rng_state(state: Mapping[str, Any]) -> RngState:
    """numpy's ``bit_generator.state`` of a PCG64-family generator as a flat tuple."""
    inner = state["state"]
    return (state["bit_generator"], inner["state"], inner["inc"], state["has_uint32"], state["uinteger"])


def unpack_rng_state(packed: RngState | dict[str, Any]) -> dict[str, Any]:
    """The dict numpy's ``bit_generator.state`` takes back (a dict is numpy's own already)."""
    if isinstance(packed, dict):
        return packed
    name, state, inc, has_uint32, uinteger = packed
    return {
        "bit_generator": name,
        "state": {"state": state, "inc": inc},
        "has_uint32": has_uint32,
        "uinteger": uinteger,
    }


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A fixed configuration to try before sampled ones (validated against the space)."""

    params: dict[str, Any]
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialCreated:
    """A new trial starts in ``bracket`` with ``params``.

    ``rng_state`` is the study generator's state after the bracket draw and the sampling, so a
    replay restores the generator without re-sampling: ``(bit generator name, state, inc,
    has_uint32, uinteger)`` (:func:`pack_rng_state`), or numpy's dict itself in logs written
    before 2026-12-01. A tuple of numbers, not numpy's two nested dicts: every trial keeps its
    creation event in the log, and the tuple is a third of the memory and nothing for the
    garbage collector to scan. ``None`` from a core whose events are never replayed
    (``Core.replayable``: ``simulate()``'s); such an event cannot be applied.
    """

    number: int
    bracket: int
    params: dict[str, Any]
    rng_state: RngState | dict[str, Any] | None
    time: float = 0.0

    def __init__(
        self,
        number: int,
        bracket: int,
        params: dict[str, Any],
        rng_state: RngState | dict[str, Any] | None,
        time: float = 0.0,
    ) -> None:
        _created_number(self, number)
        _created_bracket(self, bracket)
        _created_params(self, params)
        _created_rng_state(self, rng_state)
        _created_time(self, time)


_created_number, _created_bracket, _created_params, _created_rng_state, _created_time = slot_setters(
    TrialCreated, "number", "bracket", "params", "rng_state", "time"
)


@dataclass(frozen=True, slots=True)
class TrialPromoted:
    """The paused trial ``number`` is promoted to rung ``rung`` of its bracket."""

    number: int
    rung: int
    time: float = 0.0

    def __init__(self, number: int, rung: int, time: float = 0.0) -> None:
        _promoted_number(self, number)
        _promoted_rung(self, rung)
        _promoted_time(self, time)


_promoted_number, _promoted_rung, _promoted_time = slot_setters(TrialPromoted, "number", "rung", "time")


@dataclass(frozen=True, slots=True)
class TrialResumed:
    """An INTERRUPTED trial runs again, toward the same milestone."""

    number: int
    time: float = 0.0

    def __init__(self, number: int, time: float = 0.0) -> None:
        _resumed_number(self, number)
        _resumed_time(self, time)


_resumed_number, _resumed_time = slot_setters(TrialResumed, "number", "time")


@dataclass(frozen=True, slots=True)
class Reported:
    """Trial ``number`` reported ``value`` at ``step`` (a float; NaN and inf allowed)."""

    number: int
    step: int
    value: float
    time: float = 0.0

    def __init__(self, number: int, step: int, value: float, time: float = 0.0) -> None:
        _reported_number(self, number)
        _reported_step(self, step)
        _reported_value(self, value)
        _reported_time(self, time)


_reported_number, _reported_step, _reported_value, _reported_time = slot_setters(
    Reported, "number", "step", "value", "time"
)


@dataclass(frozen=True, slots=True)
class Checkpointed:
    """A checkpoint of trial ``number`` taken after ``step``; storage keeps the payload."""

    number: int
    step: int
    payload: Any
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialInterrupted:
    """The running trial ``number`` was cancelled (or its process died) mid-run."""

    number: int
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialEnded:
    """Trial ``number`` ended: COMPLETE (its objective returned), STOPPED or FAILED."""

    number: int
    state: TrialState
    error: str | None = None
    time: float = 0.0

    def __init__(self, number: int, state: TrialState, error: str | None = None, time: float = 0.0) -> None:
        _ended_number(self, number)
        _ended_state(self, state)
        _ended_error(self, error)
        _ended_time(self, time)


_ended_number, _ended_state, _ended_error, _ended_time = slot_setters(
    TrialEnded, "number", "state", "error", "time"
)


Event: TypeAlias = (
    Enqueued
    | TrialCreated
    | TrialPromoted
    | TrialResumed
    | Reported
    | Checkpointed
    | TrialInterrupted
    | TrialEnded
)
Job: TypeAlias = TrialCreated | TrialPromoted | TrialResumed
