"""The FastAPI application.

    app = create_app(Settings(database_url="sqlite:////tmp/dynds.db"))
    uvicorn.run(app)

At start-up the database is migrated (``alembic upgrade head``). Recovery never touches live work: a
running job is judged orphaned only by its heartbeat's age (no heartbeat for ``settings.stale_job_after_s``,
checked at start-up and every ``stale_check_interval_s`` in both modes; ``app.crud.recover_stale_jobs``),
never because this process has just started. The one exception is proof, not age: ``dynds serve`` in
embedded mode holds the database's serve lock (app/core/serve_lock.py), so the jobs of an embedded executor left
running belong to a server that is gone, and it passes ``recover_executor_jobs=True`` to recover them at
once. What recovery does is ``settings.recover_policy``: "resume" (requeued, its next attempt continues from
its last checkpoint) or "requeue" (from step 0), at most ``max_attempts`` starts, or "fail" (with the reason;
the user retries, because a job that took its process down may do it again). The checkpoints of a job that
recovery ends (failed, cancelled) are deleted here.

In Celery mode the API also re-sends jobs that stay queued without a claim (at start-up, then every
``redispatch_check_interval_s`` those last sent ``redispatch_after_s`` ago, with a doubling back-off):
a broker that lost its messages (Redis restarted without persistence) or an API that died between
committing a job and sending it leaves such jobs. The atomic claim makes a duplicate message harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlmodel import Session

import dynds_core
from app import crud
from app.api import errors
from app.api.routes import artifacts as artifact_routes
from app.api.routes import gate as gate_routes
from app.api.routes import health, jobs, meta, recommendation, results, sweeps, workers
from app.api.routes import logs as log_routes
from app.api.routes.results import ResultsCache
from app.artifacts import remove_checkpoints
from app.core.config import Settings, get_settings
from app.core.db import init_db, make_engine
from app.dispatch import CeleryDispatcher, Dispatcher
from app.fleet import routing
from app.models import FINAL_STATES
from dynds_core.verdict import DEFAULT_MIN_SEEDS

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

    async def _reject(self, scope, send) -> None:
        await errors.problem_response(scope, 413, BodyTooLarge(self.max_bytes).detail)(scope, None, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, send)
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
                await self._reject(scope, send)


def spec_schemas() -> dict:
    """JobSpec and its parts for the OpenAPI components (bodies refer to #/components/schemas/JobSpec)."""
    from dynds_core.spec import JobSpec

    schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {
        **defs,
        "JobSpec": schema,
        "AllDefaults": {
            "title": "AllDefaults",
            "type": "object",
            "description": "every default: an explicit request (an empty spec is refused)",
            "properties": {"defaults": {"const": True}},
            "required": ["defaults"],
            "additionalProperties": False,
        },
    }


def _static_dir() -> Path | None:
    """The dashboard's built files, when the frontend package has them."""
    try:
        from frontend import STATIC_DIR  # type: ignore[import-not-found]
    except ImportError:
        STATIC_DIR = Path(__file__).resolve().parent.parent / "frontend" / "static"
    path = Path(STATIC_DIR)
    return path if (path / "index.html").is_file() else None


DOCS_NOT_BUILT = (
    "<!doctype html><title>dynds: documentation not built</title><h1>The documentation is not built here</h1>"
    "<p>In a checkout: <code>bash scripts/docs.sh</code> builds it into <code>site/</code>, which "
    "<code>dynds serve</code> serves here; or set <code>DYNDS_DOCS_DIR</code> to a built site. The same pages, "
    "as Markdown, are in the source's <code>docs/</code>; the API's own reference is at <a href='/docs'>/docs</a>.</p>"
)


def _docs_dir(settings: Settings) -> Path | None:
    """The built documentation site, if there is one."""
    path = settings.docs_dir or Path(__file__).resolve().parent.parent / "site"
    return path if (path / "index.html").is_file() else None


def _mount_docs(app: FastAPI, settings: Settings) -> None:
    """/manual/: the documentation site, offline (no fonts or scripts from elsewhere); a page saying how to
    build it where it is not built (a 404: nothing there yet)."""
    site = _docs_dir(settings)
    if site is None:

        @app.get("/manual/{path:path}", include_in_schema=False)
        def docs_not_built(path: str) -> HTMLResponse:
            return HTMLResponse(DOCS_NOT_BUILT, status_code=404)

    else:
        app.mount("/manual", StaticFiles(directory=site, html=True), name="manual")

    @app.get("/manual", include_in_schema=False)
    def manual() -> RedirectResponse:
        return RedirectResponse("/manual/")


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


def startup(engine: Engine, settings: Settings, *, recover_executor_jobs: bool = False) -> list[int]:
    """Migrate; with ``recover_executor_jobs`` (only a process holding the serve lock may say so), recover
    the jobs a previous embedded executor left running. Returns the recovered job ids."""
    init_db(engine)
    if not recover_executor_jobs:
        return []
    with Session(engine) as session:
        ids = crud.recover_interrupted(session=session, policy=settings.recover_policy, max_attempts=settings.max_attempts, executor_only=True)
    if ids:
        log.warning("jobs %s were left running by a stopped dynds serve: %s", ids, settings.recover_policy)
        remove_ended_checkpoints(engine, settings, ids)
    return ids


def check_heartbeats(engine: Engine, settings: Settings, dispatcher: Dispatcher | None = None) -> list[int]:
    """Recover (``settings.recover_policy``) the running jobs whose heartbeat is older than
    ``settings.stale_job_after_s``; the requeued ones are dispatched again. Returns their ids."""
    with Session(engine) as session:
        outcome = crud.recover_stale_jobs(
            session=session,
            older_than=timedelta(seconds=settings.stale_job_after_s),
            policy=settings.recover_policy,
            max_attempts=settings.max_attempts,
        )
    if outcome:
        log.warning("jobs %s: no heartbeat from their worker for %g s", outcome, settings.stale_job_after_s)
    remove_ended_checkpoints(engine, settings, [job_id for job_id, status in outcome.items() if status != "queued"])
    requeued = [job_id for job_id, status in outcome.items() if status == "queued"]
    if requeued and dispatcher is not None:
        send_again(engine, dispatcher, requeued, default_queue=settings.queue)
    return list(outcome)


def remove_ended_checkpoints(engine: Engine, settings: Settings, job_ids: list[int]) -> None:
    """The checkpoints of those of ``job_ids`` that recovery ended (failed, cancelled); requeued ones keep theirs."""
    if not job_ids:
        return
    with Session(engine) as session:
        ended = [job_id for job_id in job_ids if (job := crud.get_job(session=session, job_id=job_id)) and job.status in FINAL_STATES]
    for job_id in ended:
        remove_checkpoints(settings, job_id)


def send_again(engine: Engine, dispatcher: Dispatcher, job_ids: list[int], *, default_queue: str, skip_backlogged: bool = False) -> list[int]:
    """Dispatch queued jobs again, each to the queue its spec asks for, and stamp each as sent; stops at the
    first failure (the broker is away: the next round tries again). Returns the ids sent. ``skip_backlogged``:
    leave the jobs routed to a queue where the broker still holds messages (``backlogged_queues``)."""
    sent = []
    with Session(engine) as session:
        queues = routing.queues_of_jobs(session=session, job_ids=job_ids, default=default_queue)
    if skip_backlogged:
        busy = backlogged_queues(dispatcher, set(queues.values()) | {default_queue})
        job_ids = [j for j in job_ids if queues.get(j, default_queue) not in busy]
        if not job_ids:
            return []
    try:
        for job_id in job_ids:
            dispatcher.dispatch(job_id, queue=queues.get(job_id, default_queue))
            sent.append(job_id)
    except Exception as exc:
        log.warning("re-dispatch: the broker did not take job %s (%s); retrying at the next round", job_ids[len(sent)], exc)
    with Session(engine) as session:
        crud.mark_dispatched(session=session, job_ids=sent)
    return sent


def redispatch_queued(engine: Engine, settings: Settings, dispatcher: Dispatcher, *, older_than_s: float | None = None) -> list[int]:
    """Send again the queued jobs last sent ``older_than_s`` (default ``settings.redispatch_after_s``) ago, except
    those routed to a queue where the broker still holds messages: the workers have not reached them yet."""
    after = settings.redispatch_after_s if older_than_s is None else older_than_s
    with Session(engine) as session:
        due = crud.jobs_to_redispatch(session=session, older_than=timedelta(seconds=after))
    sent = send_again(engine, dispatcher, due, default_queue=settings.queue, skip_backlogged=True) if due else []
    if sent:
        # A backlog can make this hundreds of jobs a round: the count, and the first few ids to look up.
        shown = ", ".join(map(str, sent[:10])) + (f" and {len(sent) - 10} more" if len(sent) > 10 else "")
        log.warning("%d jobs were still queued without a claim: sent to the broker again (%s)", len(sent), shown)
    return sent


def backlogged_queues(dispatcher: Dispatcher, queues: set[str]) -> set[str]:
    """Those of ``queues`` where the broker still holds messages (``dispatcher.waiting``; none without it, or
    where the broker cannot say). A job lost with a restarted broker sits in an empty queue, or in one that
    drains, and is sent again then; a job behind a backlog has its message there. Without this, 10,000 jobs
    behind 100 workers were re-sent 613 times in one run (each acknowledged without running, but each a
    message to store and skip)."""
    waiting = getattr(dispatcher, "waiting", None)
    if waiting is None:
        return set()
    held = {q: waiting(q) for q in queues}
    busy = {q for q, n in held.items() if n}
    if busy:
        log.debug("queued jobs of %s not sent again: those queues still hold messages", ", ".join(f"{q} ({held[q]})" for q in sorted(busy)))
    return busy


async def watch_heartbeats(engine: Engine, settings: Settings, dispatcher: Dispatcher | None = None) -> None:
    """``check_heartbeats`` at start-up and then every ``stale_check_interval_s``, until cancelled."""
    while True:
        try:
            await asyncio.to_thread(check_heartbeats, engine, settings, dispatcher)  # blocking database calls: off the event loop
        except Exception:  # a database hiccup must not end the watch; the next round tries again
            log.warning("the heartbeat check failed; retrying in %g s", settings.stale_check_interval_s, exc_info=True)
        await asyncio.sleep(settings.stale_check_interval_s)


async def watch_queue(engine: Engine, settings: Settings, dispatcher: Dispatcher) -> None:
    """Celery mode: every queued job sent again at start-up (a broker restarted meanwhile may have lost
    them all; duplicates are harmless), then ``redispatch_queued`` every ``redispatch_check_interval_s``."""
    first = True
    while True:
        try:
            await asyncio.to_thread(redispatch_queued, engine, settings, dispatcher, older_than_s=0.0 if first else None)
            first = False
        except Exception:
            log.warning("the re-dispatch of queued jobs failed; retrying in %g s", settings.redispatch_check_interval_s, exc_info=True)
        await asyncio.sleep(settings.redispatch_check_interval_s)


def warm_results(engine: Engine, cache: ResultsCache) -> None:
    """Build what the dashboard's pages read first into the results cache: the tracks list (every track's part
    of the leaderboard) and the whole board's recommendation. Run once at start-up, off the event loop."""
    started = time.perf_counter()
    try:
        with Session(engine) as session:
            n_tracks = len(json.loads(results.tracks_body(cache, session))["tracks"])
            recommendation.recommendation_body(cache, session, track=None, min_seeds=DEFAULT_MIN_SEEDS, include_noisy=False)
    except Exception:  # a request builds it instead; a server stopping meanwhile lands here too
        log.warning("warming the results cache failed; the first requests build it", exc_info=True)
        return
    log.info("results cache warmed in %.1f s (%d tracks)", time.perf_counter() - started, n_tracks)


def create_app(
    settings: Settings | None = None, *, dispatcher: Dispatcher | None = None, engine: Engine | None = None, recover_executor_jobs: bool = False
) -> FastAPI:
    """The API. ``dispatcher``: who runs new jobs, the app's only one (``app.state.dispatcher``; `dynds serve`
    passes the embedded executor). Default: a CeleryDispatcher when a broker is set, else none (jobs wait
    in the database queue for an executor of another process).
    ``recover_executor_jobs``: this process holds the serve lock (see ``startup``)."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    if dispatcher is None and not settings.embedded:
        dispatcher = CeleryDispatcher(settings.broker_url, queue=settings.queue, visibility_timeout_s=settings.celery_visibility_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.recovered = startup(engine, settings, recover_executor_jobs=recover_executor_jobs)
        d = app.state.dispatcher
        if hasattr(d, "start"):
            d.start()
        watches = [asyncio.create_task(watch_heartbeats(engine, settings, None if settings.embedded else d), name="dynds-heartbeat-check")]
        if not settings.embedded and d is not None:
            watches.append(asyncio.create_task(watch_queue(engine, settings, d), name="dynds-redispatch"))
        if app.state.leaderboard_cache is not None and settings.leaderboard_warm:
            # The server answers meanwhile (a request for a body being built waits for that build). A daemon
            # thread, not the event loop's executor: a server stopped during a long warm-up exits at once.
            args = (app.state.read_engine, app.state.leaderboard_cache)
            threading.Thread(target=warm_results, args=args, name="dynds-warm-results", daemon=True).start()
        # What start-up built (torch, the ORM, the app) lives as long as the process: frozen out of the
        # cyclic collector, a full collection no longer walks it, which had paused every request in
        # flight for about 80 ms a few times a minute under load (bench/api_load.py). Garbage goes first.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for watch in watches:
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
    # Outermost last: Gatekeeper (request id, security headers, the 500 of last resort), the body size
    # limit, the token (before anything reads the body), strict input (app/api/gates.py, app/api/validation.py).
    app.add_middleware(errors.InputGate)
    app.add_middleware(errors.AuthGate, prefix=API_PREFIX)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(errors.Gatekeeper)
    errors.install(app, prefix=API_PREFIX, extra_schemas=spec_schemas())

    for router in (jobs.router, sweeps.router, results.router, meta.router, health.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(artifact_routes.router, prefix=API_PREFIX)  # a job's weights; DELETE /jobs/{id}
    app.include_router(health.router)  # /healthz and /readyz at the root too, for orchestrators
    app.include_router(log_routes.router, prefix=API_PREFIX)  # GET /jobs/{id}/logs
    app.include_router(workers.router, prefix=API_PREFIX)  # GET /workers: the fleet
    app.include_router(recommendation.router, prefix=API_PREFIX)  # GET /recommendation: what to use, per track
    app.include_router(gate_routes.router, prefix=API_PREFIX)  # POST /gate: a decision over seeds
    _mount_docs(app, settings)
    _mount_dashboard(app)
    return app
