"""``run(freeze_gc=True)``: keep CPython's cyclic collector off the paused trials.

In promotion mode most trials wait, paused, until the study ends: each is a suspended coroutine
with its task, 7 objects the collector tracks, and every full collection walks
all of them. At 100,000 trials (98,600 paused at the end) that was half of a run's time and pauses of
600 ms (``bench/flat.py``, before a run let go of the trials it can never promote: 32,000 are
left). ``gc.freeze()`` moves every object tracked so far into the permanent
generation, which collections skip; it is O(1) on CPython 3.11 to 3.13 (it splices the
generations' lists). With this option the
runner freezes each time the number of suspended trials has grown by 2 % past the last freeze
(from 1,000 on), so that collections walk about 2 % of the paused trials.

It acts on the whole process, hence an option, off by default. While it is on, garbage in
reference cycles waits for the end of the run when its objects were frozen (while alive, or as
garbage the collector had not reached yet); refcounting frees everything else as usual. When
the last run using it in the process ends, ``gc.unfreeze()`` gives every frozen object back to
the collector, a freeze the application made meanwhile included. A process that had frozen
objects of its own before (a pre-fork server does, once its application is imported) gets a
warning and no freezing: its frozen objects and the run's could not be told apart, and
unfreezing neither would keep every cycle frozen with them alive for good. "Its own" means more
than were frozen when aio_ashb was imported (``INTERPRETERS_OWN``: CPython 3.12 keeps objects
there itself), so a freeze made before that import is not told apart from the interpreter's.
"""

from __future__ import annotations

import gc
import threading
import warnings

#: Freeze once this many trials are suspended, then each time their number grows by GROWTH.
FIRST = 1_000
GROWTH = 1.02
#: What the interpreter keeps in the permanent generation itself, as found when aio_ashb is
#: imported: nothing on CPython 3.11 and 3.13, but 3.12's collector moves every immortal object
#: it meets there (its built-in types' MRO and bases tuples: 375 objects on 3.12.1, before any
#: code runs), so a count above zero is no sign of an application's ``gc.freeze()`` there; only a
#: count above this one is. (An unfreeze gives them back to the oldest generation, and the next
#: collection moves them back.)
INTERPRETERS_OWN = gc.get_freeze_count()

_lock = threading.Lock()  # (runs of several event loops, in threads)
_active = 0  # runs of this process with the option on
_off = False  # the process had frozen objects when the first of them began: freeze nothing


class Freezer:
    """One run's use of the option: :meth:`suspended` and :meth:`resumed` around every wait of
    a paused trial, :meth:`close` once."""

    __slots__ = ("_count", "_next", "_open")  # _next: the count to freeze at (None: never)

    def __init__(self) -> None:
        global _active, _off
        with _lock:
            if _active == 0:
                _off = gc.get_freeze_count() > INTERPRETERS_OWN
            _active += 1
            off = _off
        self._count = 0  # trials suspended now
        self._next = FIRST if not off else None
        self._open = True
        if off:
            try:
                warnings.warn(
                    "run(freeze_gc=True) freezes nothing in this process: it has frozen objects of "
                    "its own (gc.freeze()), which the run's end could not tell apart from the run's",
                    RuntimeWarning,
                    stacklevel=4,
                )
            except BaseException:  # warnings as errors: this run does not count either
                self.close()
                raise

    def suspended(self) -> None:
        """One more trial is suspended."""
        self._count += 1
        if self._next is not None and self._count >= self._next:
            gc.freeze()
            self._next = max(FIRST, int(self._count * GROWTH) + 1)

    def resumed(self) -> None:
        """A suspended trial's wait is over."""
        self._count -= 1

    def close(self) -> None:
        global _active
        if not self._open:
            return
        self._open = False
        with _lock:
            _active -= 1
            if _active == 0 and not _off:
                gc.unfreeze()
