"""The dashboard's reader and routes: a read-only storage, one incremental view per study, three
HTML pages and a small JSON API.

Each request for a study reads only the events after the last sequence number its view has
seen (``SQLiteStorage.read_events_after``) and folds them in, in a worker thread, under the
study's lock: the log is replayed once per dashboard, not once per request. A long log is not
replayed even once: the view starts from the snapshot the study's writer stored, and reads the
history of the trials it shows from the log trial by trial (see ``_view``). The storage is
opened ``readonly=True``: it never writes, never takes a write lock and refuses to unpickle a
checkpoint; the views read a checkpoint's step only.
"""

from __future__ import annotations

import asyncio
import html
import importlib.util
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
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
    StudyNotFoundError,
)
from aio_ashb._core import Event, TrialState
from aio_ashb._core._snapshot import SnapshotError
from aio_ashb._core._snapshot import load as load_snapshot
from aio_ashb._factory import core_from_config
from aio_ashb._handover import to_thread
from aio_ashb.web._app import JSONResponse, check_bearer, error_from_exception, http_error
from aio_ashb.web._schemas import RequestError
from aio_ashb.web.dashboard._table import TABLE_SORTS
from aio_ashb.web.dashboard._view import StudyView

T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
_Summary = tuple[int, list[tuple[float, float]], list[tuple[int, int]]]  # see read_reports_summary
#: A failed background scan (a storage error) is tried again after this many seconds.
SUMMARY_RETRY = 5.0
#: A study whose snapshot reflects at least this many events starts from it; a shorter log is
#: folded whole (under half a second), which gives the whole timeline.
RESTORE_FROM = 20_000
#: A view restored from a snapshot shows, on its timeline, the trials that ran in the last this
#: many reports, starts and promotions before it (and everything after).
TIMELINE_EVENTS = 10_000


