"""What a learning sampler sees of a study, kept up to date by the core event by event.

Every trial's point in the unit cube, the values recorded at each milestone (in the order they
were recorded, signed so that lower is better, NaN and infinities as +inf), and the trials still
running towards a milestone. The core feeds it from the same events it applies, live or
replayed, so a resumed study's history is the one the interrupted run had: no model is fitted
during a replay, and a sampler's proposals depend only on the log and the study's generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aio_ashb._core._space import Params, SearchSpace

_INF = math.inf


class _Column:
    """A growable float array: appends in amortized O(1), read as a view without copying."""

    __slots__ = ("_a", "n")

    def __init__(self, width: int = 0) -> None:
        self._a = np.empty((16, width) if width else 16)
        self.n = 0

    def append(self, row: Any) -> None:
        if self.n == len(self._a):
            grown = np.empty((2 * self.n, *self._a.shape[1:]))
            grown[: self.n] = self._a
            self._a = grown
        self._a[self.n] = row
        self.n += 1

    def extend(self, rows: np.ndarray) -> None:
        """Append many rows at once (restoring a snapshot)."""
        end = self.n + len(rows)
        if end > len(self._a):
            grown = np.empty((max(end, 2 * self.n), *self._a.shape[1:]))
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : end] = rows
        self.n = end

    @property
    def view(self) -> np.ndarray:
        return self._a[: self.n]


class Level:
    """The results recorded at one milestone, in recording order (append-only)."""

    __slots__ = ("numbers", "values", "seqs")

    def __init__(self) -> None:
        self.numbers = _Column()  # trial numbers (floats holding exact integers)
        self.values = _Column()  # signed values: lower is better; failures and NaN are +inf
        self.seqs = _Column()  # the study's result count when each was recorded (increasing)

    def __len__(self) -> int:
        return self.numbers.n

    def count_before(self, seq: int) -> int:
        """How many of its results were recorded among the study's first ``seq`` results
        (a prefix: the level is append-only and in recording order)."""
        return int(np.searchsorted(self.seqs.view, seq, side="left"))


class History:
    """The sampler's view of a study (see the module docstring)."""

    __slots__ = ("space", "_points", "levels", "pending", "results", "cache")

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._points = _Column(max(space.ndim, 1))
        self.results = 0  # results recorded so far, at any milestone
        self.levels: dict[int, Level] = {}  # milestone -> results recorded there
        self.pending: dict[int, int] = {}  # trial number -> the milestone it is running towards
        # Models a sampler fitted, keyed by what they saw. Levels are append-only, so "the
        # study's first k results" names one fit exactly: a cached model is the model a fresh
        # fit would give, and caching never changes a proposal.
        self.cache: dict[Any, Any] = {}

    @property
    def points(self) -> np.ndarray:
        """Every trial's point in the unit cube, row = trial number."""
        return self._points.view

    def created(self, number: int, params: Params, milestone: int) -> None:
        assert number == self._points.n
        self._points.append(self.space.to_unit(params) if self.space.ndim else 0.0)
        self.pending[number] = milestone

    def recorded(self, number: int, milestone: int, signed_value: float) -> None:
        level = self.levels.get(milestone)
        if level is None:
            level = self.levels[milestone] = Level()
        value = signed_value if math.isfinite(signed_value) else _INF
        level.numbers.append(number)
        level.values.append(value)
        level.seqs.append(self.results)
        self.results += 1

    def heading(self, number: int, milestone: int) -> None:
        self.pending[number] = milestone

    def settled(self, number: int) -> None:
        self.pending.pop(number, None)

    def failed(self, number: int) -> None:
        """A failed trial counts as the worst result at the milestone it was running towards."""
        milestone = self.pending.pop(number, None)
        if milestone is not None:
            self.recorded(number, milestone, _INF)
