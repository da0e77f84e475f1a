"""``run(freeze_gc=True)``: keep CPython's cyclic collector off the paused trials.

In promotion mode most trials wait, paused, until the study ends: each is a suspended coroutine
with its task and future, about 13 objects the collector tracks, and every full collection walks
all of them. At 100,000 trials (about 70,000 paused) that was half of a run's time and pauses of
600 ms (``bench/flat.py``). ``gc.freeze()`` moves every object tracked so far into the permanent
generation, which collections skip; it costs O(1) (it splices lists). With this option the
runner freezes each time the number of suspended trials has grown by 2 % past the last freeze
(from 1,000 on), so that collections walk about 2 % of the paused trials.

It acts on the whole process, hence an option, off by default. While it is on, an object frozen
while alive that later becomes garbage in a reference cycle waits for the end of the run to be
collected (refcounting frees everything else as usual). When the last run using it in the process
ends, ``gc.unfreeze()`` gives every frozen object back to the collector, unless the process had
frozen objects of its own before (a pre-fork server does): it cannot tell them apart from the
run's, so it leaves them all frozen.
"""

from __future__ import annotations

import gc

#: Freeze once this many trials are suspended, then each time their number grows by GROWTH.
FIRST = 1_000
GROWTH = 1.02

_active = 0  # runs of this process with the option on
_had_frozen = False  # the process had frozen objects when the first of them began


class Freezer:
    """One run's use of the option: :meth:`suspended` on every pause, :meth:`close` once."""

    __slots__ = ("_next", "_open")

    def __init__(self) -> None:
        global _active, _had_frozen
        if _active == 0:
            _had_frozen = gc.get_freeze_count() > 0
        _active += 1
        self._next = FIRST
        self._open = True

    def suspended(self, count: int) -> None:
        """``count`` trials are suspended now."""
        if count >= self._next:
            gc.freeze()
            self._next = max(FIRST, int(count * GROWTH) + 1)

    def close(self) -> None:
        global _active
        if not self._open:
            return
        self._open = False
        _active -= 1
        if _active == 0 and not _had_frozen:
            gc.unfreeze()
