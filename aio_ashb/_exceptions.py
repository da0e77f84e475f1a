"""Every error aio_ashb raises derives from one root, :class:`AioAshbError`.

::

    AioAshbError
     ├── ConfigError            (also ValueError)  bad space, scheduler, sampler or study argument
     │    ├── MissingDependencyError (also ImportError) an optional extra is not installed
     │    └── ObjectiveMisuseError                 the objective cannot run where it was sent
     ├── ReportError            (also ValueError)  a reported value or step that cannot be recorded
     ├── StateError             (also RuntimeError) an operation the current state forbids
     ├── StorageError                               the storage cannot do what was asked
     │    ├── StudyNotFoundError  (also KeyError)
     │    ├── DuplicateStudyError
     │    ├── StudyLockedError                      another runner holds the study's lease
     │    ├── StorageLocationError                  missing directory, or a read-only location
     │    ├── NotADatabaseError                     the file is not an aio_ashb SQLite database
     │    ├── CorruptDatabaseError                  SQLite reports the database is damaged
     │    └── SchemaVersionError                    written by a newer aio_ashb
     ├── TooManyFailuresError                       ``max_failures`` trials failed in one ``run()``
     ├── WorkerLostError                            the process running a trial died (retryable)
     ├── RemoteError                                trial code raised in another process
     └── TrialStopped                               raised in a trial that reports after it ended

``TrialStopped`` is control flow, not a failure: the runner catches it, so an objective that lets
it propagate simply ends. Third-party errors are converted where they enter (storage backends
turn driver errors into :class:`StorageError`).
"""

from __future__ import annotations

__all__ = [
    "AioAshbError",
    "ConfigError",
    "CorruptDatabaseError",
    "MissingDependencyError",
    "ObjectiveMisuseError",
    "DuplicateStudyError",
    "NotADatabaseError",
    "RemoteError",
    "ReportError",
    "SchemaVersionError",
    "StateError",
    "StorageError",
    "StorageLocationError",
    "StudyLockedError",
    "StudyNotFoundError",
    "TooManyFailuresError",
    "TrialStopped",
    "WorkerLostError",
]


class AioAshbError(Exception):
    """Root of every exception raised by aio_ashb."""


class ConfigError(AioAshbError, ValueError):
    """An argument describing the search space, scheduler, sampler or study is invalid."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional part was used without its extra installed; the message says what to install."""


class ObjectiveMisuseError(ConfigError):
    """The objective cannot be run as given (a wrong kind for its executor, not picklable...).
    Not a trial failure: every trial would fail the same way, so the run ends with it."""


class ReportError(AioAshbError, ValueError):
    """A reported value or step cannot be recorded (not a number, step not increasing...)."""


class StateError(AioAshbError, RuntimeError):
    """The operation is not allowed in the current state (closed study, finished trial...)."""


class StorageError(AioAshbError):
    """The storage backend failed or refused the request."""


class StudyNotFoundError(StorageError, KeyError):
    """No study with the requested name exists in the storage."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateStudyError(StorageError):
    """A study with the requested name already exists (use ``load_if_exists=True``)."""


class StudyLockedError(StorageError):
    """Another runner holds the study's lease; the message names it and when it expires."""


class StorageLocationError(StorageError):
    """The database cannot be created or written where it was asked (missing directory,
    read-only file or directory)."""


class NotADatabaseError(StorageError):
    """The file exists but is not a SQLite database written by aio_ashb."""


class CorruptDatabaseError(StorageError):
    """SQLite reports the database file as damaged."""


class SchemaVersionError(StorageError):
    """The database was written by a newer aio_ashb than this one."""


class TooManyFailuresError(AioAshbError):
    """More trials failed than ``max_failures`` allows; the last traceback is attached."""


class TrialStopped(AioAshbError):
    """Raised by ``Trial.report`` when the trial has already been stopped or completed."""


class WorkerLostError(AioAshbError):
    """The worker running a trial died (a killed process, a lost Dask worker). ``run(retries=N)``
    runs the trial's segment again up to N times before recording the trial FAILED."""


class RemoteError(AioAshbError):
    """Trial code raised in another process (a worker process, a cluster); ``str()`` is the
    traceback as formatted there, which the runner stores with the FAILED trial."""
