"""The OpenAPI 3.1 document, built from the operation table and the very schemas requests are
validated against (``_schemas.schemas``), so it says what the service does."""

from __future__ import annotations

from typing import Any

import aio_ashb
from aio_ashb.web._app import OPERATIONS
from aio_ashb.web._service import StudyService

_REASONS = {
    400: "malformed JSON",
    401: "no or wrong bearer token",
    404: "no such study, trial or job lease",
    409: "the study's state forbids it, or the job lease is gone",
    413: "body too large",
    415: "body is not application/json",
    422: "a field or value the service refuses (the detail names it)",
    429: "a limit of the service is reached",
    503: "the storage failed, or the service is not running",
}
_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def document(service: StudyService, root_path: str = "") -> dict[str, Any]:
    """The document; ``root_path`` (where the app is mounted, or the proxy's prefix) is its
    server URL, so generated clients call the right paths."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        codes = sorted({*op.errors, 503} | ({401} if op.protected and service.token else set()))
        if op.body is not None:
            codes = sorted({*codes, 400, 413, 415, 422})
        success: dict[str, Any] = {"description": "done"}
        if op.status != 204:
            success["content"] = {"application/json": {"schema": {"type": "object"}}}
        operation: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "responses": {
                str(op.status): success,
                **{str(c): _error_ref(c) for c in codes},
            },
        }
        parameters = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if p == "number" else "string"},
            }
            for p in ("name", "number", "lease")
            if "{" + p + "}" in op.path
        ]
        if op.name == "listTrials":
            query = service.schemas["TrialsQuery"]["properties"]
            parameters += [{"name": k, "in": "query", "schema": v} for k, v in query.items()]
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body not in ("Empty", "AskJob"),
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body}"}}},
            }
        if op.protected and service.token:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    components: dict[str, Any] = {"schemas": {**service.schemas, "Error": _ERROR}}
    if service.token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aio_ashb study service",
            "version": aio_ashb.__version__,
            "description": "Studies run, watched and cancelled over HTTP, and jobs for remote workers.",
        },
        "servers": [{"url": root_path or "/"}],
        "paths": paths,
        "components": components,
    }


def _error_ref(code: int) -> dict[str, Any]:
    return {
        "description": _REASONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
