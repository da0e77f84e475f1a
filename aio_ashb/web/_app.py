"""The HTTP side of the service: one table of operations, from which both the Starlette routes
and the OpenAPI document are made, and the conversion of every error into a JSON response.

Every answer is JSON, errors included: ``{"error": <code>, "detail": <what was wrong, naming the
value>}``. Request errors are 4xx (400 malformed JSON, 401 no or wrong token, 404, 409 a state
conflict or a lost job lease, 413 too large, 415 not JSON, 422 a field or value the service
refuses, 429 a limit reached), a storage failure is 503, and anything unexpected is a 500 whose
traceback goes to the server's log, not to the client.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aio_ashb import (
    AioAshbError,
    ConfigError,
    DuplicateStudyError,
    ReportError,
    StateError,
    StorageError,
    StudyLockedError,
    StudyNotFoundError,
)
from aio_ashb._report import json_safe
from aio_ashb.web._schemas import RequestError, parse_json
from aio_ashb.web._service import StudyService

log = logging.getLogger("aio_ashb.web")


class JSONResponse(Response):
    """Strict JSON: NaN and infinities become the strings "nan", "inf", "-inf" (as in
    ``StudyStatus.to_dict``), and the text is ASCII, so any stored string can be sent."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(
            json_safe(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


def error_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_from_exception(exc: Exception) -> Response:
    if isinstance(exc, RequestError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.error, exc.detail, headers)
    if isinstance(exc, StudyNotFoundError):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, (DuplicateStudyError, StudyLockedError, StateError)):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, StorageError):
        log.error("storage failure: %s", exc)
        return error_response(503, "storage_unavailable", f"the study storage failed: {exc}")
    if isinstance(exc, (ConfigError, ReportError)):
        return error_response(422, "invalid_request", str(exc))
    if isinstance(exc, AioAshbError):
        return error_response(409, "conflict", str(exc))
    log.error("unexpected error in the study service", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error; the server's log has the traceback")


# ------------------------------------------------------------------ the operations
@dataclass(frozen=True, slots=True)
class Operation:
    """One endpoint: method, path, what it does, its body schema, its success status."""

    method: str
    path: str
    name: str
    summary: str
    call: Callable[[StudyService, Request, Any], Awaitable[Any]]
    body: str | None = None  # a schema name in StudyService.schemas; None: no body
    status: int = 200
    protected: bool = True
    errors: tuple[int, ...] = ()


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if len(name) > 1000:
        raise RequestError(
            422, "invalid_request", f"a study name has at most 1000 characters, got {len(name)}"
        )
    return name


def _lease(request: Request) -> str:
    lease: str = request.path_params["lease"]
    return lease[:200]  # a longer one is unknown anyway; keeps error messages short


OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/studies", "listStudies", "Every study in the storage",
        lambda s, r, b: s.list_studies(),
    ),
    Operation(
        "POST", "/studies", "createStudy", "Create a study (space, scheduler, sampler, direction)",
        lambda s, r, b: s.create(b), body="CreateStudy", status=201, errors=(409, 422),
    ),
    Operation(
        "GET", "/studies/{name}", "getStudy", "A study: configuration, status, run and open jobs",
        lambda s, r, b: s.describe(_name(r)), errors=(404,),
    ),
    Operation(
        "DELETE", "/studies/{name}", "deleteStudy", "Delete a study (not while running or handing out jobs)",
        lambda s, r, b: s.delete(_name(r)), status=204, errors=(404, 409),
    ),
    Operation(
        "GET", "/studies/{name}/trials", "listTrials", "A page of trials (query: offset, limit, state)",
        lambda s, r, b: s.trials(_name(r), r.query_params), errors=(404, 422),
    ),
    Operation(
        "GET", "/studies/{name}/trials/{number}", "getTrial", "One trial with its learning curve",
        lambda s, r, b: s.trial(_name(r), r.path_params["number"]), errors=(404,),
    ),
    Operation(
        "POST", "/studies/{name}/run", "startRun", "Run the study in the service with a registered objective",
        lambda s, r, b: s.start_run(_name(r), b), body="StartRun", status=202, errors=(404, 409, 422, 429),
    ),
    Operation(
        "POST", "/studies/{name}/stop", "stopRun", "Finish the run: running trials end their segment",
        lambda s, r, b: s.stop_run(_name(r)), body="Empty", status=202, errors=(404, 409),
    ),
    Operation(
        "POST", "/studies/{name}/cancel", "cancel",
        "Cancel the run and give back handed-out jobs: their trials become INTERRUPTED and resume first",
        lambda s, r, b: s.cancel(_name(r)), body="Empty", errors=(404, 409),
    ),
    Operation(
        "POST", "/studies/{name}/jobs", "askJob", "Take a job under a lease (null when there is none now)",
        lambda s, r, b: s.ask(_name(r), b), body="AskJob", errors=(404, 409, 429),
    ),
    Operation(
        "POST", "/studies/{name}/jobs/{lease}/heartbeat", "heartbeat", "Extend a job's lease",
        lambda s, r, b: s.heartbeat(_name(r), _lease(r), b), body="Empty", errors=(404, 409),
    ),
    Operation(
        "POST", "/studies/{name}/jobs/{lease}/report", "report",
        "Report a value at a step; the decision says whether to continue",
        lambda s, r, b: s.report(_name(r), _lease(r), b), body="Report", errors=(404, 409, 422),
    ),
    Operation(
        "POST", "/studies/{name}/jobs/{lease}/fail", "fail", "Record that the job's trial failed",
        lambda s, r, b: s.fail(_name(r), _lease(r), b), body="Fail", errors=(404, 409),
    ),
]  # fmt: skip


