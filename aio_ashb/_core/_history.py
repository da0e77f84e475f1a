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
    """A growable array: appends in amortized O(1), read as a view without copying."""

    __slots__ = ("_a", "n")

    def __init__(self, width: int = 0, dtype: Any = float) -> None:
        self._a = np.empty((16, width) if width else 16, dtype=dtype)
        self.n = 0

    def append(self, row: Any) -> None:
        if self.n == len(self._a):
            grown = np.empty((2 * self.n, *self._a.shape[1:]), dtype=self._a.dtype)
            grown[: self.n] = self._a
            self._a = grown
        self._a[self.n] = row
        self.n += 1

    def extend(self, rows: np.ndarray) -> None:
        """Append many rows at once (restoring a snapshot)."""
        end = self.n + len(rows)
        if end > len(self._a):
            grown = np.empty((max(end, 2 * self.n), *self._a.shape[1:]), dtype=self._a.dtype)
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : end] = rows
        self.n = end

    @property
    def view(self) -> np.ndarray:
        return self._a[: self.n]

    def __setitem__(self, i: int, value: Any) -> None:
        self._a[i] = value


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

    __slots__ = ("space", "_points", "_towards", "levels", "pending", "results", "cache")

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._points = _Column(max(space.ndim, 1))
        self.results = 0  # results recorded so far, at any milestone
        self.levels: dict[int, Level] = {}  # milestone -> results recorded there
        self.pending: dict[int, int] = {}  # trial number -> the milestone it is running towards
        self._towards = _Column(dtype=np.int64)  # the same by trial number, -1: not running
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
        self._towards.append(milestone)
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
        self._towards[number] = milestone

    def settled(self, number: int) -> None:
        self.pending.pop(number, None)
        self._towards[number] = -1

    def failed(self, number: int) -> None:
        """A failed trial counts as the worst result at the milestone it was running towards."""
        milestone = self.pending.pop(number, None)
        self._towards[number] = -1
        if milestone is not None:
            self.recorded(number, milestone, _INF)

    def restore_pending(self, items: list[tuple[int, int]]) -> None:
        """Set the running trials (restoring a snapshot: every point is already there)."""
        self.pending = dict(items)
        towards = np.full(self._points.n, -1, dtype=np.int64)
        if items:
            pairs = np.array(items, dtype=np.int64)
            towards[pairs[:, 0]] = pairs[:, 1]
        self._towards = _Column(dtype=np.int64)
        self._towards.extend(towards)

    def running_towards(self, milestone: int, limit: int) -> np.ndarray:
        """The numbers of the latest ``limit`` trials running towards ``milestone`` or below,
        ascending. With many trials running (when it matters) they are read from the end of a
        by-number array in blocks, usually one or two; the dict of running trials is read when
        they are few, or when the blocks read pass eight times their count (most of them run
        towards higher milestones): either way, the cost is bounded by the running trials."""
        pending = self.pending
        if len(pending) > limit:
            towards = self._towards.view
            found: list[np.ndarray] = []
            count, end, budget = 0, len(towards), len(towards) - 8 * len(pending)
            while end > 0 and count < limit and end > budget:
                start = max(0, end - 4096)
                block = towards[start:end]
                hits = np.flatnonzero((block >= 0) & (block <= milestone)) + start
                found.append(hits)
                count += len(hits)
                end = start
            if count >= limit or end == 0:
                numbers = np.concatenate(found[::-1]) if len(found) > 1 else found[0]
                return numbers[-limit:]
        numbers = np.fromiter(pending.keys(), dtype=np.int64, count=len(pending))
        targets = np.fromiter(pending.values(), dtype=np.int64, count=len(pending))
        return np.sort(numbers[targets <= milestone])[-limit:]
