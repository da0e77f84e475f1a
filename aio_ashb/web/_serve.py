"""Serving the app with uvicorn, refusing to expose an unauthenticated service."""

from __future__ import annotations

import ipaddress
from typing import Any

from aio_ashb import ConfigError, MissingDependencyError
from aio_ashb.web._service import StudyService


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_host(host: str, service: StudyService) -> None:
    """Refuse a host other people can reach unless the service requires a token."""
    if not is_loopback(host) and service.token is None:
        raise ConfigError(
            f"refusing to serve on {host!r} without a token: anyone who reaches it could run and "
            "delete studies. Pass StudyService(..., token=...), or serve on 127.0.0.1 (behind a "
            "reverse proxy that authenticates)"
        )


def serve(
    service: StudyService, *, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any
) -> None:
    """Serve ``service.app`` with uvicorn until interrupted (blocking). Binds 127.0.0.1 by
    default; any other host needs the service to have a token. ``uvicorn_options`` go to
    ``uvicorn.run`` (``proxy_headers``, ``forwarded_allow_ips``, ``root_path``, ``log_level``...)."""
    check_host(host, service)
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError('serve() needs uvicorn: pip install "aio_ashb[web]"') from exc
    uvicorn.run(service.app, host=host, port=port, **uvicorn_options)
