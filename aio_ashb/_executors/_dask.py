"""DaskExecutor: budget-style trials on a Dask cluster, through ``distributed``'s asynchronous
client on the study's own event loop. ``distributed`` is an optional extra, imported only when a
DaskExecutor is created."""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from aio_ashb._exceptions import ConfigError, MissingDependencyError, RemoteError, StateError, WorkerLostError
from aio_ashb._executors._base import Executor
from aio_ashb._objective import describe

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskExecutor"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            'DaskExecutor needs Dask distributed: pip install "aio_ashb[dask]"'
        ) from exc
    return distributed


class DaskExecutor(Executor):
    """Runs budget-style functions as tasks on a Dask cluster.

    ``DaskExecutor("tcp://scheduler:8786")`` connects (and later disconnects) a client of its
    own, giving up after ``connect_timeout`` seconds; ``DaskExecutor(client)`` uses yours,
    which must be asynchronous (``await Client(address, asynchronous=True)``, created on the
    study's loop) and stays open.

    Functions and arguments are pickled by Dask (cloudpickle), so functions defined in a script
    work too. The workers need the packages your function imports, not aio_ashb.

    ``workers`` (``run()``'s default ``concurrency``) is the cluster's thread count when the run
    starts. A worker that dies mid-task: Dask runs the task again on another worker by itself;
    if the task keeps killing workers, Dask gives up (``KilledWorker``) and the trial is retried
    by aio_ashb (``run(retries=N)``) or FAILED. Cancellation (or ``trial_timeout``) cancels the
    task's future; Dask cannot interrupt a task that has started, so it finishes on its worker
    and its result is dropped.
    """

    runs_trials = False

    def __init__(self, client_or_address: Client | str, *, connect_timeout: float = 30.0) -> None:
        self._dist = _distributed()
        if isinstance(client_or_address, str):
            self._address: str | None = client_or_address
            self._client: Any = None
        elif isinstance(client_or_address, self._dist.Client):
            self._address = None
            self._client = client_or_address
        else:
            raise ConfigError(
                f"DaskExecutor takes a distributed.Client or a scheduler address, got {client_or_address!r}"
            )
        self._owns_client = self._client is None
        self._connect_timeout = connect_timeout
        self._workers = 1

    @property
    def client(self) -> Client:
        if self._client is None:
            raise StateError("DaskExecutor is not started")
        client: Client = self._client
        return client

    @property
    def workers(self) -> int:
        return self._workers

    async def _open(self) -> None:
        if self._owns_client:
            try:
                self._client = await self._dist.Client(
                    self._address, asynchronous=True, timeout=self._connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot connect to the Dask scheduler at {self._address}: {exc}") from exc
        elif not self._client.asynchronous:
            raise ConfigError(
                "DaskExecutor needs an asynchronous client on this event loop: "
                "await Client(address, asynchronous=True), or pass the address instead"
            )
        try:
            threads = await self._client.nthreads()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise
        self._workers = max(1, sum(threads.values()))

    async def _close(self) -> None:
        if self._owns_client and self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._client.close()
            self._client = None

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        self._check_started()
        dist = self._dist
        name = describe(fn)
        future = self._client.submit(fn, *args, pure=False, key=f"aio_ashb-{name}-{uuid.uuid4().hex}")
        try:
            return await future
        except dist.KilledWorker as exc:
            raise WorkerLostError(f"Dask gave up on {name}: workers died running it ({exc})") from exc
        except dist.client.FutureCancelledError as exc:
            raise WorkerLostError(f"Dask cancelled the task of {name} ({exc})") from exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await future.cancel()
            raise
        except Exception as exc:  # the code raised on a worker; Dask re-raised it here
            raise RemoteError("".join(traceback.format_exception(exc))) from exc
