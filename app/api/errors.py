"""Error bodies as RFC 9457 problem details, and the checks every request passes before a route sees it.

Every error the API answers is ``application/problem+json``::

    {"type": "https://dynds.dev/problems/validation", "title": "Unprocessable Content", "status": 422,
     "detail": "1 invalid field: body.spec.train.epochs: ...", "instance": "/api/v1/jobs",
     "request_id": "4b1e...", "errors": [{"loc": ["body", "spec", "train", "epochs"], "msg": "...", "type": "..."}]}

``type`` is one of ``PROBLEM_BASE`` + a slug in ``PROBLEM_TYPES`` (stable: clients may switch on it),
``about:blank`` for a status without one. ``errors`` only on validation problems (422): each field's
``loc``/``msg``/``type``, never the submitted value (a value is not echoed back: NaN, a NUL byte or a
megabyte of it would not render or would bloat the answer). ``request_id`` is the request's
``X-Request-ID`` (the client's when it sent a sane one, else generated), echoed as a header on every
answer and written in the server's log with any unexpected error (which answers a 500 ``internal``
problem naming it, never a stack trace).

The middlewares, outermost first (``install``): ``Gatekeeper`` (request id, security headers, the 500
of last resort), the body size limit (app.main), ``AuthGate`` (the API token, before anything reads the
body, so an unauthenticated malformed write is a 401, not a 422), ``InputGate`` (NUL bytes in the
path or query string; a JSON body that is not strict JSON: NaN/Infinity, numbers that overflow to
infinity, integers past 64 bits, NUL bytes or lone surrogates in strings, nesting past
``MAX_JSON_DEPTH``).

problems.py: the problem model and its OpenAPI schema; validation.py: 422 field errors and the strict
input check (``InputGate``); gates.py: ``Gatekeeper`` and ``AuthGate``. This module: the exception
handlers and ``install``; every name of those modules is importable from here, as before.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api.gates import CSP, DOCS_CSP, REQUEST_ID_HEADER, SCOPE_AUTHED, SECURITY_HEADERS, WRITE_EXEMPT, AuthGate, Gatekeeper
from app.api.problems import (
    DESCRIPTIONS,
    PROBLEM_BASE,
    PROBLEM_JSON,
    PROBLEM_SCHEMA,
    PROBLEM_TYPES,
    SCOPE_REQUEST_ID,
    TITLES,
    build_openapi,
    problem_body,
    problem_response,
    problem_type,
    problems,
)
from app.api.validation import (
    MAX_INT64,
    MAX_JSON_DEPTH,
    MIN_INT64,
    InputGate,
    InvalidJSON,
    check_json,
    clean_errors,
    parse_strict_json,
    validation_problem,
)

log = logging.getLogger("app.api")

__all__ = [
    "CSP",
    "DESCRIPTIONS",
    "DOCS_CSP",
    "MAX_INT64",
    "MAX_JSON_DEPTH",
    "MIN_INT64",
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "PROBLEM_SCHEMA",
    "PROBLEM_TYPES",
    "REQUEST_ID_HEADER",
    "SCOPE_AUTHED",
    "SCOPE_REQUEST_ID",
    "SECURITY_HEADERS",
    "TITLES",
    "WRITE_EXEMPT",
    "AuthGate",
    "Gatekeeper",
    "InputGate",
    "InvalidJSON",
    "build_openapi",
    "check_json",
    "clean_errors",
    "http_exception_handler",
    "install",
    "out_of_range_handler",
    "parse_strict_json",
    "problem_body",
    "problem_response",
    "problem_type",
    "problems",
    "validation_exception_handler",
    "validation_problem",
]


async def http_exception_handler(request: Request, exc: StarletteHTTPException) -> Response:
    headers = getattr(exc, "headers", None)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    detail = exc.detail
    if isinstance(detail, list):  # a route that raised a list of field errors
        return problem_response(request.scope, exc.status_code, errors=clean_errors(detail), headers=headers)
    if not isinstance(detail, str):
        detail = json.dumps(detail, ensure_ascii=True, default=str)
    return problem_response(request.scope, exc.status_code, detail, headers=headers)


async def validation_exception_handler(request: Request, exc: RequestValidationError) -> Response:
    return validation_problem(request.scope, list(exc.errors()))


async def out_of_range_handler(request: Request, exc: Exception) -> Response:
    """A value the database cannot hold (SQLite's OverflowError, PostgreSQL's numeric_value_out_of_range
    or string_data_right_truncation) came from the request: a 422, not a 500. Routes bound their
    parameters (app.api.deps.IdParam, ...); this covers one that does not."""
    log.warning("%s %s: a value out of the database's range: %s", request.method, request.url.path, str(exc).splitlines()[0][:200])
    return validation_problem(
        request.scope,
        [
            {
                "loc": ["request"],
                "type": "value_error.out_of_range",
                "msg": "a value in this request is out of range for the database (integers: -2^63 .. 2^63-1)",
            }
        ],
    )


def install(app: FastAPI, *, prefix: str, extra_schemas: dict[str, Any] | None = None) -> None:
    """The handlers, the gates (``add_middleware`` puts the last added outermost: call after any other
    ``add_middleware`` that must sit inside the gatekeeper, e.g. the body size limit), and the OpenAPI."""
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    from sqlalchemy.exc import DataError

    app.add_exception_handler(OverflowError, out_of_range_handler)
    app.add_exception_handler(DataError, out_of_range_handler)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, extra_schemas)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
