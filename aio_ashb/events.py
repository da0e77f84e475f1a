"""The events of a study's log, for storage backends: a backend stores and returns these.

Every change to a study is one of them, applied to the scheduler and appended to the storage
(see :class:`aio_ashb.storage.Storage`); replaying them rebuilds the study exactly.
"""

from aio_ashb._core import (
    Checkpointed,
    Enqueued,
    Event,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
)

__all__ = [
    "Checkpointed",
    "Enqueued",
    "Event",
    "Reported",
    "TrialCreated",
    "TrialEnded",
    "TrialInterrupted",
    "TrialPromoted",
    "TrialResumed",
    "TrialState",
]
