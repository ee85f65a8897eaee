"""Liveness (the process answers) and readiness (the database and the broker answer).

Neither shares anything with the rest of the API that a load could exhaust: /healthz answers on the
event loop (no thread, no database), and /readyz's probes run under a limiter of their own, on a
connection of their own (not the pool that requests and event streams use), each within
READY_TIMEOUT_S (a probe that takes longer reports the component down).
"""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app.core.redact import scrub

router = APIRouter(tags=["health"])
BROKER_TIMEOUT_S = 1.0
READY_TIMEOUT_S = 2.0


def probe_engine(engine):
    """An engine on the same database without a pool: each probe opens (and closes) its own connection."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        connect_args = {"timeout": READY_TIMEOUT_S, "check_same_thread": False}
    elif url.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": max(1, int(READY_TIMEOUT_S)), "options": f"-c statement_timeout={int(READY_TIMEOUT_S * 1000)}"}
    else:
        connect_args = {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def check_database(engine) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        # /readyz is open to anyone: the database's password never in it
        return scrub(f"down: {type(exc).__name__}: {exc}".splitlines()[0], engine.url.render_as_string(hide_password=False))


def check_broker(broker_url: str | None) -> str:
    if not broker_url:
        return "embedded"
    try:
        if broker_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(broker_url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(broker_url, connect_timeout=BROKER_TIMEOUT_S) as conn:
                conn.ensure_connection(max_retries=1)
        return "ok"
    except Exception as exc:
        return scrub(f"down: {type(exc).__name__}: {exc}".splitlines()[0], broker_url)


async def _probe(state, check, *args) -> str:
    """``check(*args)`` in a thread of the probes' own limiter, given up on after READY_TIMEOUT_S."""
    limiter = getattr(state, "probe_limiter", None)
    if limiter is None:
        limiter = state.probe_limiter = anyio.CapacityLimiter(2)
    with anyio.move_on_after(READY_TIMEOUT_S):
        # abandon_on_cancel: a hung probe's thread is left to finish (it holds its token until then).
        return await anyio.to_thread.run_sync(check, *args, limiter=limiter, abandon_on_cancel=True)
    return f"down: no answer within {READY_TIMEOUT_S:g} s"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}  # async: answered on the event loop, never waiting for a thread


READY_SCHEMA = {"type": "object", "properties": {"database": {"type": "string"}, "broker": {"type": "string"}}}


@router.get(
    "/readyz",
    responses={
        200: {"description": "the database and the broker answer", "content": {"application/json": {"schema": READY_SCHEMA}}},
        503: {
            "description": "the database or the broker is down (the same keys, the failing one as 'down: ...')",
            "content": {"application/json": {"schema": READY_SCHEMA}},
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    probe = getattr(state, "probe_engine", None)
    if probe is None:
        probe = state.probe_engine = probe_engine(state.engine)
    body = {
        "database": await _probe(state, check_database, probe),
        "broker": await _probe(state, check_broker, state.settings.broker_url),
    }
    ok = body["database"] == "ok" and body["broker"] in ("ok", "embedded")
    return JSONResponse(body, status_code=200 if ok else 503)
