"""Executors: where trial code runs. The runner hands every call of the objective to one.

The interface is one method, :meth:`Executor.submit` ("run ``fn(*args)`` there and give me its
result"), plus a lifecycle. What differs between executors is what they can run:

==================  ===================================  ==========================================
executor            runs                                 on cancellation (or ``trial_timeout``)
==================  ===================================  ==========================================
LoopExecutor        ``async def`` objectives, here       the coroutine is cancelled at its next await
ThreadExecutor      ``def`` objectives, in threads       the call cannot be stopped: it is waited for
                                                         (trial-style ones end at their next report)
ProcessExecutor     budget-style functions, in worker    the worker process is killed and replaced
                    processes
DaskExecutor        budget-style functions, on a Dask    the Dask future is cancelled; a task already
                    cluster (``aio_ashb._dask``)         running on a worker finishes there unheard
==================  ===================================  ==========================================

Trial-style objectives (``fn(trial)``) talk to the runner while they run, so they need an
executor in this process (``runs_trials``). Budget-style ones (``fn(params, budget, checkpoint)``)
are one call per rung segment and run anywhere their arguments can be pickled to.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pickle
import signal
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.to_thread

from aio_ashb._exceptions import ConfigError, ObjectiveMisuse, RemoteError, StateError, WorkerLostError

if TYPE_CHECKING:
    import multiprocessing.connection

__all__ = ["Executor", "LoopExecutor", "ProcessExecutor", "ThreadExecutor"]


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Executor(ABC):
    """Where calls of the objective run. Subclass it to send trials somewhere else.

    Contract, for :meth:`submit` and the runner that calls it:

    * ``submit(fn, *args)`` runs ``fn(*args)`` (awaiting the result if it is awaitable) and returns
      what it returned. If ``fn`` raised, ``submit`` raises: the same exception for executors in
      this process, :class:`RemoteError` carrying the remote traceback for the others.
    * If the worker running the call died (a killed process, a lost cluster node), ``submit``
      raises :class:`WorkerLostError`; the runner retries such trials (``run(retries=N)``).
    * If the task awaiting ``submit`` is cancelled, ``submit`` stops the call as well as the
      engine allows, before re-raising the cancellation: the class docstrings say how far that is.
    * ``submit`` may be called concurrently (one call per running trial); an executor with fewer
      workers than calls queues them.
    * :meth:`start` runs before the first ``submit`` and :meth:`aclose` after the last, both on
      the study's event loop. ``run()`` starts an executor that is not started yet and closes it
      at its end; start one yourself (``async with executor:``) to keep it across runs.
    """

    #: Can run trial-style objectives ``fn(trial)``: the call is in this process, so the trial
    #: handle can talk to the runner.
    runs_trials: ClassVar[bool] = False
    #: Accepts ``async def`` functions / plain ``def`` functions.
    runs_async: ClassVar[bool] = True
    runs_sync: ClassVar[bool] = True

    _started = False
    _closed = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def workers(self) -> int | None:
        """How many calls run at once (``run()``'s default ``concurrency``); ``None``: no bound."""
        return None

    async def start(self) -> None:
        if self._closed:
            raise StateError(f"{type(self).__name__} is closed; create a new one")
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        self._closed = True

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    @abstractmethod
    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``fn(*args)`` on this executor and return its result (see the class contract)."""

    def check(self, fn: Callable[..., Any], *, is_async: bool, trial_style: bool) -> None:
        """Raise :class:`ObjectiveMisuse` (a :class:`ConfigError`) if ``fn`` cannot run here."""
        name = type(self).__name__
        if trial_style and not self.runs_trials:
            raise ObjectiveMisuse(
                f"{name} runs budget-style objectives fn(params, budget, checkpoint); "
                f"{_describe(fn)} takes a trial, which only works in this process "
                "(LoopExecutor for async def, ThreadExecutor for def)"
            )
        if is_async and not self.runs_async:
            raise ObjectiveMisuse(f"{name} runs plain functions; {_describe(fn)} is async (use LoopExecutor)")
        if not is_async and not self.runs_sync:
            raise ObjectiveMisuse(
                f"{name} runs coroutine functions; {_describe(fn)} is a plain function and would "
                "block the event loop (use ThreadExecutor or ProcessExecutor)"
            )

    def _check_started(self) -> None:
        if not self._started:
            raise StateError(f"{type(self).__name__} is not started (use 'async with' or run())")


class LoopExecutor(Executor):
    """Runs coroutine functions on the study's own event loop (the default for ``async def``).

    Cancellation cancels the coroutine at its next ``await``; nothing outlives ``run()``.
    """

    runs_trials = True
    runs_sync = False

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        return await fn(*args)


class ThreadExecutor(Executor):
    """Runs plain functions in worker threads (the default for ``def`` objectives).

    The number of threads in use is the run's ``concurrency``: a trial-style objective that is
    paused keeps its (sleeping) thread, so the pool itself has no bound that could deadlock it.
    A thread cannot be interrupted: on cancellation or ``trial_timeout`` the call is waited for;
    trial-style objectives end at their next ``report()`` or ``steps()``, budget-style calls when
    they return. Use :class:`ProcessExecutor` when calls must be stoppable.
    """

    runs_trials = True
    runs_async = False

    def __init__(self) -> None:
        self._limiter = anyio.CapacityLimiter(float("inf"))

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


# --------------------------------------------------------------------------- processes
def _serve(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: run the calls it receives, one at a time, until told to stop."""
    # Ctrl-C reaches the whole process group; the coordinator decides what happens to trials
    # (it interrupts them and kills busy workers), so a worker must not die of it on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the coordinator is gone
            return
        except Exception:
            conn.send((False, traceback.format_exc()))  # a function this process cannot import
            continue
        if message is None:
            return
        fn, args = message
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            reply: tuple[bool, Any] = (True, result)
            conn.send(reply)
        except Exception:
            conn.send((False, traceback.format_exc()))


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _Worker:
    __slots__ = ("conn", "process")

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn


def _exit_description(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessExecutor(Executor):
    """Runs budget-style functions in a pool of worker processes (for CPU-bound training).

    ``max_workers`` processes (default: the number of CPUs) are started on first use, with the
    ``spawn`` method (``forkserver`` is the alternative): ``fork`` would copy this process's
    threads and locks mid-use. So functions and their arguments are pickled: define the
    objective at module level, and guard a script's entry point with
    ``if __name__ == "__main__":``. A worker runs one call at a time and is reused.

    Cancellation or ``trial_timeout`` kills the process running the call (SIGTERM, then SIGKILL
    after ``kill_grace`` seconds); a fresh process takes its place on the next call. A worker
    that dies by itself (a segfault, the OOM killer, SIGKILL) makes ``submit`` raise
    :class:`WorkerLostError`, never hang.
    """

    runs_trials = False

    def __init__(
        self, max_workers: int | None = None, *, start_method: str = "spawn", kill_grace: float = 1.0
    ) -> None:
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ConfigError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        if start_method not in ("spawn", "forkserver"):
            raise ConfigError(
                f"start_method must be 'spawn' or 'forkserver', got {start_method!r} "
                "('fork' is unsafe in a process that runs threads)"
            )
        if not isinstance(kill_grace, (int, float)) or not kill_grace >= 0:
            raise ConfigError(f"kill_grace must be a number >= 0, got {kill_grace!r}")
        self._max_workers = max_workers
        import multiprocessing  # here: a study that never uses processes does not load it

        self._context: Any = multiprocessing.get_context(start_method)
        self._kill_grace = float(kill_grace)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots = anyio.Semaphore(max_workers)
        # Threads that wait on workers' pipes: one per busy worker, plus ones being abandoned.
        self._threads = anyio.CapacityLimiter(2 * max_workers + 2)

    @property
    def workers(self) -> int:
        return self._max_workers

    @property
    def pids(self) -> list[int]:
        """The process ids of the live worker processes."""
        return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        self._check_started()
        try:
            message = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ObjectiveMisuse(
                f"ProcessExecutor cannot send {_describe(fn)} to a worker process: {exc!r}. "
                "Define the function at module level (not a lambda or a local function)"
            ) from exc
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            try:
                ok, payload = await self._roundtrip(worker, message, fn)
            except BaseException:
                # Cancelled, timed out or dead: the process is stopped and never reused.
                with anyio.CancelScope(shield=True):
                    await self._stop(worker)
                raise
            self._idle.append(worker)
        if not ok:
            raise RemoteError(payload)
        return payload

    async def _roundtrip(self, worker: _Worker, message: bytes, fn: Callable[..., Any]) -> tuple[bool, Any]:
        conn = worker.conn
        try:
            await anyio.to_thread.run_sync(conn.send_bytes, message, limiter=self._threads)
            # Abandoned on cancellation: the thread returns (EOF) once the process is killed.
            reply: tuple[bool, Any] = await anyio.to_thread.run_sync(
                conn.recv, abandon_on_cancel=True, limiter=self._threads
            )
            return reply
        except (EOFError, OSError) as exc:
            proc = worker.process
            await anyio.to_thread.run_sync(proc.join, 5.0, limiter=self._threads)
            raise WorkerLostError(
                f"worker process {proc.pid} {_exit_description(proc.exitcode)} while running {_describe(fn)}"
            ) from exc

    async def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(child,), daemon=True, name="aio_ashb worker")
        await anyio.to_thread.run_sync(process.start, limiter=self._threads)
        child.close()
        worker = _Worker(process, parent)
        self._all.add(worker)
        return worker

    def _reap(self, worker: _Worker, politely: bool) -> None:
        """Blocking: end ``worker``'s process (asked to stop, else SIGTERM, then SIGKILL)."""
        proc = worker.process
        if politely:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            proc.join(self._kill_grace)
        if proc.is_alive():
            proc.terminate()
            proc.join(self._kill_grace)
        if proc.is_alive():
            proc.kill()
            proc.join()
        worker.conn.close()
        proc.close()

    async def _stop(self, worker: _Worker, *, politely: bool = False) -> None:
        self._all.discard(worker)
        await anyio.to_thread.run_sync(self._reap, worker, politely, limiter=self._threads)

    async def aclose(self) -> None:
        """Stop every worker process: idle ones are asked to exit, busy ones are killed."""
        workers = list(self._all)
        self._idle.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for w in workers:
                    tg.start_soon(partial(self._stop, w, politely=True))
        await super().aclose()
