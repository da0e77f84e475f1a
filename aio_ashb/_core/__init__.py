"""The sans-IO core: search space, samplers, rung geometry and the ASHA state machine.

Standard library, numpy and sortedcontainers only: no asyncio, anyio, sqlite, threads or clocks
(``tests/core/test_imports.py`` checks). Time and randomness are passed in; events go in through
``Core.apply`` and decisions come out, so everything here is tested with plain calls.

Words, as every module uses them:

* *resource*: the budget unit a trial consumes (epochs, steps, minutes); a report's *step* is
  the resource it was made at.
* *milestone*: a resource at which the scheduler decides (``ASHA.milestones``); the last one is
  ``max_resource``.
* *rung*: an index, ``k``, into a bracket's milestones: rung ``k`` of bracket ``s`` sits at
  milestone ``min_resource * eta ** (s + k)``. ``TrialPromoted.rung`` and ``RungStatus.rung``
  are rungs; ``FrozenTrial.rung_values`` and ``FrozenTrial.resource`` are keyed by milestone.
* *bracket*: one successive-halving ladder of rungs (asynchronous Hyperband runs several).
* *states*: how many trials are in each ``TrialState`` (``Study.states``, ``StudyStatus.states``).
"""

from aio_ashb._core._events import (
    Checkpointed,
    Decision,
    Direction,
    Enqueued,
    Event,
    Job,
    Reported,
    TrialCreated,
    TrialEnded,
    TrialInterrupted,
    TrialPromoted,
    TrialResumed,
    TrialState,
    slot_setters,
)
from aio_ashb._core._frozen import FrozenTrial
from aio_ashb._core._machine import Core, check_step, check_value
from aio_ashb._core._sampler import RandomSampler, Sampler, sampler_from_dict
from aio_ashb._core._scheduler import ASHA
from aio_ashb._core._space import Categorical, Constant, Float, Int, Params, SearchSpace
from aio_ashb._core._tpe import TPESampler

__all__ = [
    "ASHA",
    "Categorical",
    "Checkpointed",
    "Constant",
    "Core",
    "Decision",
    "Direction",
    "Enqueued",
    "Event",
    "Float",
    "FrozenTrial",
    "Int",
    "Job",
    "Params",
    "RandomSampler",
    "Reported",
    "Sampler",
    "SearchSpace",
    "TPESampler",
    "TrialCreated",
    "TrialEnded",
    "TrialInterrupted",
    "TrialPromoted",
    "TrialResumed",
    "TrialState",
    "check_step",
    "check_value",
    "sampler_from_dict",
    "slot_setters",
]
