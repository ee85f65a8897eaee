"""The FastAPI application.

    app = create_app(Settings(database_url="sqlite:////tmp/dynds.db"))
    uvicorn.run(app)

At start-up the database is migrated (``alembic upgrade head``) and, in embedded mode, jobs left
`running` by a previous process are recovered (see ``app.crud.recover_interrupted``: by default they
fail with a reason and the user retries them, because a job that took the process down may do it again).
In Celery mode the API does not touch running jobs at start-up: workers elsewhere may still be running them.

In both modes a background task fails running jobs whose worker has written no heartbeat for
``settings.stale_job_after_s`` (every ``stale_check_interval_s``): a Celery worker that was killed
or lost its machine leaves its job `running` otherwise (see ``app.crud.fail_stale_jobs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlmodel import Session

import dynds_core
from app import crud
from app.api.routes import health, jobs, meta, results, sweeps
from app.api.routes.results import ResultsCache
from app.core.config import Settings, get_settings
from app.core.db import init_db, make_engine
from app.dispatch import CeleryDispatcher, Dispatcher, get_dispatcher

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, detail=f"request body too large: at most {limit} bytes are accepted")


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, and by counting a streamed body."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send) -> None:
        await JSONResponse({"detail": BodyTooLarge(self.max_bytes).detail}, status_code=413)({"type": "http"}, None, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI's body reader passes it on instead of calling it a 400.
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)


def _static_dir() -> Path | None:
    """The dashboard's built files, when the frontend package has them."""
    try:
        from frontend import STATIC_DIR  # type: ignore[import-not-found]
    except ImportError:
        STATIC_DIR = Path(__file__).resolve().parent.parent / "frontend" / "static"
    path = Path(STATIC_DIR)
    return path if (path / "index.html").is_file() else None


def _mount_dashboard(app: FastAPI) -> None:
    static = _static_dir()
    if static is None:
        @app.get("/", include_in_schema=False)
        def root() -> dict:
            return {"service": "dynds", "api": API_PREFIX, "docs": "/docs"}
        return

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")


def startup(engine: Engine, settings: Settings) -> list[int]:
    """Migrate, then recover interrupted jobs (embedded mode only); returns the recovered job ids."""
    init_db(engine)
    if not settings.embedded:
        return []
    with Session(engine) as session:
        ids = crud.recover_interrupted(session=session, policy=settings.recover_policy)
    if ids:
        log.warning("jobs %s were left running by a stopped process: %s", ids, settings.recover_policy)
    return ids


def check_heartbeats(engine: Engine, settings: Settings) -> list[int]:
    """Fail the running jobs whose heartbeat is older than ``settings.stale_job_after_s``; returns their ids."""
    with Session(engine) as session:
        ids = crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=settings.stale_job_after_s))
    if ids:
        log.warning("jobs %s failed as interrupted: no heartbeat from their worker for %g s", ids, settings.stale_job_after_s)
    return ids


async def watch_heartbeats(engine: Engine, settings: Settings) -> None:
    """``check_heartbeats`` at start-up and then every ``stale_check_interval_s``, until cancelled."""
    while True:
        try:
            await asyncio.to_thread(check_heartbeats, engine, settings)  # blocking database calls: off the event loop
        except Exception:  # a database hiccup must not end the watch; the next round tries again
            log.warning("the heartbeat check failed; retrying in %g s", settings.stale_check_interval_s, exc_info=True)
        await asyncio.sleep(settings.stale_check_interval_s)


def create_app(settings: Settings | None = None, *, dispatcher: Dispatcher | None = None, engine: Engine | None = None) -> FastAPI:
    """The API. ``dispatcher``: who runs new jobs (default: Celery when a broker is set, else whatever
    was registered with ``app.dispatch.set_dispatcher``, e.g. the embedded executor)."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    if dispatcher is None and not settings.embedded:
        dispatcher = CeleryDispatcher(settings.broker_url, queue=settings.queue, visibility_timeout_s=settings.celery_visibility_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.recovered = startup(engine, settings)
        d = app.state.dispatcher or get_dispatcher()
        if hasattr(d, "start"):
            d.start()
        watch = asyncio.create_task(watch_heartbeats(engine, settings), name="dynds-heartbeat-check")
        # What start-up built (torch, the ORM, the app) lives as long as the process: frozen out of the
        # cyclic collector, a full collection no longer walks it, which had paused every request in
        # flight for about 80 ms a few times a minute under load (bench/api_load.py). Garbage goes first.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            if hasattr(d, "stop"):
                d.stop()
            engine.dispose()

    app = FastAPI(
        title="dynds",
        version=dynds_core.__version__,
        description="Dynamic input and kernel downsampling: submit training jobs, follow them, compare schedule settings.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    # GET requests only read: in autocommit, their queries go without a BEGIN and a ROLLBACK round trip
    # each (PostgreSQL), on the same connection pool.
    app.state.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.state.dispatcher = dispatcher
    app.state.leaderboard_cache = ResultsCache() if settings.leaderboard_cache else None
    app.state.recovered = []
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    for router in (jobs.router, sweeps.router, results.router, meta.router, health.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)  # /healthz and /readyz at the root too, for orchestrators
    _mount_dashboard(app)
    return app
