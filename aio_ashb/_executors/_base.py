"""The executor contract: one method, :meth:`Executor.submit`, and a lifecycle."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio

from aio_ashb._exceptions import ObjectiveMisuseError, StateError
from aio_ashb._objective import ObjectiveKind, describe


class Executor(ABC):
    """Where calls of the objective run. Subclass it to send trials somewhere else.

    Contract, for :meth:`submit` and the runner that calls it:

    * ``submit(fn, *args)`` runs ``fn(*args)`` and returns what it returned (a coroutine
      function is awaited where it runs). If ``fn`` raised, ``submit`` raises: the same exception
      for executors in this process, :class:`RemoteError` carrying the traceback as formatted
      where the code ran for the others.
    * If the worker running the call died (a killed process, a lost cluster node), ``submit``
      raises :class:`WorkerLostError`; the runner retries such trials (``run(retries=N)``).
    * If the task awaiting ``submit`` is cancelled, ``submit`` stops the call as well as the
      engine allows, before re-raising the cancellation: the class docstrings say how far that is.
    * ``submit`` may be called concurrently (one call per running trial); an executor with fewer
      workers than calls queues them.
    * :meth:`start` runs before the first ``submit`` and :meth:`aclose` after the last, both on
      the study's event loop. ``run()`` uses an executor inside ``async with
      executor.session()``, which starts it if it is not started yet; the last run using it
      closes it. Start one yourself (``async with executor:``) to keep it warm across runs.
    """

    #: Can run trial-style objectives ``fn(trial)``: the call is in this process, so the trial
    #: handle can talk to the runner.
    runs_trials: ClassVar[bool] = False
    #: Accepts ``async def`` functions / plain ``def`` functions.
    runs_async: ClassVar[bool] = True
    runs_sync: ClassVar[bool] = True
    #: ``submit(fn, *args)`` is exactly ``await fn(*args)`` here: the runner may call directly.
    awaits_in_place: ClassVar[bool] = False

    _started = False
    _users = 0  # runs using this executor now
    _owned = False  # started by a run (which closes it), not by the user
    _lifecycle: anyio.Lock | None = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def workers(self) -> int | None:
        """How many calls run at once (``run()``'s default ``concurrency``); ``None``: no bound."""
        return None

    async def start(self) -> None:
        """Acquire the executor's resources (worker processes, a cluster connection). Does
        nothing if it is started already. An executor can be started again after :meth:`aclose`."""
        if not self._started:
            await self._open()
            self._started = True

    async def aclose(self) -> None:
        """Release the resources; calls still running are stopped (as on cancellation)."""
        if self._started:
            self._started = False
            await self._close()

    async def _open(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Subclasses: acquire resources (``start``)."""

    async def _close(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Subclasses: release resources (``aclose``)."""

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Self]:
        """One run's use of this executor (``run()`` enters it): the executor is started unless
        the user started it, and then the last session to leave closes it, so several runs can
        share one executor."""
        if self._lifecycle is None:
            self._lifecycle = anyio.Lock()
        async with self._lifecycle:
            if not self._started:
                await self.start()
                self._owned = True
            self._users += 1
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lifecycle:
                    self._users -= 1
                    if self._users == 0 and self._owned:
                        self._owned = False
                        await self.aclose()

    async def __aenter__(self) -> Self:
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

    def check(self, fn: Callable[..., Any], kind: ObjectiveKind) -> None:
        """Raise :class:`ObjectiveMisuseError` (a :class:`ConfigError`) if ``fn`` cannot run here."""
        name = type(self).__name__
        if not kind.budget_style and not self.runs_trials:
            raise ObjectiveMisuseError(
                f"{name} runs budget-style objectives fn(params, budget, checkpoint); "
                f"{describe(fn)} takes a trial, which only works in this process "
                "(LoopExecutor for async def, ThreadExecutor for def)"
            )
        if kind.is_async and not self.runs_async:
            raise ObjectiveMisuseError(
                f"{name} runs plain functions; {describe(fn)} is async (use LoopExecutor)"
            )
        if not kind.is_async and not self.runs_sync:
            raise ObjectiveMisuseError(
                f"{name} runs coroutine functions; {describe(fn)} is a plain function and would "
                "block the event loop (use ThreadExecutor or ProcessExecutor)"
            )

    def _check_started(self) -> None:
        if not self._started:
            raise StateError(f"{type(self).__name__} is not started (use 'async with' or run())")
