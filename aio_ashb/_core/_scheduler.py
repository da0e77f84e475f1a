"""Scheduler configuration and rung geometry (ASHA and asynchronous Hyperband)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from aio_ashb._core._space import shown as _shown
from aio_ashb._exceptions import ConfigError

Mode = Literal["promotion", "stopping"]


# Resources are stored as SQLite integers and JSON numbers, and scaled in floating point:
# bounded so that every one of them is exact in a double.
MAX_RESOURCE = 2**53


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {_shown(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {_shown(value)}")
    if value > MAX_RESOURCE:
        raise ConfigError(f"{name} must be at most 2**53 ({MAX_RESOURCE}), got {_shown(value)}")
    return int(value)


@dataclass(frozen=True)
class ASHA:
    """Asynchronous Successive Halving; with ``brackets > 1``, asynchronous Hyperband.

    Rung ``k`` of bracket ``s`` sits at ``min_resource * reduction_factor ** (s + k)``; the top rung
    of every bracket is ``max_resource`` itself. ``mode="promotion"`` (default) is the paper's
    algorithm: trials pause at each milestone and the best ``1/reduction_factor`` of a rung are
    promoted as the rung fills. ``mode="stopping"`` runs trials straight through and stops those
    that rank outside the top ``1/reduction_factor`` of a milestone when they reach it.
    ``brackets="all"`` uses every bracket that fits between the two resources.
    """

    min_resource: int = 1
    max_resource: int = 81
    reduction_factor: int = 3
    brackets: int | Literal["all"] = 1
    mode: Mode = "promotion"
    milestones: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = _check_int("min_resource", self.min_resource, 1)
        big_r = _check_int("max_resource", self.max_resource, 1)
        eta = _check_int("reduction_factor", self.reduction_factor, 2)
        if big_r <= r:
            raise ConfigError(
                f"max_resource must be greater than min_resource, got max_resource={big_r!r}, "
                f"min_resource={r!r}"
            )
        if self.mode not in ("promotion", "stopping"):
            raise ConfigError(f"mode must be 'promotion' or 'stopping', got {self.mode!r}")
        milestones: list[int] = []
        m = r
        while m < big_r:
            milestones.append(m)
            m *= eta
        milestones.append(big_r)
        object.__setattr__(self, "milestones", tuple(milestones))
        max_brackets = len(milestones)
        if self.brackets == "all":
            object.__setattr__(self, "brackets", max_brackets)
        else:
            b = _check_int("brackets", self.brackets, 1)
            if b > max_brackets:
                raise ConfigError(
                    f"brackets={b!r} is too many: with min_resource={r}, max_resource={big_r} and "
                    f"reduction_factor={eta} at most {max_brackets} fit (milestones {milestones})"
                )
        object.__setattr__(self, "min_resource", r)
        object.__setattr__(self, "max_resource", big_r)
        object.__setattr__(self, "reduction_factor", eta)

    @property
    def n_brackets(self) -> int:
        assert isinstance(self.brackets, int)  # normalized in __post_init__
        return self.brackets

    def bracket_milestones(self, bracket: int) -> tuple[int, ...]:
        """Milestones of bracket ``bracket``; the last one is ``max_resource``."""
        return self.milestones[bracket:]

    def bracket_probabilities(self) -> np.ndarray:
        """Probabilities of the brackets for a new trial.

        Proportional to the number of configurations synchronous Hyperband starts in the same
        bracket: bracket ``s`` (``h = s_max - s`` halvings) starts ``ceil((s_max + 1) / (h + 1) *
        eta ** h)`` of them, where ``s_max`` is the number of milestones below ``max_resource``.
        """
        s_max = len(self.milestones) - 1
        eta = self.reduction_factor
        sizes = np.array(
            [math.ceil((s_max + 1) / (s_max - s + 1) * eta ** (s_max - s)) for s in range(self.n_brackets)],
            dtype=float,
        )
        probs: np.ndarray = sizes / sizes.sum()
        return probs

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "asha",
            "min_resource": self.min_resource,
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
            "brackets": self.brackets,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ASHA:
        if data.get("type") != "asha":
            raise ConfigError(f"unknown scheduler type {data.get('type')!r}")
        return cls(
            min_resource=data["min_resource"],
            max_resource=data["max_resource"],
            reduction_factor=data["reduction_factor"],
            brackets=data["brackets"],
            mode=data["mode"],
        )
