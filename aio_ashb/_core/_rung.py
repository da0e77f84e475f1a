"""One rung: the results recorded at a milestone, and the paused trials waiting there.

ASHA only ever asks a rung one question: "is this key among the best ``floor(n / eta)``?" (for
the promotion of the best waiting trial, and for the stopping rule). So a rung keeps its results
split in two binary heaps: ``top``, a max-heap holding exactly the best ``floor(n / eta)`` keys,
and ``rest``, a min-heap of the others. Adding a result is a push plus at most one move between
the heaps, since the size of ``top`` grows by at most one per result: O(log n). A move (about
2 results in eta, for results in random order) walks a heap from root to leaf, so an add costs
about ``2 / eta * log2(n)`` comparisons on average: 1.4 µs at 1,000 results, 2.0 µs at 100,000
(``Rung.add`` alone, on the benchmark machine). The question is then one comparison with
``cut``, the worst key of ``top`` kept un-negated beside the heap. Unlike a sorted list,
nothing is shifted in memory.

Keys are ``(signed value, trial number)`` tuples, unique per trial (see ``_machine.Key``).
``top`` stores them as ``(-value, -number, key)``, so that ``heapq``'s min-heap is a max-heap
(the negated pair is unique, so the key itself is never compared); carrying the key means a
result leaving ``top``, and ``cut``, cost no new tuple. Comparisons and tuple building are
what a rung's time goes to, so ``add`` does as few of each as it can.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from heapq import heappop, heappush, heappushpop, nsmallest
from typing import Any, TypeAlias

Key: TypeAlias = tuple[float, int]

# heapq's max-heaps (a rung's hope: its worst key at the root, the keys themselves stored, so a
# push allocates nothing): public from CPython 3.14, private but the same C functions before.
heapify_max: Callable[[list[Any]], None] = getattr(heapq, "heapify_max", None) or heapq._heapify_max
heapreplace_max: Callable[[list[Any], Any], Any] = (
    getattr(heapq, "heapreplace_max", None) or heapq._heapreplace_max  # type: ignore[attr-defined]
)
_TopEntry: TypeAlias = tuple[float, int, Key]

# The cut of a rung whose top is empty: it ranks before every key (keys hold a finite value or
# +inf, and a number >= 0), so "key < cut" and "key <= cut" are false, as they must be.
_EMPTY_CUT: Key = (-math.inf, -1)
# The best key of an empty rung: every key ranks before it.
_NO_BEST: tuple[float, float] = (math.inf, math.inf)


class Rung:
    __slots__ = (
        "best",
        "cut",
        "eta",
        "gone",
        "hope",
        "milestone",
        "n",
        "rest",
        "room",
        "settled",
        "to",
        "top",
        "waiting",
    )

    def __init__(self, milestone: int, eta: int, index: int = 0) -> None:
        self.milestone = milestone
        self.eta = eta
        self.to = index + 1  # the rung of its bracket that a promotion from here goes to
        self.n = 0  # results recorded; len(top) == n // eta
        self.best: Key | tuple[float, float] = _NO_BEST  # the best key recorded (when n > 0)
        self.top: list[_TopEntry] = []  # the best floor(n / eta) results, (-value, -number, key)
        self.rest: list[Key] = []  # the other results
        self.cut: Key = _EMPTY_CUT  # the worst key of top (un-negated), so tests are one compare
        # Paused trials not yet promoted out of this rung: a min-heap with lazy deletion
        # (``gone`` holds keys removed from the middle; they are dropped when they surface).
        self.waiting: list[Key] = []
        self.gone: set[Key] = set()
        # True when the rung is known to have nothing promotable. Only a change to this rung can
        # change that, and every change clears the flag, so get_job skips unchanged rungs.
        self.settled = True
        # Core.limit_results: while the rung can hold at most R results, at most room =
        # floor(R / eta) of them can ever be promoted; hope holds its best room keys (a list
        # until full, then a max-heap: its root is the worst of them). -1: no limit known.
        self.room = -1
        self.hope: list[Key] = []

    def __len__(self) -> int:
        return self.n

    def add(self, key: Key) -> bool:
        """Record a result: O(log n).

        Returns whether ``key`` now ranks among the best ``max(1, floor(n / eta))`` results: the
        stopping rule (with fewer than eta results only the best one continues), answered here
        from what the add already compared.
        """
        top = self.top
        rest = self.rest
        if key < self.cut:  # better than the worst of the top: it takes that one's place
            heappush(rest, heappushpop(top, (-key[0], -key[1], key))[2])
            self.cut = top[0][2]
            leads = True  # in the top, where nothing will push it out
        else:
            heappush(rest, key)
            leads = False
        self.n = n = self.n + 1
        if n % self.eta == 0:  # floor(n / eta) just grew by one: the best of the rest moves up
            best = heappop(rest)
            heappush(top, (-best[0], -best[1], best))
            self.cut = best  # worse than all of the top, since it was the best of the rest
            leads = leads or best == key
        elif not top:  # fewer than eta results: only the best one leads
            leads = rest[0] == key
        if key < self.best:
            self.best = key
        self.settled = False
        return leads

    def in_top(self, key: Key) -> bool:
        """Whether a recorded ``key`` ranks among the best ``floor(n / eta)`` results."""
        return key <= self.cut

    # ---------------------------------------------------------------- waiting trials
    def wait(self, key: Key) -> None:
        heappush(self.waiting, key)
        self.settled = False

    def unwait(self, key: Key) -> None:
        if self.waiting and self.waiting[0] == key:
            heappop(self.waiting)
        else:
            self.gone.add(key)
        self.settled = False

    def best_waiting(self) -> Key | None:
        waiting, gone = self.waiting, self.gone
        if gone:
            while waiting and waiting[0] in gone:
                gone.discard(heappop(waiting))
        return waiting[0] if waiting else None

    def promotable(self) -> Key | None:
        """The best waiting trial if it is among the best ``floor(n / eta)``, else None.

        Call it only on a rung that is not ``settled`` (get_job skips the settled ones)."""
        best = self.best_waiting()
        if best is not None and best <= self.cut:
            return best
        self.settled = True
        return None

    # ---------------------------------------------------------------- hopeless trials
    def limit(self, results_at_most: int | None) -> None:
        """Expect at most ``results_at_most`` = R results in this rung from now on (None: no
        limit). The best ``room = floor(R / eta)`` results recorded so far seed ``hope``.

        A rung of at most R results promotes only among its best floor(n / eta) <= room, and a
        later result never improves an earlier one's rank: a trial with ``room`` better results
        here is never promoted. Core._hope pushes into ``hope`` each key recorded here (in
        promotion mode, once the limit is set); a waiting trial's key that does not fit, or
        that a push drops, is such a trial. So ``hope`` holds the rung's best ``room`` keys."""
        if results_at_most is None:
            self.room, self.hope = -1, []
            return
        self.room = results_at_most // self.eta
        self.hope = nsmallest(self.room, [*self.rest, *(key for _, _, key in self.top)])
        if len(self.hope) == self.room:
            heapify_max(self.hope)

    # ---------------------------------------------------------------- reports (not hot)
    def ranked(self) -> list[Key]:
        """Every key, best first (a sort: for reports and tests)."""
        return sorted([*self.rest, *(key for _, _, key in self.top)])

    def waiting_keys(self) -> list[Key]:
        return [k for k in self.waiting if k not in self.gone]
