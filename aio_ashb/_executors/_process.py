"""ProcessExecutor: budget-style calls in a pool of worker processes of our own."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import traceback
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from aio_ashb._exceptions import ConfigError, ObjectiveMisuseError, RemoteError, WorkerLostError
from aio_ashb._executors._base import Executor
from aio_ashb._objective import describe

if TYPE_CHECKING:
    import multiprocessing.connection


def _serve(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: say it is ready, then run the calls it receives, one at a time."""
    # Ctrl-C reaches the whole process group; the coordinator decides what happens to trials
    # (it interrupts them and kills busy workers), so a worker must not die of it on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the coordinator is gone
                return
            except Exception:  # the call cannot be unpickled here (an unimportable function)
                conn.send((None, traceback.format_exc()))
                continue
            if message is None:
                return
            fn, args = message
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
                reply: tuple[bool | None, Any] = (True, result)
            except BaseException:  # SystemExit too: it is the code's outcome, not a lost worker
                reply = (False, traceback.format_exc())
            try:
                conn.send(reply)
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception:  # the result cannot be pickled
                conn.send((False, traceback.format_exc()))
    except (BrokenPipeError, ConnectionResetError):
        return  # the coordinator died while this worker ran a call


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _NotSent(WorkerLostError):
    """The worker was dead before the call could be sent: safe to send it elsewhere."""


class _Worker:
    __slots__ = ("conn", "process")

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn


