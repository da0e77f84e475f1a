"""An embeddable study service: studies created, run, watched and cancelled over HTTP, and jobs
handed to remote workers under leases. A Starlette app, served on its own or mounted in a
Starlette or FastAPI application (docs/howto/web.md).

Needs the ``web`` extra: ``pip install "aio_ashb[web]"``.

* ``_service.py`` - :class:`StudyService`: the storage, the studies, runs and job leases;
* ``_leases.py`` - the job lease table (no I/O, time passed in);
* ``_schemas.py`` - request schemas, their validator, and :class:`Limits`;
* ``_app.py`` / ``_openapi.py`` - the routes, the JSON errors, the OpenAPI document;
* ``_serve.py`` - :func:`serve` with uvicorn, refusing an exposed host without a token;
* ``dashboard/`` - :class:`Dashboard`, the live read-only dashboard (``aio-ashb dashboard``).
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401 - only to fail here, with the hint, if it is missing
except ImportError as exc:
    from aio_ashb import MissingDependencyError

    raise MissingDependencyError('aio_ashb.web needs Starlette: pip install "aio_ashb[web]"') from exc

from aio_ashb.web._schemas import NAME_PATTERN, Limits
from aio_ashb.web._serve import check_host, serve, serve_dashboard
from aio_ashb.web._service import StudyService
from aio_ashb.web.dashboard import Dashboard

__all__ = ["NAME_PATTERN", "Dashboard", "Limits", "StudyService", "check_host", "serve", "serve_dashboard"]
