"""GET /jobs/{id}/logs (cursor paging, 404, read auth) and migration 0005, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, inspect, text
from sqlmodel import Session

from app import crud
from app.core.db import MIGRATIONS_DIR, init_db, make_engine
from app.main import create_app
from app.security import create_token
from dynds_core.spec import JobSpec

API = "/api/v1"


def _job(session: Session, **spec) -> int:
    job, _ = crud.submit_job(session=session, spec=JobSpec.parse(spec or {"train": {"epochs": 1}}), force=True)
    return job.id


def _log(session: Session, job_id: int, *messages: str, level: str = "INFO", start: int = 0) -> None:
    now = datetime.now(UTC)
    crud.append_job_logs(
        session=session,
        rows=[
            {"job_id": job_id, "seq": start + i, "created_at": now, "level": level, "logger": "worker.runner", "message": m}
            for i, m in enumerate(messages, 1)
        ],
    )


def test_logs_page_with_a_cursor_like_metrics(client, session):
    job_id = _job(session)
    other = _job(session, name="other")
    _log(session, job_id, "one", "two", "three")
    _log(session, job_id, "careful", level="WARNING", start=3)
    _log(session, other, "not mine")
    r = client.get(f"{API}/jobs/{job_id}/logs", params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [line["message"] for line in page["data"]] == ["one", "two"] and page["next_cursor"] == 2
    line = page["data"][0]
    assert set(line) == {"seq", "created_at", "level", "logger", "message"} and line["created_at"].endswith("Z")
    page = client.get(f"{API}/jobs/{job_id}/logs", params={"after": page["next_cursor"]}).json()
    assert [(line["seq"], line["level"], line["message"]) for line in page["data"]] == [(3, "INFO", "three"), (4, "WARNING", "careful")]
    assert client.get(f"{API}/jobs/{job_id}/logs", params={"after": 4}).json() == {"data": [], "next_cursor": 4}
    warnings = client.get(f"{API}/jobs/{job_id}/logs", params={"level": "warning"}).json()["data"]
    assert [line["message"] for line in warnings] == ["careful"]


def test_logs_of_an_unknown_job_are_404_and_of_a_new_job_empty(client, session):
    assert client.get(f"{API}/jobs/999999/logs").status_code == 404
    job_id = _job(session)
    assert client.get(f"{API}/jobs/{job_id}/logs").json() == {"data": [], "next_cursor": 0}
    assert client.get(f"{API}/jobs/{job_id}/logs", params={"limit": 0}).status_code == 422


def test_logs_need_a_token_when_reads_do(settings, session, dispatcher):
    token = create_token(session=session, name="viewer")
    job_id = _job(session)
    _log(session, job_id, "hello")
    with TestClient(create_app(settings.model_copy(update={"read_requires_token": True}), dispatcher=dispatcher)) as c:
        assert c.get(f"{API}/jobs/{job_id}/logs").status_code == 401
        r = c.get(f"{API}/jobs/{job_id}/logs", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["data"][0]["message"] == "hello"


def test_a_retry_starts_with_a_log_of_its_own(client, session):
    job_id = _job(session)
    crud.fail_job(session=session, job_id=job_id, error="boom")
    _log(session, job_id, "job failed: boom", level="ERROR")
    retry = client.post(f"{API}/jobs/{job_id}/retry").json()
    assert client.get(f"{API}/jobs/{retry['id']}/logs").json()["data"] == []
    assert client.get(f"{API}/jobs/{job_id}/logs").json()["data"][0]["message"] == "job failed: boom"


# ---------------------------------------------------------------- migration 0005


def _alembic(conn) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def _old_job(conn) -> int:
    """A job row written with the columns of the table as it is now (an older revision): the ORM model has more."""
    from app.crud.submission import job_columns

    job = Table("job", MetaData(), autoload_with=conn)
    values = {k: v for k, v in job_columns(JobSpec.parse({"train": {"epochs": 1}})).items() if k in job.c}
    values.update(status="queued", attempt=1, created_at=datetime.now(UTC), cancel_requested=False)
    return conn.execute(job.insert().values(**values)).inserted_primary_key[0]


def _check_0005(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "0004")
        assert "job_log" not in inspect(engine).get_table_names()
        with engine.begin() as conn:  # a job from before the migration, in the columns the table had then
            job_id = _old_job(conn)
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "0005")
        insp = inspect(engine)
        assert {c["name"] for c in insp.get_columns("job_log")} == {"id", "job_id", "seq", "created_at", "level", "logger", "message"}
        assert "ix_job_log_job_id_seq" in {i["name"] for i in insp.get_indexes("job_log")}
        fks = insp.get_foreign_keys("job_log")
        assert fks[0]["referred_table"] == "job" and fks[0]["options"].get("ondelete") == "CASCADE"
        with Session(engine) as s:
            _log(s, job_id, "x" * 5000)  # a Text column: long lines (the writer bounds them, not the table)
            assert crud.job_logs_after(session=s, job_id=job_id)[0]["message"] == "x" * 5000
        with engine.begin() as conn:  # a job's lines go with it
            conn.execute(text("DELETE FROM metric_point WHERE job_id = :id"), {"id": job_id})
            conn.execute(text("DELETE FROM job WHERE id = :id"), {"id": job_id})
        job_log = Table("job_log", MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            assert conn.execute(job_log.select()).all() == []
        with engine.begin() as conn:
            command.downgrade(_alembic(conn), "0004")
        assert "job_log" not in inspect(engine).get_table_names()
        init_db(engine)  # and up to head again
        assert "job_log" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_migration_0005_from_0004_sqlite(tmp_path):
    _check_0005(f"sqlite:///{tmp_path / 'old.db'}")


def test_migration_0005_from_0004_postgresql(fresh_pg_url):
    _check_0005(fresh_pg_url)


def test_log_paging_parameters_are_bounded(client):
    assert client.get("/api/v1/jobs/9223372036854775808/logs").status_code == 422  # past 64 bits
    assert client.get("/api/v1/jobs/1/logs?after=9223372036854775808").status_code == 422
    assert client.get("/api/v1/jobs/2147483648/logs").status_code == 404  # a valid id no row can have
