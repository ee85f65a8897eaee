"""Fixtures for the service tests: every API test runs on SQLite and on a real PostgreSQL.

PostgreSQL: DYNDS_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres); a fresh
database is created for the test session and dropped afterwards. Unreachable: a failure in CI
(CI set), a skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

# Starlette suggests the httpx2 fork for its TestClient; httpx is what the project depends on.
warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.db import init_db, make_engine  # noqa: E402
from app.main import create_app  # noqa: E402

PG_ADMIN_URL = os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = ("metric_point", "idempotency_key", "job", "sweep", "api_token", "worker")


def _pg_unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({reason}); set DYNDS_TEST_POSTGRES_URL")


@contextmanager
def fresh_pg_database():
    """A new, empty PostgreSQL database; yields its URL and drops it afterwards."""
    import psycopg

    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"dynds_test_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc).strip().splitlines()[0])
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url():
    """An empty PostgreSQL database of its own (not migrated), dropped after the test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_url():
    with fresh_pg_database() as url:
        engine = make_engine(url)
        init_db(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dynds.db'}"
    url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "cifar10").mkdir(parents=True)
    return d


@pytest.fixture
def settings(db_url, tmp_path, data_dir) -> Settings:
    # No start-up warm-up of the results cache: its thread, late on a loaded machine, would build beside the
    # tests that count builds (tests/app/api/routes/test_results_per_track.py tests it on purpose).
    return Settings(database_url=db_url, home=tmp_path / "home", data_dirs=[str(data_dir)], events_poll_interval_s=0.05, leaderboard_warm=False)


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as s:
        yield s


class RecordingDispatcher:
    """A dispatcher that records the job ids it was given (and can play a broker that is down)."""

    def __init__(self, fail: bool = False):
        self.job_ids: list[int] = []
        self.queues: list[str | None] = []  # the queue each job id was sent to
        self.fail = fail
        self.lock = threading.Lock()

    def dispatch(self, job_id: int, queue: str | None = None) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable at redis://nowhere:6379")
        with self.lock:
            self.job_ids.append(job_id)
            self.queues.append(queue)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def app(settings, dispatcher):
    return create_app(settings, dispatcher=dispatcher)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(app):
    """The app served by a real uvicorn in a thread (true concurrency, real streaming); yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _test_hardware():
    from dynds_core.hardware import make_hardware

    return {
        "cpu": make_hardware(device="cpu", model="Test CPU", threads=1, torch="2.14.1"),
        "cpu2": make_hardware(device="cpu", model="Test CPU", threads=2, torch="2.14.1"),
        "cuda": make_hardware(device="cuda", model="Test GPU", count=1, threads=1, torch="2.14.1", cuda="13.0"),
    }


# The machines constructed results were measured on: "cpu · Test CPU · 1 thread", "cpu · Test CPU · 2 threads", "cuda · Test GPU · x1".
TEST_HARDWARE = _test_hardware()
CPU_KEY = TEST_HARDWARE["cpu"].key


def make_result(
    spec,
    *,
    time_saving=0.3,
    acc_delta=-0.2,
    equal_time_gap=None,
    cancelled=False,
    baseline=True,
    baseline_acc=70.0,
    steps=100,
    equal_time_steps=None,
    timing_noisy=False,
    time_saving_interleaved=None,
    verdict=None,
    hardware="cpu",
    contended=False,
):
    """A JobResult with the given headline figures (what a finished training job reports); ``hardware``: a
    Hardware, or a device kind for TEST_HARDWARE[kind] (a fixed test machine)."""
    from dynds_core.result import JobResult, RunResult

    dynds = RunResult(run="dynds", final_val_acc=baseline_acc + acc_delta, train_time_s=100.0 * (1 - time_saving), cancelled=cancelled, steps=steps)
    base = RunResult(run="baseline", final_val_acc=baseline_acc, train_time_s=100.0, steps=steps) if baseline else None
    equal = (
        RunResult(run="equal_time", final_val_acc=baseline_acc + acc_delta - equal_time_gap, steps=equal_time_steps or steps)
        if equal_time_gap is not None
        else None
    )
    return JobResult(
        spec_hash=spec.spec_hash,
        spec=spec.canonical(),
        device="cpu",
        dynds=dynds,
        baseline=base,
        equal_time=equal,
        time_saving=time_saving if baseline else None,
        acc_delta=acc_delta if baseline else None,
        equal_time_gap=equal_time_gap,
        cancelled=cancelled,
        timing_noisy=timing_noisy,
        time_saving_interleaved=time_saving_interleaved,
        verdict=verdict,
        hardware=TEST_HARDWARE[hardware] if isinstance(hardware, str) else hardware,
        contended=contended,
    )


@pytest.fixture
def result_for():
    """result_for(spec, **figures) -> JobResult."""
    return make_result


@pytest.fixture
def failing_dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher(fail=True)


@pytest.fixture
def new_job(session):
    """new_job(**spec_data) -> Job: a newly created queued job (its spec's parts as keyword arguments)."""
    from app import crud
    from dynds_core.spec import JobSpec

    def make(**spec):
        job, outcome = crud.submit_job(session=session, spec=JobSpec.parse(spec))
        assert outcome == "created"
        return job

    return make


@pytest.fixture
def set_columns(session):
    """set_columns(job_id, **values): write a job's columns directly (a state or a time a test needs), bypassing app.crud."""
    from app.models import Job

    def write(job_id: int, **values) -> None:
        session.execute(Job.__table__.update().where(Job.id == job_id).values(**values))
        session.commit()

    return write


@pytest.fixture
def finished_job(session):
    """finished_job(spec_data, **figures) -> job id: a job submitted, claimed and finished with those figures."""
    from app import crud
    from dynds_core.spec import JobSpec

    def make(data: dict | None = None, **figures) -> int:
        spec = JobSpec.parse(data or {})
        job, _ = crud.submit_job(session=session, spec=spec, force=True)
        assert crud.claim_job(session=session, job_id=job.id, worker="test") is not None
        assert crud.finish_job(session=session, job_id=job.id, result=make_result(spec, **figures))
        return job.id

    return make
