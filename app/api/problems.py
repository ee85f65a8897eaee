"""The problem-details model (RFC 9457): types, titles, the body, the response; and how the OpenAPI
documents it (the Problem schema on every error response)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from app.api.openapi_compat import portable

PROBLEM_BASE = "https://dynds.dev/problems/"
PROBLEM_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
PROBLEM_JSON = "application/problem+json"
SCOPE_REQUEST_ID = "dynds.request_id"


def problem_type(status: int) -> str:
    slug = PROBLEM_TYPES.get(status)
    return PROBLEM_BASE + slug if slug else "about:blank"


def _summary(errors: list[dict[str, Any]]) -> str:
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<body>'}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    n = len(errors)
    return f"{n} invalid field{'s' if n != 1 else ''}: {shown}{more}"


def problem_body(
    status: int,
    detail: str | None,
    *,
    instance: str | None = None,
    request_id: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    title: str | None = None,
) -> bytes:
    body: dict[str, Any] = {"type": problem_type(status), "title": title or TITLES.get(status, "Error"), "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if request_id:
        body["request_id"] = request_id
    if errors is not None:
        body["errors"] = errors
    # ASCII and no NaN: whatever a message holds (a surrogate, a control character), the body renders.
    return json.dumps(body, ensure_ascii=True, allow_nan=False, default=str).encode()


def _request_id(scope) -> str | None:
    return scope.get(SCOPE_REQUEST_ID)


def problem_response(
    scope, status: int, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response:
    if errors is not None and not detail:
        detail = _summary(errors)
    body = problem_body(status, detail, instance=scope.get("path"), request_id=_request_id(scope), errors=errors)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# ---------------------------------------------------------------- OpenAPI


PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details (application/problem+json); `errors` on validation problems (422).",
    "properties": {
        "type": {"type": "string", "description": f"{PROBLEM_BASE}<slug> (one of {', '.join(sorted(set(PROBLEM_TYPES.values())))}) or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["type", "title", "status"],
}
DESCRIPTIONS = {
    401: "no API token sent, and this server needs one (WWW-Authenticate: Bearer)",
    403: "the API token is unknown or revoked",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "the request body is larger than max_body_bytes",
    422: "the request is invalid: `errors` names each field (loc) and what is wrong (msg)",
    500: "an unexpected error; `request_id` names it in the server's log",
    503: "a dependency is unavailable (the broker, or too many event streams: see Retry-After)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with the problem schema (filled in by ``openapi``)."""
    return {code: {"description": DESCRIPTIONS.get(code, TITLES.get(code, "error"))} for code in codes}


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def build_openapi(app: FastAPI, extra_schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    """FastAPI's schema, then: the Problem schema for every 4xx/5xx (422 and 500 on every operation,
    404 on every path with a parameter, 413 on every operation with a body, 401/403 on every operation
    with the bearer scheme),
    ``extra_schemas`` added to the components, no default beside a ``$ref`` and operations named by their
    function (app/api/openapi_compat.py)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(extra_schemas or {})
    for path, path_item in schema.get("paths", {}).items():
        for op in path_item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            wanted = [422, 500]
            if "{" in path:  # a path naming a resource by id: it may not exist
                wanted.append(404)
            if "requestBody" in op:
                wanted.append(413)
            if op.get("security"):
                wanted += [401, 403]
            for code in wanted:
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["description"] = response.get("description") or DESCRIPTIONS.get(int(code), "error")
                    if int(code) == 422 or "content" not in response:
                        response["content"] = _problem_content()
    return portable(schema)
