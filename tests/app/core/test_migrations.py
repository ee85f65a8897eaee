"""Alembic migrations on a fresh SQLite file and a fresh PostgreSQL database: up, idempotent, down (0002 with a job in the table)."""

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from datetime import timedelta

from sqlalchemy import inspect, text
from sqlmodel import Session

from app import crud
from app.models import Job
from dynds_core.spec import JobSpec

from app.core.db import MIGRATIONS_DIR, init_db, make_engine

EXPECTED = {"job", "metric_point", "sweep", "api_token", "idempotency_key", "alembic_version"}


def _head() -> str:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _check(url):
    engine = make_engine(url)
    try:
        init_db(engine)
        init_db(engine)  # a second start-up is a no-op
        insp = inspect(engine)
        assert EXPECTED <= set(insp.get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
        assert {"ix_metric_point_job_id_id"} <= {i["name"] for i in insp.get_indexes("metric_point")}
        uniques = [u["column_names"] for u in insp.get_unique_constraints("job")] + [
            i["column_names"] for i in insp.get_indexes("job") if i.get("unique")
        ]
        assert ["active_hash"] in uniques
        assert "heartbeat_at" in {c["name"] for c in insp.get_columns("job")}
        cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with Session(engine) as s:  # a job running across the 0002 down and up again
            job, _ = crud.create_job(session=s, spec=JobSpec())
            assert crud.claim_job(session=s, job_id=job.id, worker="w") is not None
            job_id = job.id
        with engine.begin() as conn:  # 0002 down: the heartbeat column goes, the rest stays
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        assert "heartbeat_at" not in {c["name"] for c in inspect(engine).get_columns("job")}
        init_db(engine)
        with Session(engine) as s:  # kept, without a heartbeat: the stale check leaves it to its worker
            assert s.get(Job, job_id).status == "running" and s.get(Job, job_id).heartbeat_at is None
            assert crud.fail_stale_jobs(session=s, older_than=timedelta(seconds=1)) == []
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        init_db(engine)
        assert EXPECTED <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_migrations_postgresql(fresh_pg_url):
    _check(fresh_pg_url)
