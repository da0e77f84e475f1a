"""The sans-IO core: search space, samplers, rung geometry and the ASHA state machine.

Standard library, numpy and sortedcontainers only: no asyncio, anyio, sqlite, threads or clocks
(``tests/core/test_imports.py`` checks). Time and randomness are passed in; events go in through
``Core.apply`` and decisions come out, so everything here is tested with plain calls.
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
)
from aio_ashb._core._machine import Core, FrozenTrial, check_step, check_value
from aio_ashb._core._sampler import RandomSampler, Sampler, sampler_from_dict
from aio_ashb._core._scheduler import ASHA
from aio_ashb._core._space import Categorical, Constant, Float, Int, Params, SearchSpace

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
    "TrialCreated",
    "TrialEnded",
    "TrialInterrupted",
    "TrialPromoted",
    "TrialResumed",
    "TrialState",
    "check_step",
    "check_value",
    "sampler_from_dict",
]
