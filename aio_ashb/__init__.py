"""aio_ashb: Asynchronous Successive Halving and asynchronous Hyperband for asyncio.

General layout (imports flow downward only; tests/test_layers.py checks):

* ``_core/`` - sans-IO: search space, samplers, rung geometry, the ASHA state machine;
* ``storage/`` - the ``Storage`` contract and its backends (append-only event logs);
  ``events.py`` (public) - the events of the log, for backends;
* ``_trial.py`` - the handle an objective receives, and the protocol it talks to its runner by;
* ``_journal.py`` - a study's core and log, changed together: the one commit path;
* ``_objective.py`` - what kind an objective is, and the caller that calls it;
* ``_executors/`` - where trial code runs: the loop, threads, processes, Dask;
* ``_runner.py`` - one ``run()``; ``_study.py`` - the Study facade; ``_factory.py`` - making studies;
* ``_report.py`` / ``_progress.py`` - status snapshots and the live progress display;
* ``plots.py``, ``simulation.py``, ``demo.py`` (public) and ``cli.py`` - what users look at.

Everything public is re-exported here; the underscored modules are private.
"""

from aio_ashb._core import (
    ASHA,
    Categorical,
    Constant,
    Decision,
    Direction,
    Float,
    FrozenTrial,
    Int,
    RandomSampler,
    Sampler,
    SearchSpace,
    TPESampler,
    TrialState,
)
from aio_ashb._exceptions import (
    AioAshbError,
    ConfigError,
    CorruptDatabaseError,
    DuplicateStudyError,
    MissingDependencyError,
    NotADatabaseError,
    ObjectiveMisuseError,
    RemoteError,
    ReportError,
    SchemaVersionError,
    StateError,
    StorageError,
    StorageLocationError,
    StudyLockedError,
    StudyNotFoundError,
    TooManyFailuresError,
    TrialStopped,
    WorkerLostError,
)
from aio_ashb._executors import DaskExecutor, Executor, LoopExecutor, ProcessExecutor, ThreadExecutor
from aio_ashb._factory import create_study, delete_study, load_study
from aio_ashb._report import RungStatus, StudyStatus
from aio_ashb._study import AskedJob, Study
from aio_ashb._trial import ThreadTrial, Trial
from aio_ashb.storage import MemoryStorage, SQLiteStorage, Storage

__version__ = "0.1.0"

__all__ = [
    "ASHA",
    "AioAshbError",
    "AskedJob",
    "Categorical",
    "ConfigError",
    "Constant",
    "CorruptDatabaseError",
    "DaskExecutor",
    "Decision",
    "Direction",
    "DuplicateStudyError",
    "Executor",
    "Float",
    "FrozenTrial",
    "Int",
    "LoopExecutor",
    "MemoryStorage",
    "MissingDependencyError",
    "NotADatabaseError",
    "ObjectiveMisuseError",
    "ProcessExecutor",
    "RandomSampler",
    "RemoteError",
    "ReportError",
    "RungStatus",
    "SQLiteStorage",
    "Sampler",
    "SchemaVersionError",
    "SearchSpace",
    "StateError",
    "Storage",
    "StorageError",
    "StorageLocationError",
    "Study",
    "StudyLockedError",
    "StudyNotFoundError",
    "StudyStatus",
    "TPESampler",
    "ThreadExecutor",
    "ThreadTrial",
    "TooManyFailuresError",
    "Trial",
    "TrialState",
    "TrialStopped",
    "WorkerLostError",
    "create_study",
    "delete_study",
    "load_study",
    "__version__",
]
