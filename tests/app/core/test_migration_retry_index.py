"""Migration 0011 (an index on job.retry_of) on SQLite and PostgreSQL databases holding a job and its retry:
down to 0010 (the index goes, the link stays), up again (the index back, what finds a retry uses it)."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlmodel import Session

from app import crud
from app.core.db import init_db, make_engine
from dynds_core.spec import JobSpec
from tests.app.core.migration_helpers import move


def _indexes(engine) -> set[str]:
    return {i["name"] for i in inspect(engine).get_indexes("job")}


def _check_0011(url: str) -> None:
    engine = make_engine(url)
    try:
        init_db(engine)
        with Session(engine) as s:
            job, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 1}}))
            crud.claim_job(session=s, job_id=job.id, worker="w")
            crud.fail_job(session=s, job_id=job.id, error="boom")
            retry, made = crud.retry_job_once(session=s, job=crud.get_job(session=s, job_id=job.id))
            assert made
            ids = job.id, retry.id
        assert "ix_job_retry_of" in _indexes(engine)
        move(engine, "downgrade", "0010")
        assert "ix_job_retry_of" not in _indexes(engine)
        init_db(engine)
        assert "ix_job_retry_of" in _indexes(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM job WHERE retry_of = :j"), {"j": ids[0]}).scalar() == ids[1]
            if engine.dialect.name == "postgresql":  # the planner can use it (seq scans off: the table is tiny)
                conn.execute(text("SET enable_seqscan = off"))
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN SELECT id FROM job WHERE retry_of = 1")))
            else:
                plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN SELECT id FROM job WHERE retry_of = 1")))
            assert "ix_job_retry_of" in plan, plan
    finally:
        engine.dispose()


def test_migration_0011_sqlite(tmp_path):
    _check_0011(f"sqlite:///{tmp_path / 'retry.db'}")


def test_migration_0011_postgresql(fresh_pg_url):
    _check_0011(fresh_pg_url)


def _schema_diff(url: str) -> list:
    """What alembic's autogenerate finds between the migrated database and the models (empty: they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    engine = make_engine(url)
    try:
        init_db(engine)
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()


def test_the_migrations_build_the_schema_the_models_declare_sqlite(tmp_path):
    assert _schema_diff(f"sqlite:///{tmp_path / 'schema.db'}") == []


def test_the_migrations_build_the_schema_the_models_declare_postgresql(fresh_pg_url):
    assert _schema_diff(fresh_pg_url) == []
