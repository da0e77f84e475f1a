"""Executors: where trial code runs. The runner hands every call of the objective to one
(a coroutine objective on the :class:`LoopExecutor` is awaited directly: ``awaits_in_place``).

The interface is one method, :meth:`Executor.submit` ("run ``fn(*args)`` there and give me its
result"), plus a lifecycle. What differs between executors is what they can run:

==================  ===================================  ==========================================
executor            runs                                 on cancellation (or ``trial_timeout``)
==================  ===================================  ==========================================
LoopExecutor        ``async def`` objectives, here       the coroutine is cancelled at its next await
ThreadExecutor      ``def`` objectives, in threads       the call cannot be stopped: it is abandoned
                                                         (runs on unheard; its reports are refused)
ProcessExecutor     budget-style functions, in worker    the worker process is killed and replaced
                    processes
DaskExecutor        budget-style functions, on a Dask    the Dask future is cancelled; a task already
                    cluster (``_dask.py``)               running on a worker finishes there unheard
==================  ===================================  ==========================================

Trial-style objectives (``fn(trial)``) talk to the runner while they run, so they need an
executor in this process (``runs_trials``). Budget-style ones (``fn(params, budget, checkpoint)``)
are one call per rung segment and run anywhere their arguments can be pickled to.
"""

from aio_ashb._executors._base import Executor
from aio_ashb._executors._dask import DaskExecutor
from aio_ashb._executors._local import LoopExecutor, ThreadExecutor
from aio_ashb._executors._process import ProcessExecutor

__all__ = ["DaskExecutor", "Executor", "LoopExecutor", "ProcessExecutor", "ThreadExecutor"]
