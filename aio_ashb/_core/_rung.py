"""One rung: the results recorded at a milestone, and the paused trials waiting there.

ASHA only ever asks a rung one question: "is this key among the best ``floor(n / eta)``?" (for
the promotion of the best waiting trial, and for the stopping rule). So a rung keeps its results
split in two binary heaps: ``top``, a max-heap holding exactly the best ``floor(n / eta)`` keys,
and ``rest``, a min-heap of the others. Adding a result is a push (O(1) on average, O(log n) at
worst) plus at most one move between the heaps, since the size of ``top`` grows by at most one
per result; the question is then one comparison with the worst key of ``top``. Unlike a sorted
list, nothing is shifted in memory and the cost stays flat as the rung grows to 100,000 results.

Keys are ``(signed value, trial number)`` tuples, unique per trial (see ``_machine.Key``).
``top`` stores them negated, ``(-value, -number)``, so that ``heapq``'s min-heap is a max-heap.
"""

from __future__ import annotations

from heapq import heappop, heappush, heappushpop
from typing import TypeAlias

Key: TypeAlias = tuple[float, int]


class Rung:
    __slots__ = ("eta", "gone", "milestone", "rest", "settled", "top", "waiting")

    def __init__(self, milestone: int, eta: int) -> None:
        self.milestone = milestone
        self.eta = eta
        self.top: list[Key] = []  # negated keys of the best floor(n / eta) results
        self.rest: list[Key] = []  # the other results
        # Paused trials not yet promoted out of this rung: a min-heap with lazy deletion
        # (``gone`` holds keys removed from the middle; they are dropped when they surface).
        self.waiting: list[Key] = []
        self.gone: set[Key] = set()
        # True when the rung is known to have nothing promotable. Only a change to this rung can
        # change that, and every change clears the flag, so get_job skips unchanged rungs.
        self.settled = True

    def __len__(self) -> int:
        return len(self.top) + len(self.rest)

    def add(self, key: Key) -> None:
        """Record a result: O(1) on average, O(log n) at worst."""
        top = self.top
        if top:
            worst = top[0]
            if key < (-worst[0], -worst[1]):  # better than the worst of the top: swap them
                out = heappushpop(top, (-key[0], -key[1]))
                key = (-out[0], -out[1])
        heappush(self.rest, key)
        if len(top) < (len(top) + len(self.rest)) // self.eta:
            best = heappop(self.rest)
            heappush(top, (-best[0], -best[1]))
        self.settled = False

    def in_top(self, key: Key) -> bool:
        """Whether a recorded ``key`` ranks among the best ``floor(n / eta)`` results."""
        top = self.top
        if not top:
            return False
        worst = top[0]
        return key <= (-worst[0], -worst[1])

    def leads(self, key: Key) -> bool:
        """Whether a recorded ``key`` ranks among the best ``max(1, floor(n / eta))`` results
        (the stopping rule: with fewer than eta results only the best one continues)."""
        if self.top:
            return self.in_top(key)
        return bool(self.rest) and self.rest[0] == key

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
        while waiting and waiting[0] in gone:
            gone.discard(heappop(waiting))
        return waiting[0] if waiting else None

    def promotable(self) -> Key | None:
        """The best waiting trial if it is among the best ``floor(n / eta)``, else None."""
        if not self.settled:
            best = self.best_waiting()
            if best is not None and self.in_top(best):
                return best
            self.settled = True
        return None

    # ---------------------------------------------------------------- reports (not hot)
    def ranked(self) -> list[Key]:
        """Every key, best first (a sort: for reports and tests)."""
        return sorted([*self.rest, *((-v, -n) for v, n in self.top)])

    def waiting_keys(self) -> list[Key]:
        return [k for k in self.waiting if k not in self.gone]
