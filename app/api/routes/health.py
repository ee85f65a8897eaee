"""Liveness (the process answers) and readiness (the database and the broker answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])
BROKER_TIMEOUT_S = 1.0


def check_database(engine) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}: {exc}".splitlines()[0]


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
        return f"down: {type(exc).__name__}: {exc}".splitlines()[0]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database or the broker is down"}})
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    body = {
        "database": await run_in_threadpool(check_database, state.engine),
        "broker": await run_in_threadpool(check_broker, state.settings.broker_url),
    }
    ok = body["database"] == "ok" and body["broker"] in ("ok", "embedded")
    return JSONResponse(body, status_code=200 if ok else 503)