def _integer(query: Any, key: str, default: int | None, low: int, high: int) -> int | None:
    """An integer query parameter in [low, high], or a 400 naming the bad value."""
    text = query.get(key)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise RequestError(400, "bad_request", f"{key} must be an integer in [{low}, {high}], got {text!r}")
    return int(text)


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
        self._scanner: SQLiteStorage | None = None  # a second connection, for long scans
        self._opening = anyio.Lock()
        self._views: dict[str, StudyView] = {}
        self._locks: dict[str, anyio.Lock] = {}
        # A restored view's report count and best-so-far line before its snapshot: one query
        # each, run in the background (seconds for a million events) and taken in when done.
        self._summaries: dict[str, asyncio.Task[_Summary]] = {}
        self._summary_failed: dict[str, float] = {}  # study -> when its last scan failed (loop time)
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
        tasks = list(self._summaries.values())
        self._summaries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with self._opening:
            for storage in (self._storage, self._scanner):
                if storage is not None:
                    await storage.close()
            self._storage = self._scanner = None
        self._views.clear()

    async def studies(self) -> list[dict[str, Any]]:
        storage = await self.storage()
        return [await self.read(info.name, lambda v: v.summary()) for info in await storage.list_studies()]

    async def read(self, name: str, what: Callable[[StudyView], T], *, trials: Collection[int] = ()) -> T:
        """``what(view)`` of study ``name``, after folding in the events written since the last
        read, and with the history of ``trials`` loaded; under the study's lock, so that a fold
        never runs while another request reads."""
        storage = await self.storage()
        lock = self._locks.setdefault(name, anyio.Lock())
        async with lock:
            view = self._views.get(name)
            try:
                if view is None:
                    view, last, events = await self._open_view(storage, name)
                else:
                    info, last, events = await storage.read_events_after(name, view.seq)
                    if info.created != view.created:  # deleted and created again
                        self._forget(name)
                        view, last, events = await self._open_view(storage, name)
                if events or last != view.seq:
                    # Trials from before a restored view's snapshot get their history first.
                    touched = {n for ev in events if (n := getattr(ev, "number", None)) is not None}
                    missing = view.missing(touched)
                    if missing:
                        histories = await storage.read_trial_events(name, missing, view.restored_seq)
                        await to_thread(view.preload, histories)
                    # A first read may be a million events: folded off the event loop.
                    try:
                        await to_thread(view.fold, events, last)
                    except BaseException as exc:  # folded in part: start again from the log next time
                        self._forget(name)
                        if isinstance(exc, AioAshbError) and not isinstance(exc, StorageError):
                            # The core refused an event: the log is damaged, not the request.
                            raise CorruptDatabaseError(
                                f"study {name!r} in {self.path}: its log cannot be replayed ({exc})"
                            ) from exc
                        raise
                await self._take_summary(name, view)
                missing = view.missing(trials)
                if missing:
                    histories = await storage.read_trial_events(name, missing, view.restored_seq)
                    await to_thread(view.preload, histories)
            except Exception as exc:
                self._forget(name)
                if isinstance(exc, StudyNotFoundError) and not lock.statistics().tasks_waiting:
                    self._locks.pop(name, None)  # unknown names must not pile up locks
                raise
            self._views[name] = view
            # Off the loop too: a large study's first page is seconds of JSON building, and the
            # loop may be a host application's.
            return await to_thread(what, view)

    async def _open_view(self, storage: SQLiteStorage, name: str) -> tuple[StudyView, int, list[Event]]:
        """A new view of study ``name``, and the events it still has to fold in (up to ``last``):
        from the study's snapshot when its log is long, else from the start."""
        info, state, last, events = await storage.read_from_snapshot(name)
        core = core_from_config(name, storage, info.config)
        if state is not None and state[0] >= RESTORE_FROM:
            try:
                await to_thread(load_snapshot, core, state[1])
            except SnapshotError:  # the log is the truth: fold it whole
                core = core_from_config(name, storage, info.config)
                info, last, events = await storage.read_events_after(name, 0)
            else:
                seq = state[0]
                written = await storage.event_time(name, seq) or info.created
                view = StudyView.restored(name, info.config, info.created, core, seq, written)
                # The timeline's window, then the curves the page draws: their trials' history.
                window = await storage.trials_active(name, seq, TIMELINE_EVENTS)
                histories = await storage.read_trial_events(name, view.missing(window), seq)
                await to_thread(partial(view.preload, histories, timeline=True))
                drawn = await to_thread(view.drawn)
                histories = await storage.read_trial_events(name, view.missing(drawn), seq)
                await to_thread(view.preload, histories)
                self._summary_failed.pop(name, None)  # (the scan starts with the next read)
                return view, last, events
        elif state is not None:  # a short log with a snapshot: read whole
            info, last, events = await storage.read_events_after(name, 0)
        return StudyView(name, info.config, info.created, core), last, events

    async def _summary(self, name: str, seq: int, maximize: bool) -> _Summary:
        """The reports before a snapshot: on a second connection, so that requests do not wait
        behind a scan of the log."""
        async with self._opening:
            if self._scanner is None:
                scanner = SQLiteStorage(self.path, readonly=True)
                await scanner.open()
                self._scanner = scanner
            scanner = self._scanner
        return await scanner.read_reports_summary(name, seq, maximize)

    async def _take_summary(self, name: str, view: StudyView) -> None:
        """Take in the background scan's answer when it is there; start it again some seconds
        after it failed (a storage error), as long as the view waits for it."""
        task = self._summaries.get(name)
        if task is None:
            failed = self._summary_failed.get(name)
            if view.reports_known or (failed is not None and anyio.current_time() - failed < SUMMARY_RETRY):
                return
            maximize = view.core.direction.value == "maximize"
            self._summaries[name] = asyncio.create_task(self._summary(name, view.restored_seq, maximize))
            return
        if not task.done():
            return
        del self._summaries[name]
        if not task.cancelled() and task.exception() is None:
            self._summary_failed.pop(name, None)
            await to_thread(lambda: view.set_reports_before(*task.result()))
        else:
            self._summary_failed[name] = anyio.current_time()

    def _forget(self, name: str) -> None:
        self._views.pop(name, None)
        task = self._summaries.pop(name, None)
        if task is not None:
            task.cancel()

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
            view = request.query_params.get("view")
            if view is not None and not (len(view) <= 32 and view.isalnum()):
                raise RequestError(
                    400, "bad_request", f"view must be the view of an earlier answer, got {view!r}"
                )
            return await self.read(request.path_params["name"], lambda v: v.update(since, view))

        async def table(request: Request) -> Any:
            q = request.query_params
            unknown = set(q) - {"sort", "order", "state", "resource", "q", "offset", "limit"}
            if unknown:
                raise RequestError(400, "bad_request", f"unknown query parameters: {sorted(unknown)}")
            sort = q.get("sort", "number")
            if sort not in TABLE_SORTS and not sort.startswith("params."):
                raise RequestError(
                    400,
                    "bad_request",
                    f"sort must be one of {list(TABLE_SORTS)} or params.NAME, got {sort!r}",
                )
            order = q.get("order", "asc")
            if order not in ("asc", "desc"):
                raise RequestError(400, "bad_request", f"order must be 'asc' or 'desc', got {order!r}")
            state = q.get("state") or None
            if state is not None and state not in {s.value for s in TrialState}:
                raise RequestError(400, "bad_request", f"state must be a trial state, got {state!r}")
            search = q.get("q", "")
            if len(search) > 200:
                raise RequestError(400, "bad_request", f"q must be at most 200 characters, got {len(search)}")
            resource = _integer(q, "resource", None, 0, 2**62)
            offset = _integer(q, "offset", 0, 0, 2**62) or 0
            limit = _integer(q, "limit", 100, 1, 1000) or 100

            def get(view: StudyView) -> Any:
                if sort.startswith("params.") and sort[7:] not in view.param_names:
                    raise RequestError(
                        400, "bad_request", f"study {view.name!r} has no parameter {sort[7:]!r}"
                    )
                return view.table(
                    sort=sort,
                    descending=order == "desc",
                    state=state,
                    resource=resource,
                    search=search,
                    offset=offset,
                    limit=limit,
                )

            return await self.read(request.path_params["name"], get)

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

            return await self.read(request.path_params["name"], get, trials=[number])

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
            Route("/api/studies/{name}/table", api(table)),
            Route("/api/studies/{name}/trials/{number:int}", api(trial)),
            Route("/static/plotly.min.js", plotly),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
        return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
