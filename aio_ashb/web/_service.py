"""The study service: one storage, the studies in it, the runs it started and the jobs it
handed out. No HTTP here; ``_app.py`` maps requests onto these methods.

Concurrency: every change to one study (ask, report, release, start, cancel) happens under that
study's lock, because ``Study`` methods await between deciding and committing, and two requests
interleaving there would hand the same trial out twice. Reads (status, trials) take no lock:
they read the study's in-memory state, which is consistent between awaits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskGroup

from aio_ashb import (
    AskedJob,
    ConfigError,
    Decision,
    FrozenTrial,
    StateError,
    Storage,
    StorageError,
    Study,
    TrialState,
    create_study,
    delete_study,
    load_study,
)
from aio_ashb.storage import open_storage
from aio_ashb.web._leases import JobLeases, Lease, LeaseGone
from aio_ashb.web._schemas import (
    Limits,
    RequestError,
    check,
    check_name,
    direction_from_json,
    invalid,
    sampler_from_json,
    scheduler_from_json,
    schemas,
    space_from_json,
    value_from_json,
)

if TYPE_CHECKING:
    from aio_ashb._study import Objective

log = logging.getLogger("aio_ashb.web")

RunState = Literal["running", "stopping", "finished", "cancelled", "failed"]


@dataclass(slots=True)
class _Run:
    """One ``study.run()`` started by the service, in its task group."""

    objective: str
    options: dict[str, Any]
    started_at: float = field(default_factory=time.time)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    state: RunState = "running"
    error: str | None = None
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "state": self.state,
            "error": self.error,
            "options": self.options,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(slots=True)
class _Entry:
    study: Study
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    run: _Run | None = None

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done.is_set()


def _conflict(detail: str) -> RequestError:
    return RequestError(409, "conflict", detail)


class StudyService:
    """Studies in one storage, served over HTTP: created, run, watched and cancelled, and handed
    out as jobs to remote workers.

    ``storage`` is a URL (``"sqlite:///studies.db"``, opened and closed by the service) or a
    :class:`~aio_ashb.Storage` (opened, and left open for its owner); every request shares it.
    ``objectives`` are the functions a run may name (objectives cannot travel over HTTP).
    ``token``: when set, every endpoint but ``/openapi.json`` requires
    ``Authorization: Bearer <token>``. ``limits`` bound what one request may ask for.
    ``job_lease``: seconds a remote worker holds a job without a heartbeat or report; after that
    the job is given back (its trial INTERRUPTED, resumed by the next ask).

    The service must be running to answer: ``service.app`` runs it as its own lifespan when
    served on its own; mounted in another app, enter ``async with service:`` in the host's
    lifespan (mounted apps' lifespans are not run). Leaving it cancels the runs (their running
    trials become INTERRUPTED), gives open jobs back and closes the studies.
    """

    def __init__(
        self,
        storage: str | Storage,
        *,
        objectives: Mapping[str, Objective] | None = None,
        token: str | None = None,
        limits: Limits | None = None,
        job_lease: float = 60.0,
    ) -> None:
        if isinstance(storage, str):
            self._storage, self._owns_storage = open_storage(storage), True
        elif isinstance(storage, Storage):
            self._storage, self._owns_storage = storage, False
        else:
            raise ConfigError(f"storage must be a URL string or a Storage, got {storage!r}")
        self._objectives = dict(objectives or {})
        for name, fn in self._objectives.items():
            if not isinstance(name, str) or not name or not callable(fn):
                raise ConfigError(f"objectives must map names to functions, got {name!r}: {fn!r}")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigError(
                "token must be a string of at least 16 characters (e.g. secrets.token_urlsafe())"
            )
        self._token = token
        self.limits = limits if limits is not None else Limits()
        if not isinstance(self.limits, Limits):
            raise ConfigError(f"limits must be a Limits, got {limits!r}")
        if (
            not isinstance(job_lease, (int, float))
            or isinstance(job_lease, bool)
            or not math.isfinite(job_lease)
            or job_lease <= 0
        ):
            raise ConfigError(f"job_lease must be a positive number of seconds, got {job_lease!r}")
        self.schemas = schemas(self.limits)
        self._leases: JobLeases[AskedJob] = JobLeases(float(job_lease))
        self._lease_changed = anyio.Event()
        self._entries: dict[str, _Entry] = {}
        self._load_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._closing = False
        self._app: Any = None

    def __repr__(self) -> str:
        return f"StudyService({self._storage!r}, objectives={sorted(self._objectives)})"

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def app(self) -> Any:
        """The ASGI app (Starlette). Served on its own, it runs this service as its lifespan."""
        if self._app is None:
            from aio_ashb.web._app import create_app

            self._app = create_app(self)
        return self._app

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> StudyService:
        if self._tg is not None or self._closing:
            raise StateError("this StudyService is already running (or was closed); make a new one")
        await self._storage.open()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._watch_leases, name="aio_ashb.web job leases")
        return self

    async def __aexit__(self, *exc: object) -> None:
        tg = self._tg
        if tg is None:
            return
        self._closing = True
        tg.cancel_scope.cancel()  # runs end like a cancelled run(): running trials INTERRUPTED
        try:
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._shut_down()

    async def _shut_down(self) -> None:
        for entry in list(self._entries.values()):
            for lease in self._leases.of_study(entry.study.name):
                await self._release(entry, lease, "cancelled")
            with contextlib.suppress(StorageError, StateError):
                await entry.study.close()
        self._entries.clear()
        if self._owns_storage:
            await self._storage.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """``async with service:`` in the shape of a Starlette/FastAPI ``lifespan``. If the
        service is running already (a host app's lifespan started it, and a server that does run
        mounted apps' lifespans calls this too), it does nothing: whoever started it stops it."""
        if self._tg is not None and not self._closing:
            yield
            return
        async with self:
            yield

    def _ready(self) -> TaskGroup:
        if self._tg is None or self._closing:
            raise RequestError(
                503,
                "not_running",
                "the study service is not running: serve its app, or enter `async with service:` "
                "in the host app's lifespan (mounted apps' lifespans do not run)",
            )
        return self._tg

    # ------------------------------------------------------------------ studies
    async def _entry(self, name: str) -> _Entry:
        self._ready()
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        async with self._load_lock:
            entry = self._entries.get(name)
            if entry is None:
                study = await load_study(name=name, storage=self._storage)
                entry = self._entries[name] = _Entry(study)
            return entry

    async def list_studies(self) -> dict[str, Any]:
        self._ready()
        found = []
        for info in await self._storage.list_studies():
            entry = self._entries.get(info.name)
            found.append(
                {
                    "name": info.name,
                    "created_at": info.created,
                    "config": {k: v for k, v in info.config.items() if k != "format"},
                    "running": entry is not None and entry.running,
                    "open_jobs": self._leases.count(info.name),
                }
            )
        return {"studies": found}

    async def create(self, body: Any) -> dict[str, Any]:
        self._ready()
        body = check(body, self.schemas["CreateStudy"])
        name = check_name(body["name"])
        space = space_from_json(body["space"])
        scheduler = scheduler_from_json(body.get("scheduler"))
        sampler = sampler_from_json(body.get("sampler"))
        direction = direction_from_json(body.get("direction"))
        async with self._load_lock:
            if len(await self._storage.list_studies()) >= self.limits.max_studies:
                raise _conflict(f"this service holds {self.limits.max_studies} studies, its limit")
            study = await create_study(
                name=name,
                space=space,
                scheduler=scheduler,
                sampler=sampler,
                direction=direction,
                storage=self._storage,
            )
            self._entries[name] = _Entry(study)
        return await self.describe(name)

    async def describe(self, name: str) -> dict[str, Any]:
        entry = await self._entry(name)
        study = entry.study
        return {
            "name": name,
            "config": {
                "space": study.space.to_dict(),
                "scheduler": study.scheduler.to_dict(),
                "sampler": study.sampler.to_dict(),
                "direction": study.direction.value,
            },
            "status": study.status().to_dict(),
            "run": entry.run.to_json() if entry.run is not None else None,
            "jobs": sorted(lease.job.number for lease in self._leases.of_study(name)),
        }

    async def delete(self, name: str) -> None:
        entry = await self._entry(name)
        async with entry.lock:
            self._check_idle(entry, "deleted")
            async with self._load_lock:
                await entry.study.close()
                self._entries.pop(name, None)
                await delete_study(name=name, storage=self._storage)

    def _check_idle(self, entry: _Entry, doing: str) -> None:
        name = entry.study.name
        if entry.running:
            raise _conflict(f"study {name!r} is running; cancel it before it can be {doing}")
        held = self._leases.of_study(name)
        if held:
            raise _conflict(
                f"study {name!r} has {len(held)} job(s) handed out to workers (trials "
                f"{sorted(lease.job.number for lease in held)}); cancel them before it can be {doing}"
            )

    async def trials(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        entry = await self._entry(name)
        params = check(
            dict(_query_ints(query, ("offset", "limit"))), self.schemas["TrialsQuery"], "the query"
        )
        offset = params.get("offset", 0)
        limit = params.get("limit", 100)
        state = params.get("state")
        study = entry.study
        if state is None:  # a page costs its own trials, however large the study
            total = study.n_trials
            page = [study.trial(n) for n in range(offset, min(total, offset + limit))]
        else:  # filtered: every trial is read once (a state index in the core would avoid it)
            matching = [t for t in study.trials if t.state.value == state]
            total, page = len(matching), matching[offset : offset + limit]
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "trials": [_trial_json(t, brief=True) for t in page],
        }

    async def trial(self, name: str, number: int) -> dict[str, Any]:
        entry = await self._entry(name)
        if not 0 <= number < entry.study.n_trials:
            raise RequestError(404, "not_found", f"study {name!r} has no trial {number}")
        curve = await entry.study.learning_curve(number)
        steps = sorted(curve)
        return {
            **_trial_json(entry.study.trial(number), brief=False),
            "curve": {"steps": steps, "values": [curve[s] for s in steps]},
        }

    # ------------------------------------------------------------------ runs
    async def start_run(self, name: str, body: Any) -> dict[str, Any]:
        tg = self._ready()
        body = check(body, self.schemas["StartRun"])
        objective = body.pop("objective")
        fn = self._objectives.get(objective)
        if fn is None:
            known = ", ".join(repr(n) for n in sorted(self._objectives)) or "none (jobs only)"
            raise invalid(f"unknown objective {objective!r}; this service has {known}")
        entry = await self._entry(name)
        async with entry.lock:
            self._check_idle(entry, "run")
            active = sum(e.running for e in self._entries.values())
            if active >= self.limits.max_runs:
                raise RequestError(
                    429, "too_many_runs", f"{active} runs are in progress, this service's limit"
                )
            run = entry.run = _Run(objective, body)
            tg.start_soon(self._run, entry, run, fn, name=f"aio_ashb.web run of {name!r}")
        return run.to_json()

    async def _run(self, entry: _Entry, run: _Run, fn: Objective) -> None:
        try:
            with run.scope:
                await entry.study.run(fn, **run.options)
            if run.scope.cancelled_caught:
                run.state = "cancelled"
            elif run.state != "cancelled":
                run.state = "finished"
        except Exception as exc:  # a run's failure is its own, never the service's
            run.state = "failed"
            run.error = f"{type(exc).__name__}: {exc}"
            log.warning("run of study %r failed: %s", entry.study.name, run.error)
        finally:
            run.finished_at = time.time()
            run.done.set()

    async def stop_run(self, name: str) -> dict[str, Any]:
        entry = await self._entry(name)
        run = entry.run
        if run is None or not entry.running:
            raise _conflict(f"study {name!r} is not running")
        entry.study.stop()
        run.state = "stopping"
        return run.to_json()

    async def cancel(self, name: str) -> dict[str, Any]:
        """Cancel the study's run (its running trials become INTERRUPTED) and give back every job
        handed out for it; answer once that is saved."""
        entry = await self._entry(name)
        run = entry.run
        leases = self._leases.of_study(name)
        if (run is None or not entry.running) and not leases:
            raise _conflict(f"study {name!r} has no run in progress and no jobs handed out")
        if run is not None and entry.running:
            run.state = "cancelled"
            run.scope.cancel()
            await run.done.wait()
        async with entry.lock:
            for lease in self._leases.of_study(name):
                await self._release(entry, lease, "cancelled")
        return await self.describe(name)

    # ------------------------------------------------------------------ jobs
    async def ask(self, name: str, body: Any) -> dict[str, Any]:
        self._ready()
        body = check(body, self.schemas["AskJob"])
        entry = await self._entry(name)
        async with entry.lock:
            if entry.running:
                raise _conflict(f"study {name!r} is being run by this service; cancel it to hand out jobs")
            if self._leases.count(name) >= self.limits.max_open_jobs:
                raise RequestError(
                    429,
                    "too_many_jobs",
                    f"study {name!r} has {self.limits.max_open_jobs} open jobs, the limit",
                )
            job = await entry.study.ask(max_trials=body.get("max_trials", self.limits.max_trials))
            if job is None:
                running = entry.study.states[TrialState.RUNNING]
                return {"job": None, "done": running == 0, "retry_after": 1.0 if running else None}
            lease = self._leases.grant(name, job, anyio.current_time())
            self._lease_changed.set()
        checkpoint, step = job.checkpoint, job.step
        if not _is_json(checkpoint):  # saved by an in-process objective: start over instead
            checkpoint, step = None, 0
        return {
            "job": {
                "lease": lease.id,
                **self._lease_times(lease),
                "number": job.number,
                "params": job.params,
                "bracket": job.bracket,
                "step": step,
                "target": job.target,
                "checkpoint": checkpoint,
            },
            "done": False,
            "retry_after": None,
        }

    def _lease_times(self, lease: Lease[AskedJob]) -> dict[str, float]:
        left = lease.deadline - anyio.current_time()
        return {"lease_expires_at": time.time() + left, "lease_ttl": self._leases.ttl}

    async def _held(self, entry: _Entry, lease_id: str) -> Lease[AskedJob]:
        """The open, unexpired lease ``lease_id`` of this study (call with the study's lock)."""
        name = entry.study.name
        try:
            lease = self._leases.get(lease_id, anyio.current_time())
        except LeaseGone as gone:
            if gone.reason is None:
                raise RequestError(
                    404, "not_found", f"study {name!r} has no job lease {lease_id!r}"
                ) from None
            if gone.reason == "expired":
                late = self._leases.peek(lease_id)
                if late is not None:  # expired before the watcher saw it: give it back now
                    await self._release(entry, late, "expired")
                detail = (
                    f"job lease {lease_id!r} expired (no heartbeat or report within "
                    f"{self._leases.ttl:g} s); its trial was handed back and may be running elsewhere"
                )
            else:
                detail = f"job lease {lease_id!r} is over ({gone.reason}); nothing more is accepted under it"
            raise RequestError(409, "lease_gone", detail) from None
        if lease.study != name:
            raise RequestError(404, "not_found", f"study {name!r} has no job lease {lease_id!r}")
        return lease

    async def heartbeat(self, name: str, lease_id: str, body: Any) -> dict[str, Any]:
        self._ready()
        check(body, self.schemas["Empty"])
        entry = await self._entry(name)
        async with entry.lock:
            lease = await self._held(entry, lease_id)
            self._leases.renew(lease.id, anyio.current_time())
            self._lease_changed.set()
            return {"lease": lease.id, **self._lease_times(lease)}

    async def report(self, name: str, lease_id: str, body: Any) -> dict[str, Any]:
        self._ready()
        body = check(body, self.schemas["Report"])
        entry = await self._entry(name)
        async with entry.lock:
            lease = await self._held(entry, lease_id)
            decision = await entry.study.tell(
                lease.job,
                value_from_json(body["value"]),
                step=body.get("step"),
                checkpoint=body.get("checkpoint"),
            )
            if decision is Decision.CONTINUE:
                self._leases.renew(lease.id, anyio.current_time())
                times: dict[str, float | None] = dict(self._lease_times(lease))
            else:
                self._leases.end(lease.id, "finished")
                times = {"lease_expires_at": None, "lease_ttl": self._leases.ttl}
            self._lease_changed.set()
        return {"decision": decision.value, "done": decision is not Decision.CONTINUE, **times}

    async def fail(self, name: str, lease_id: str, body: Any) -> dict[str, Any]:
        self._ready()
        body = check(body, self.schemas["Fail"])
        entry = await self._entry(name)
        async with entry.lock:
            lease = await self._held(entry, lease_id)
            await entry.study.fail(lease.job, body["error"])
            self._leases.end(lease.id, "failed")
            self._lease_changed.set()
        return {"number": lease.job.number, "state": TrialState.FAILED.value}

    async def _release(
        self, entry: _Entry, lease: Lease[AskedJob], reason: Literal["expired", "cancelled"]
    ) -> None:
        """Give a leased job back to its study (call with the study's lock): its trial becomes
        INTERRUPTED and the next ask resumes it. The lease ends even if the write fails (the
        study then recovers the trial when it next takes its storage lease)."""
        try:
            await entry.study.release(lease.job)
        except (StorageError, StateError) as exc:
            log.warning("could not give back trial %d of %r: %s", lease.job.number, entry.study.name, exc)
        finally:
            self._leases.end(lease.id, reason)

    async def _watch_leases(self) -> None:
        """Gives back the jobs of leases that expire; sleeps until the next deadline or until a
        lease changes, never polls."""
        while True:
            changed = self._lease_changed
            deadline = self._leases.next_deadline()
            wait = math.inf if deadline is None else max(0.0, deadline - anyio.current_time())
            with anyio.move_on_after(wait):
                await changed.wait()
            if changed.is_set():
                self._lease_changed = anyio.Event()
            for lease in self._leases.expired(anyio.current_time()):
                entry = self._entries.get(lease.study)
                if entry is None:
                    continue
                async with entry.lock:
                    if self._leases.peek(lease.id) is lease and lease.deadline <= anyio.current_time():
                        await self._release(entry, lease, "expired")


def _query_ints(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """The query with the integer parameters converted (a bad one stays a string: the schema
    check then names it)."""
    out: dict[str, Any] = dict(query)
    for key in names:
        if key in out and out[key].isascii() and out[key].isdigit():
            out[key] = int(out[key])
    return out


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _trial_json(t: FrozenTrial, *, brief: bool) -> dict[str, Any]:
    error = t.error
    if brief and error:
        error = error.strip().splitlines()[-1]  # the exception line; the trial itself has it all
    return {
        "number": t.number,
        "state": t.state.value,
        "bracket": t.bracket,
        "params": t.params,
        "step": t.step,
        "value": t.value,
        "resource": t.resource,
        "rung_values": {str(m): v for m, v in t.rung_values.items()},
        "error": error,
    }


__all__ = ["StudyService"]
