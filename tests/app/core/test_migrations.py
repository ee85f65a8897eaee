"""Alembic migrations on a fresh SQLite file and a fresh PostgreSQL database: up, idempotent, down."""

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

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
        cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
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