# ------------------------------------------------------------------ requests
def check_bearer(token: str | None, request: Request, who: str) -> None:
    """Refuse the request (401) unless it carries ``Authorization: Bearer <token>``; no token
    configured: every request passes. ``who`` names the app in the message."""
    if token is None:
        return
    given = request.headers.get("authorization")
    if given is None:
        raise RequestError(401, "unauthorized", f"{who} requires the header 'Authorization: Bearer <token>'")
    scheme, _, credentials = given.partition(" ")
    # compare_digest: the time taken does not depend on how much of the token matched.
    ok = hmac.compare_digest(credentials.strip().encode("latin-1"), token.encode())
    if scheme.lower() != "bearer" or not ok:
        raise RequestError(401, "unauthorized", "the bearer token is not valid")


async def _read_body(request: Request, limit: int) -> Any:
    """The JSON body (``{}`` when empty), read no further than ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise RequestError(413, "payload_too_large", f"the body may have at most {limit} bytes, got {length}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "payload_too_large", f"the body may have at most {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestError(
            415,
            "unsupported_media_type",
            f"the body must be application/json, got {media or 'no content type'!r}",
        )
    return parse_json(raw)


def _endpoint(service: StudyService, op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            if op.protected:
                check_bearer(service.token, request, "this service")
            body = await _read_body(request, service.limits.max_body_bytes) if op.body is not None else None
            result = await op.call(service, request, body)
        except Exception as exc:  # every failure is a JSON answer; unexpected ones are logged
            return error_from_exception(exc)
        if op.status == 204:
            return Response(status_code=204)
        return JSONResponse(result, status_code=op.status)

    endpoint.__name__ = op.name
    return endpoint


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as JSON."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_from_exception(exc)


def create_app(service: StudyService) -> Starlette:
    from aio_ashb.web._openapi import document

    async def openapi(request: Request) -> Response:
        return JSONResponse(document(service, request.scope.get("root_path", "")))

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    for op in OPERATIONS:
        path = op.path.replace("{number}", "{number:int}")
        routes.append(Route(path, _endpoint(service, op), methods=[op.method]))
    return Starlette(
        routes=routes,
        lifespan=service.lifespan,
        exception_handlers={HTTPException: http_error, Exception: _unexpected},
    )