def _wait_reply(worker: _Worker) -> Any:
    """Blocking: the worker's next message, or EOFError soon after its process has died.

    The pipe alone is not enough (nor the process's sentinel, another pipe): a child that the
    worker forked (a data loader, a pool) keeps both open after the worker itself died. So the
    wait wakes up every 0.2 s to ask the OS whether the worker is still alive.
    """
    conn, proc = worker.conn, worker.process
    while not conn.poll(0.2):
        if not proc.is_alive():
            if conn.poll(0):  # a reply sent just before dying still counts
                break
            raise EOFError
    return conn.recv()


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

    ``max_workers`` processes (default: the number of CPUs) are started together when the
    executor starts, with the ``spawn`` method (``forkserver`` is the alternative): ``fork``
    would copy this process's threads and locks mid-use. So functions and their arguments are
    pickled: define the objective at module level in a file, and guard a script's entry point
    with ``if __name__ == "__main__":``. A worker runs one call at a time and is reused.

    Cancellation or ``trial_timeout`` kills the process running the call (SIGTERM, then SIGKILL
    after ``kill_grace`` seconds); a fresh process takes its place on the next call. A worker
    that dies during a call (a segfault, the OOM killer, SIGKILL) makes ``submit`` raise
    :class:`WorkerLostError` at once, never hang; one found dead between calls is replaced.
    Workers that cannot start at all, or cannot import the objective, end the run with a
    :class:`ConfigError` saying why, instead of failing every trial.
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
        import multiprocessing  # here: a study that never uses processes does not load it

        self._max_workers = max_workers
        self._start_method = start_method
        self._context: Any = multiprocessing.get_context(start_method)
        self._kill_grace = float(kill_grace)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()

    @property
    def workers(self) -> int:
        return self._max_workers

    @property
    def pids(self) -> list[int]:
        """The process ids of the live worker processes."""
        return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    async def _open(self) -> None:
        self._slots = anyio.Semaphore(self._max_workers)
        # Threads that wait on workers' pipes: one per busy worker, plus ones being abandoned.
        self._threads = anyio.CapacityLimiter(2 * self._max_workers + 2)
        # All workers start now, in parallel: their start-up is not any trial's running time.
        failures: list[Exception] = []
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self._max_workers):
                    tg.start_soon(self._add_idle, failures)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise
        if failures:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise failures[0]  # every worker fails alike: one error says it

    async def _add_idle(self, failures: list[Exception]) -> None:
        try:
            self._idle.append(await self._spawn())
        except Exception as exc:
            failures.append(exc)

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        self._check_started()
        async with self._slots:
            worker = await self._take()
            try:
                try:
                    ok, payload = await self._call(worker, fn, args)
                except _NotSent:
                    # It died before the call reached it (found dead only now): nothing ran there.
                    with anyio.CancelScope(shield=True):
                        await self._stop(worker)
                    worker = await self._take()
                    ok, payload = await self._call(worker, fn, args)
            except BaseException:
                # Cancelled, timed out or dead: the process is stopped and never reused.
                with anyio.CancelScope(shield=True):
                    await self._stop(worker)
                raise
            if self._started:
                self._idle.append(worker)
            else:  # closed while this call ran
                with anyio.CancelScope(shield=True):
                    await self._stop(worker, politely=True)
        if ok is True:
            return payload
        if ok is None:
            raise ObjectiveMisuseError(
                f"worker processes cannot load {describe(fn)}: {payload.strip().splitlines()[-1]}. "
                "Define it in a module they can import (a file), not in a notebook, "
                "`python -c` or a script read from stdin"
            )
        raise RemoteError(payload)

    async def _take(self) -> _Worker:
        """An idle live worker, or a new one."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            # Died between calls (the OOM killer, a stray signal): no trial ran there; replace it.
            with anyio.CancelScope(shield=True):
                await self._stop(worker)
        worker = await self._spawn()
        if not self._started:
            with anyio.CancelScope(shield=True):
                await self._stop(worker)
            self._check_started()
        return worker

    async def _call(self, worker: _Worker, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
        proc = worker.process
        try:
            # Pickled in the thread: a large checkpoint does not hold up the event loop.
            await anyio.to_thread.run_sync(worker.conn.send, (fn, args), limiter=self._threads)
        except OSError as exc:
            await anyio.to_thread.run_sync(proc.join, 5.0, limiter=self._threads)
            raise _NotSent(
                f"worker process {proc.pid} {_exit_description(proc.exitcode)} before running {describe(fn)}"
            ) from exc
        except Exception as exc:
            raise ObjectiveMisuseError(
                f"ProcessExecutor cannot send {describe(fn)} to a worker process: {exc!r}. "
                "Define the function at module level (not a lambda or a local function)"
            ) from exc
        try:
            # Abandoned on cancellation: the thread returns once the process is killed.
            reply: tuple[Any, Any] = await anyio.to_thread.run_sync(
                _wait_reply, worker, abandon_on_cancel=True, limiter=self._threads
            )
        except (EOFError, OSError) as exc:
            await anyio.to_thread.run_sync(proc.join, 5.0, limiter=self._threads)
            raise WorkerLostError(
                f"worker process {proc.pid} {_exit_description(proc.exitcode)} while running {describe(fn)}"
            ) from exc
        return reply

    async def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(child,), daemon=True, name="aio_ashb worker")
        worker = _Worker(process, parent)
        try:
            await anyio.to_thread.run_sync(process.start, limiter=self._threads)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._all.add(worker)
        try:
            await anyio.to_thread.run_sync(_wait_reply, worker, abandon_on_cancel=True, limiter=self._threads)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._stop(worker)
            if isinstance(exc, (EOFError, OSError)):
                raise ObjectiveMisuseError(
                    f"a worker process could not start: it {_exit_description(process.exitcode)} "
                    f"(its error is on stderr). With the {self._start_method!r} start method each "
                    "worker imports the main module again: run your script from a file, with "
                    "`if __name__ == '__main__':` around its entry point"
                ) from exc
            raise
        return worker

    def _reap(self, worker: _Worker, politely: bool) -> None:
        """Blocking: end ``worker``'s process (asked to stop, else SIGTERM, then SIGKILL)."""
        proc = worker.process
        if politely and proc.is_alive():
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

    async def _stop(self, worker: _Worker, *, politely: bool = False) -> None:
        self._all.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        await anyio.to_thread.run_sync(self._reap, worker, politely, limiter=self._threads)

    async def _close(self) -> None:
        """Stop every worker process: idle ones are asked to exit, busy ones are killed."""
        idle = set(self._idle)
        workers = list(self._all)
        self._idle.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for w in workers:
                    tg.start_soon(partial(self._stop, w, politely=w in idle))
