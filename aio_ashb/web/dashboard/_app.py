"""The dashboard's reader and routes: a read-only storage, one incremental view per study, three
HTML pages and a small JSON API.

Each request for a study reads only the events after the last sequence number its view has
seen (``SQLiteStorage.read_events_after``) and folds them in, in a worker thread, under the
study's lock: the log is replayed once per dashboard, not once per request. The storage is
opened ``readonly=True``: it never writes, never takes a write lock and refuses to unpickle a
checkpoint; the views read a checkpoint's step only.
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from aio_ashb import (
    AioAshbError,
    CorruptDatabaseError,
    MissingDependencyError,
    SQLiteStorage,
    StorageError,
    StorageLocationError,
)
from aio_ashb._factory import core_from_config
from aio_ashb.web._app import JSONResponse, check_bearer, error_from_exception, http_error
from aio_ashb.web._schemas import RequestError
from aio_ashb.web.dashboard._view import StudyView

T = TypeVar("T")
STATIC = Path(__file__).parent / "static"


def plotly_js() -> Path:
    """plotly.js as the ``plotly`` Python package ships it (served locally: no CDN)."""
    # Found, not imported: the dashboard needs only this file of the package.
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise MissingDependencyError('the dashboard needs plotly: pip install "aio_ashb[web]"')
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise MissingDependencyError(f"the plotly package has no {path}; reinstall it")
    return path


class Dashboard:
    """A live, read-only dashboard of the studies in one SQLite file: ``dashboard.app`` is a
    Starlette app (serve it with :func:`aio_ashb.web.serve_dashboard`, or mount it).

    ``token``: when set, the JSON API requires ``Authorization: Bearer <token>`` (the pages
    take it from the URL's fragment, ``#token=...``, which browsers never send to a server).
    """

    def __init__(self, path: str | Path, *, token: str | None = None) -> None:
        self.path = Path(path)
        self.token = token
        self._storage: SQLiteStorage | None = None
        self._opening = anyio.Lock()
        self._views: dict[str, StudyView] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._plotly = plotly_js()  # fails now, with the install hint, not on the first page
        self.app = self._create_app()

    async def storage(self) -> SQLiteStorage:
        async with self._opening:
            if self._storage is None:
                if not self.path.is_file():
                    raise StorageLocationError(f"{self.path} does not exist")
                storage = SQLiteStorage(self.path, readonly=True)
                await storage.open()
                self._storage = storage
            return self._storage

    async def aclose(self) -> None:
        async with self._opening:
            if self._storage is not None:
                storage, self._storage = self._storage, None
                await storage.close()
        self._views.clear()

    async def studies(self) -> list[dict[str, Any]]:
        storage = await self.storage()
        return [await self.read(info.name, lambda v: v.summary()) for info in await storage.list_studies()]

    async def read(self, name: str, what: Callable[[StudyView], T]) -> T:
        """``what(view)`` of study ``name``, after folding in the events written since the last
        read; under the study's lock, so that a fold never runs while another request reads."""
        storage = await self.storage()
        lock = self._locks.setdefault(name, anyio.Lock())
        async with lock:
            view = self._views.get(name)
            try:
                info, last, events = await storage.read_events_after(name, 0 if view is None else view.seq)
                if view is not None and info.created != view.created:  # deleted and created again
                    view = None
                    info, last, events = await storage.read_events_after(name, 0)
            except Exception:
                self._views.pop(name, None)
                self._locks.pop(name, None)  # unknown names must not pile up locks
                raise
            if view is None:
                core = core_from_config(name, storage, info.config)
                view = StudyView(name, info.config, info.created, core)
            if events or last != view.seq:
                # A first read may be a million events: folded off the event loop.
                try:
                    await anyio.to_thread.run_sync(view.fold, events, last)
                except BaseException as exc:  # folded in part: start again from the log next time
                    self._views.pop(name, None)
                    if isinstance(exc, AioAshbError) and not isinstance(exc, StorageError):
                        # The core refused an event: the log is damaged, not the request.
                        raise CorruptDatabaseError(
                            f"study {name!r} in {self.path}: its log cannot be replayed ({exc})"
                        ) from exc
                    raise
            self._views[name] = view
            # Off the loop too: a large study's first page is seconds of JSON building, and the
            # loop may be a host application's.
            return await anyio.to_thread.run_sync(what, view)

    # ------------------------------------------------------------------ the app
    def _create_app(self) -> Starlette:
        def page(file: str) -> Callable[[Request], Any]:
            text = (STATIC / file).read_text()

            async def endpoint(request: Request) -> Response:
                # The only values put into a page, each escaped; the data comes from the API.
                values = {
                    "__ROOT__": request.scope.get("root_path", ""),
                    "__STUDY__": request.path_params.get("name", ""),
                    "__TRIAL__": str(request.path_params.get("number", "")),
                    "__FILE__": self.path.name,
                }
                out = text
                for key, value in values.items():
                    out = out.replace(key, html.escape(value, quote=True))
                return HTMLResponse(out, headers={"Cache-Control": "no-store"})

            return endpoint

        def api(call: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                try:
                    check_bearer(self.token, request, "this dashboard")
                    result = await call(request)
                except Exception as exc:  # every failure is a JSON answer
                    return error_from_exception(exc)
                return JSONResponse(result, headers={"Cache-Control": "no-store"})

            return endpoint

        async def list_studies(request: Request) -> Any:
            return {"file": self.path.name, "studies": await self.studies()}

        async def study(request: Request) -> Any:
            text = request.query_params.get("since", "0")
            if not text.isdigit() or len(text) > 18:
                raise RequestError(400, "bad_request", f"since must be an integer >= 0, got {text!r}")
            since = int(text)
            return await self.read(request.path_params["name"], lambda v: v.update(since))

        async def trial(request: Request) -> Any:
            number: int = request.path_params["number"]

            def get(view: StudyView) -> Any:
                if not 0 <= number < view.core.n_trials:
                    raise RequestError(
                        404,
                        "not_found",
                        f"study {view.name!r} has no trial {number} (it has {view.core.n_trials})",
                    )
                return view.trial(number)

            return await self.read(request.path_params["name"], get)

        async def plotly(request: Request) -> Response:
            return FileResponse(self._plotly, media_type="text/javascript")

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.aclose()

        routes = [
            Route("/", page("studies.html")),
            Route("/studies/{name}", page("study.html")),
            Route("/studies/{name}/trials/{number:int}", page("trial.html")),
            Route("/api/studies", api(list_studies)),
            Route("/api/studies/{name}", api(study)),
            Route("/api/studies/{name}/trials/{number:int}", api(trial)),
            Route("/static/plotly.min.js", plotly),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
        return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
