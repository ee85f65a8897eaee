"""The outer middlewares: ``Gatekeeper`` (a request id for every request, the security headers, the 500 of
last resort) and ``AuthGate`` (the API token, checked before anything reads the body)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.problems import SCOPE_REQUEST_ID, problem_response

log = logging.getLogger("app.api")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
SCOPE_AUTHED = "dynds.auth_checked"

# The dashboard: its own scripts only (no inline script), no framing. Styles may be inline (style
# attributes in rendered HTML). /docs and /redoc load FastAPI's Swagger/ReDoc from their CDN.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; font-src 'self' https://fonts.gstatic.com https://cdn.jsdelivr.net; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class Gatekeeper:
    """Outermost: a request id for every request (``X-Request-ID``), the security headers on every
    answer, the time the app took until its answer started (``Server-Timing: app;dur=<ms>``: a load test or
    a browser's network panel tells the server's share from the queueing and transfer around it), and for
    an error no handler took, a 500 ``internal`` problem naming the request id (the traceback goes to the
    log, with the id)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
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
                extra = [(b"x-request-id", request_id.encode()), (b"server-timing", b"app;dur=%.1f" % ((time.perf_counter() - t0) * 1000))]
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
            rest = path[len(self.prefix) :]
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
