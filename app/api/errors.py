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
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from typing import Any, Iterable
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.utils import is_body_allowed_for_status_code
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("app.api")

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
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}
PROBLEM_JSON = "application/problem+json"
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_JSON_DEPTH = 100
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
SCOPE_REQUEST_ID = "dynds.request_id"
SCOPE_AUTHED = "dynds.auth_checked"

# The dashboard: its own scripts only (no inline script), no framing. Styles may be inline (style
# attributes in rendered HTML). /docs and /redoc load FastAPI's Swagger/ReDoc from their CDN.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; font-src 'self' https://fonts.gstatic.com https://cdn.jsdelivr.net; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def problem_type(status: int) -> str:
    slug = PROBLEM_TYPES.get(status)
    return PROBLEM_BASE + slug if slug else "about:blank"


def _loc_part(p: Any) -> str | int:
    return p if isinstance(p, int) and not isinstance(p, bool) else str(p)


def clean_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Validation errors as ``{"loc", "msg", "type"}``: no submitted value (``input``), no ``ctx``."""
    out = []
    for err in errors:
        if not isinstance(err, dict):
            out.append({"loc": [], "msg": str(err), "type": "value_error"})
            continue
        msg = str(err.get("msg", ""))
        kind = str(err.get("type", "value_error"))
        ctx = err.get("ctx")
        if kind == "json_invalid" and isinstance(ctx, dict) and ctx.get("error"):
            msg = f"invalid JSON: {ctx['error']}"
        out.append({"loc": [_loc_part(p) for p in err.get("loc", ())], "msg": msg, "type": kind})
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<body>'}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    n = len(errors)
    return f"{n} invalid field{'s' if n != 1 else ''}: {shown}{more}"


def problem_body(status: int, detail: str | None, *, instance: str | None = None, request_id: str | None = None,
                 errors: list[dict[str, Any]] | None = None, title: str | None = None) -> bytes:
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


def problem_response(scope, status: int, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    if errors is not None and not detail:
        detail = _summary(errors)
    body = problem_body(status, detail, instance=scope.get("path"), request_id=_request_id(scope), errors=errors)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def validation_problem(scope, errors: list[dict[str, Any]]) -> Response:
    return problem_response(scope, 422, errors=clean_errors(errors))


# ---------------------------------------------------------------- exception handlers


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
    return validation_problem(request.scope, [{
        "loc": ["request"], "type": "value_error.out_of_range",
        "msg": "a value in this request is out of range for the database (integers: -2^63 .. 2^63-1)",
    }])


# ---------------------------------------------------------------- middlewares


async def _send_response(response: Response, scope, receive, send) -> None:
    await response(scope, receive, send)


class Gatekeeper:
    """Outermost: a request id for every request (``X-Request-ID``), the security headers on every
    answer, and for an error no handler took, a 500 ``internal`` problem naming the request id (the
    traceback goes to the log, with the id)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope[SCOPE_REQUEST_ID] = request_id
        path = scope.get("path", "")
        csp = (DOCS_CSP if path.startswith(DOCS_PATHS) else CSP).encode()
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"x-request-id", request_id.encode())]
                extra += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))
                message = {**message, "headers": headers + extra}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unexpected error answering %s %s (request id %s)", scope.get("method"), path, request_id)
            if started:
                return  # the answer was under way: it ends here (the client sees a cut stream)
            detail = f"an unexpected error occurred; the server's log has it under request id {request_id}"
            await problem_response(scope, 500, detail)(scope, receive, send_with_headers)


WRITE_EXEMPT = ("/healthz", "/readyz")


class AuthGate:
    """The API token, checked before the body is read or validated: writes (any method but GET, HEAD and
    OPTIONS) under ``prefix`` need the write token when the server has tokens; reads too when
    ``read_requires_token``. /healthz and /readyz are always open. Marks the scope checked, so the
    routes' dependencies (which declare the bearer scheme in the OpenAPI) do not check again."""

    def __init__(self, app, prefix: str):
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            rest = path[len(self.prefix):]
            if rest not in WRITE_EXEMPT:
                from app.api.deps import check_token

                state = scope["app"].state
                write = scope["method"] not in ("GET", "HEAD", "OPTIONS")
                if write or state.settings.read_requires_token:
                    try:
                        await run_in_threadpool(check_token, state.engine, scope, "writes" if write else "reads on this server")
                    except StarletteHTTPException as exc:
                        return await problem_response(scope, exc.status_code, exc.detail, headers=exc.headers)(scope, receive, send)
                scope[SCOPE_AUTHED] = True
        await self.app(scope, receive, send)


