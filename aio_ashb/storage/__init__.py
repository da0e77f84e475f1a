"""Storage backends: an append-only event log per study (see :class:`Storage`)."""

from aio_ashb.storage._base import Storage, StudyInfo
from aio_ashb.storage._memory import MemoryStorage
from aio_ashb.storage._sqlite import Pickled, SQLiteStorage

__all__ = ["MemoryStorage", "Pickled", "SQLiteStorage", "Storage", "StudyInfo"]
