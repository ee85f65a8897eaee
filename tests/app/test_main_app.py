"""The app factory: start-up recovery, the dashboard mount, the body size limit's own unit."""

from fastapi.testclient import TestClient
from sqlmodel import Session

from app import crud, main
from app.api.deps import SessionDep
from app.main import create_app
from dynds_core.spec import JobSpec


def test_startup_touches_no_running_job_unless_it_holds_the_serve_lock(settings, engine, dispatcher):
    with Session(engine, expire_on_commit=False) as s:
        job, _ = crud.submit_job(session=s, spec=JobSpec())
        crud.claim_job(session=s, job_id=job.id, worker="host:123:dynds-executor")
        celery_job, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 5}}))
        crud.claim_job(session=s, job_id=celery_job.id, worker="gpu1:77:MainThread")
        queued, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 3}}))
    # Just starting is no reason: a second app on the database leaves every running job alone.
    app = create_app(settings, dispatcher=dispatcher)
    with TestClient(app) as c:
        assert app.state.recovered == []
        assert c.get(f"/api/v1/jobs/{job.id}").json()["status"] == "running"
    # `dynds serve` holding the serve lock knows the executor that ran `job` is gone; a Celery worker's job is
    # left to its heartbeat.
    # (recover_policy fail here: with the default, resume, the job would wait in the queue for its next attempt)
    app = create_app(settings.model_copy(update={"recover_policy": "fail"}), dispatcher=dispatcher, recover_executor_jobs=True)
    with TestClient(app) as c:
        assert app.state.recovered == [job.id]
        body = c.get(f"/api/v1/jobs/{job.id}").json()
        assert body["status"] == "failed" and body["error"].startswith("interrupted")
        assert c.get(f"/api/v1/jobs/{celery_job.id}").json()["status"] == "running"
        assert c.get(f"/api/v1/jobs/{queued.id}").json()["status"] == "queued"  # queued jobs just wait
        assert c.post(f"/api/v1/jobs/{job.id}/retry").status_code == 201


def test_celery_mode_leaves_running_jobs_alone(settings, engine, dispatcher):
    with Session(engine, expire_on_commit=False) as s:
        job, _ = crud.submit_job(session=s, spec=JobSpec())
        crud.claim_job(session=s, job_id=job.id, worker="celery@elsewhere")
    app = create_app(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}), dispatcher=dispatcher)
    with TestClient(app) as c:
        assert c.get(f"/api/v1/jobs/{job.id}").json()["status"] == "running"


class StartStopDispatcher:
    def __init__(self):
        self.events = []

    def dispatch(self, job_id, queue=None):
        self.events.append(("dispatch", job_id))

    def start(self):
        self.events.append("start")

    def stop(self):
        self.events.append("stop")


def test_dispatcher_is_started_after_migration_and_stopped(settings):
    d = StartStopDispatcher()
    with TestClient(create_app(settings, dispatcher=d)) as c:
        assert d.events == ["start"]
        job = c.post("/api/v1/jobs", json={"spec": {"train": {"seed": 9}}}).json()
    assert d.events == ["start", ("dispatch", job["id"]), "stop"]


def test_the_app_has_one_dispatcher_the_one_create_app_was_given(settings, session):
    """No registry beside it: an embedded app given none dispatches nothing (its jobs wait in the queue)."""
    import inspect

    from app import dispatch

    assert [name for name, f in vars(dispatch).items() if inspect.isfunction(f) and f.__module__ == dispatch.__name__] == ["dispatch"]
    app = create_app(settings)
    assert settings.embedded and app.state.dispatcher is None
    with TestClient(app) as c:
        job = c.post("/api/v1/jobs", json={"spec": {"train": {"seed": 9}}}).json()
    assert job["status"] == "queued" and crud.next_queued_job_id(session=session) == job["id"]


def test_startup_objects_are_frozen_out_of_the_garbage_collector(settings, dispatcher):
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
            assert gc.get_freeze_count() > 10_000  # torch, the ORM and the app: no full collection walks them
            assert c.get("/api/v1/jobs").status_code == 200
    finally:
        gc.unfreeze()


def test_reads_run_in_autocommit_and_writes_in_transactions(settings, dispatcher):
    # GETs skip the BEGIN/ROLLBACK round trips; writes keep their transactions.
    import sqlite3

    def autocommit(session) -> bool:
        raw = session.connection().connection.dbapi_connection  # what the driver will do
        return raw.isolation_level is None if isinstance(raw, sqlite3.Connection) else raw.autocommit

    seen = []
    app = create_app(settings, dispatcher=dispatcher)

    @app.get("/_probe_isolation")
    def probe_get(session: SessionDep):
        seen.append(("GET", autocommit(session)))

    @app.post("/_probe_isolation")
    def probe_post(session: SessionDep):
        seen.append(("POST", autocommit(session)))

    with TestClient(app) as c:
        c.get("/_probe_isolation")
        c.post("/_probe_isolation")
    assert seen == [("GET", True), ("POST", False)]


def test_dashboard_is_served_when_built(settings, tmp_path, monkeypatch, dispatcher):
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<html>dynds dashboard</html>")
    (static / "assets" / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(main, "_static_dir", lambda: static)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        assert "dynds dashboard" in c.get("/").text
        assert c.get("/static/assets/app.js").text == "console.log(1)"
        assert c.get("/api/v1/healthz").status_code == 200
    monkeypatch.setattr(main, "_static_dir", lambda: None)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        assert c.get("/").json()["docs"] == "/docs"


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/events",
        "/api/v1/sweeps",
        "/api/v1/leaderboard",
        "/api/v1/export",
        "/api/v1/meta",
        "/api/v1/specs/validate",
        "/readyz",
    ):
        assert path in paths, path


def test_celery_mode_resends_queued_jobs_at_startup_and_after_redispatch_after_s(settings, engine, dispatcher):
    import time

    with Session(engine, expire_on_commit=False) as s:
        # Committed, never sent (an API that died in between), and one already running (never re-sent).
        lost, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 1}}))
        running, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 2}}))
        crud.claim_job(session=s, job_id=running.id, worker="w")
    celery = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0", "redispatch_after_s": 0.3, "redispatch_check_interval_s": 0.05})
    with TestClient(create_app(celery, dispatcher=dispatcher)) as c:
        deadline = time.monotonic() + 5
        while lost.id not in dispatcher.job_ids:
            assert time.monotonic() < deadline, "not re-sent at start-up"
            time.sleep(0.02)
        new = c.post("/api/v1/jobs", json={"spec": {"train": {"seed": 3}}}).json()["id"]
        deadline = time.monotonic() + 5
        while dispatcher.job_ids.count(new) < 2:  # sent once by the route, again when still queued 0.3 s later
            assert time.monotonic() < deadline, f"not re-sent: {dispatcher.job_ids}"
            time.sleep(0.02)
        assert running.id not in dispatcher.job_ids
    with Session(engine) as s:
        assert crud.get_job(session=s, job_id=lost.id).heartbeat_at is not None  # when it was last sent
    # Embedded mode: the executor reads the database queue itself; nothing is re-sent.
    dispatcher.job_ids.clear()
    with TestClient(create_app(settings.model_copy(update={"redispatch_after_s": 0.01, "redispatch_check_interval_s": 0.01}), dispatcher=dispatcher)):
        time.sleep(0.2)
    assert dispatcher.job_ids == []
