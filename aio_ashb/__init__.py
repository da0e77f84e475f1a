"""aio_ashb: Asynchronous Successive Halving and asynchronous Hyperband for asyncio.

General layout (imports flow downward only):

* ``_core/`` - sans-IO: search space, samplers, rung geometry, the ASHA state machine;
* ``storage/`` - the ``Storage`` contract and its backends (append-only event logs);
* ``_trial.py`` - the handle an objective receives;
* ``_executors.py`` - where trial code runs: the loop, threads, processes (``_dask.py``: Dask);
* ``_study.py`` - the runner, the one place where core, storage and executors meet;
* ``_report.py`` / ``_progress.py`` - status snapshots and the live progress display;
* ``plots.py`` (public) - plot data and drawing; ``demo.py`` (public) - the demo's objective;
* ``cli.py`` - the ``aio-ashb`` command.

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
