"""Storage backends: an append-only event log per study (see :class:`Storage`)."""

from aio_ashb.storage._base import Storage, StudyInfo
from aio_ashb.storage._memory import MemoryStorage
from aio_ashb.storage._sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "StudyInfo"]
