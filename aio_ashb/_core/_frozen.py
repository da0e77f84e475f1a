"""FrozenTrial: the read-only snapshot of one trial that ``study.trials`` and the core return."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from aio_ashb._core._events import TrialState, slot_setters


@dataclass(frozen=True, slots=True, eq=False)
class FrozenTrial:
    """A read-only snapshot of one trial.

    ``rung_values`` maps each milestone the trial reached (a resource) to the value recorded
    there; ``resource`` is the highest of them (0 when none); ``step`` and ``value`` are the last
    report. Two snapshots are equal when every field is, a NaN counting as equal to a NaN.
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

    def __init__(
        self,
        number: int,
        state: TrialState,
        params: dict[str, Any],
        bracket: int,
        step: int,
        value: float | None,
        resource: int,
        rung_values: dict[int, float],
        error: str | None,
        checkpoint_step: int | None,
    ) -> None:
        # Slot by slot, past the frozen __setattr__ (the generated __init__ takes 4.5 us here;
        # study.trials builds one per trial).
        _put_number(self, number)
        _put_state(self, state)
        _put_params(self, params)
        _put_bracket(self, bracket)
        _put_step(self, step)
        _put_value(self, value)
        _put_resource(self, resource)
        _put_rung_values(self, rung_values)
        _put_error(self, error)
        _put_checkpoint_step(self, checkpoint_step)

    def __eq__(self, other: object) -> bool:
        # Field by field with NaN equal to NaN, so that a snapshot equals another of the same
        # trial where a report (or a constant) was NaN. A dataclass's own __eq__ compares NaN
        # as unequal from CPython 3.13 on, and before that as equal only when both were one
        # float object, as after a copy but not after a replay of the log.
        if type(other) is not FrozenTrial:
            return NotImplemented
        return _comparable(self) == _comparable(other)

    __hash__ = None  # type: ignore[assignment]  # (params is a dict: never hashable)


# What stands for every NaN in _comparable: one object, equal only to itself.
_NAN = object()


def _comparable(t: FrozenTrial) -> tuple[Any, ...]:
    """Every field of ``t`` (a field added later included), NaN replaced by _NAN, in values
    and in the values of dict fields."""

    def same(v: Any) -> Any:
        return _NAN if isinstance(v, float) and v != v else v

    return tuple(
        {k: same(x) for k, x in v.items()} if isinstance(v, dict) else same(v)
        for v in (getattr(t, f.name) for f in fields(FrozenTrial))
    )


(
    _put_number,
    _put_state,
    _put_params,
    _put_bracket,
    _put_step,
    _put_value,
    _put_resource,
    _put_rung_values,
    _put_error,
    _put_checkpoint_step,
) = slot_setters(FrozenTrial, *FrozenTrial.__slots__)