class InvalidJSON(ValueError):
    def __init__(self, msg: str, loc: list | None = None, kind: str = "json_invalid"):
        super().__init__(msg)
        self.msg, self.loc, self.kind = msg, loc or [], kind


def _refuse_constant(name: str):
    raise InvalidJSON(f"{name} is not a JSON number (RFC 8259): send a finite number or null", kind="value_error.non_finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"the number {text[:40]} overflows a 64-bit float: send a finite number", kind="value_error.non_finite")
    return value


def _bad_string(s: str) -> str | None:
    if "\x00" in s:
        return "must not contain NUL bytes (\\u0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (a lone surrogate such as \\ud800 is not)"
    return None


def check_json(value: Any) -> tuple[list, str, str] | None:
    """The first thing in a parsed body that strict JSON input may not hold: (loc, msg, type), or None."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 0)]
    while stack:
        node, loc, depth = stack.pop()
        if isinstance(node, str):
            why = _bad_string(node)
            if why:
                return ["body", *loc], why, "value_error.string"
        elif isinstance(node, bool) or node is None or isinstance(node, float):
            continue
        elif isinstance(node, int):
            if not MIN_INT64 <= node <= MAX_INT64:
                return ["body", *loc], "integers must fit in 64 bits (-2^63 .. 2^63-1)", "value_error.int64"
        elif isinstance(node, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                return ["body", *loc], f"nested more than {MAX_JSON_DEPTH} levels deep", "value_error.depth"
            if isinstance(node, dict):
                for k, v in node.items():
                    why = _bad_string(k)
                    if why:
                        return ["body", *loc], f"a key {why}", "value_error.string"
                    stack.append((v, (*loc, k), depth + 1))
            else:
                stack.extend((v, (*loc, i), depth + 1) for i, v in enumerate(node))
    return None


def parse_strict_json(body: bytes) -> Any:
    """``json.loads`` that refuses what strict JSON input may not hold (``InvalidJSON`` with a location)."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno} column {exc.colno})", [exc.pos]) from None
    except UnicodeDecodeError:
        raise InvalidJSON("the body is not UTF-8 text") from None
    except RecursionError:
        raise InvalidJSON(f"nested more than {MAX_JSON_DEPTH} levels deep", kind="value_error.depth") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise InvalidJSON(str(exc), kind="value_error.number") from None
    bad = check_json(value)
    if bad is not None:
        loc, msg, kind = bad
        raise InvalidJSON(msg, loc[1:], kind)
    return value


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # FastAPI reads a body without a Content-Type as JSON
    main = content_type.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or (main.startswith(b"application/") and main.endswith(b"+json"))


class InputGate:
    """422 before any route for input no route should see: a NUL byte in the path or in a query
    parameter's name or value; a JSON body that ``parse_strict_json`` refuses."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "\x00" in scope.get("path", ""):
            return await validation_problem(scope, [{"loc": ["path"], "msg": "must not contain NUL bytes (%00)", "type": "value_error.string"}])(scope, receive, send)
        qs = scope.get("query_string", b"")
        if qs and (b"%00" in qs or b"\x00" in qs):
            for name, value in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    err = {"loc": ["query", name.replace("\x00", "\\x00")], "msg": "must not contain NUL bytes (%00)", "type": "value_error.string"}
                    return await validation_problem(scope, [err])(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS") or not _is_json(dict(scope["headers"]).get(b"content-type")):
            return await self.app(scope, receive, send)
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                parse_strict_json(body)
            except InvalidJSON as exc:
                return await validation_problem(scope, [{"loc": ["body", *exc.loc], "msg": exc.msg, "type": exc.kind}])(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
    with the bearer scheme), and
    ``extra_schemas`` added to the components."""
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
    return schema


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
