"""Serving the app with uvicorn, refusing to expose an unauthenticated service."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Protocol

from aio_ashb import ConfigError, MissingDependencyError
from aio_ashb.web._service import StudyService

if TYPE_CHECKING:
    from aio_ashb.web.dashboard import Dashboard


class _Guarded(Protocol):
    @property
    def token(self) -> str | None: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_host(host: str, service: _Guarded) -> None:
    """Refuse a host other people can reach unless the service (or dashboard) requires a token."""
    if not is_loopback(host) and service.token is None:
        if isinstance(service, StudyService):
            risk, how = "run and delete studies", "StudyService(..., token=...)"
        else:
            risk, how = "read every study in the file", "Dashboard(..., token=...)"
        raise ConfigError(
            f"refusing to serve on {host!r} without a token: anyone who reaches it could {risk}. "
            f"Pass {how} (on the command line: --token-env VAR), or serve on 127.0.0.1 (behind a "
            "reverse proxy that authenticates)"
        )


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError('serving needs uvicorn: pip install "aio_ashb[web]"') from exc
    return uvicorn


def serve(
    service: StudyService, *, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any
) -> None:
    """Serve ``service.app`` with uvicorn until interrupted (blocking). Binds 127.0.0.1 by
    default; any other host needs the service to have a token. ``uvicorn_options`` go to
    ``uvicorn.run`` (``proxy_headers``, ``forwarded_allow_ips``, ``root_path``, ``log_level``...)."""
    check_host(host, service)
    _uvicorn().run(service.app, host=host, port=port, **uvicorn_options)


def serve_dashboard(
    dashboard: Dashboard, *, host: str = "127.0.0.1", port: int = 8080, **uvicorn_options: Any
) -> None:
    """Serve ``dashboard.app`` with uvicorn until interrupted (blocking), under the same rule
    as :func:`serve`: a host other than loopback needs the dashboard to have a token."""
    check_host(host, dashboard)
    _uvicorn().run(dashboard.app, host=host, port=port, **uvicorn_options)
