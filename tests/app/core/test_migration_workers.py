"""Migration 0008 (the worker registry) on a fresh SQLite file and a fresh PostgreSQL database holding jobs:
up (one row per host and node name, enforced by the database), down to 0007 (the table goes, the jobs stay), up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app import crud
from app.core.db import MIGRATIONS_DIR, init_db, make_engine
from app.fleet import registry
from app.models import Job, Worker
from dynds_core.hardware import make_hardware
from dynds_core.spec import JobSpec


def _move(engine, direction: str, revision: str) -> None:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


def _check_0008(url: str) -> None:
    engine = make_engine(url)
    hw = make_hardware(device="cpu", model="Intel Xeon", threads=2)
    try:
        _move(engine, "upgrade", "0007")
        assert "worker" not in inspect(engine).get_table_names()
        with Session(engine) as s:
            job, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 1}}))
            job_id = job.id
        init_db(engine)  # 0008 on top of a database with jobs in it
        insp = inspect(engine)
        columns = {c["name"] for c in insp.get_columns("worker")}
        assert columns >= {"host", "name", "pid", "hardware", "hardware_key", "queues", "job_ids", "last_seen"}
        assert "ix_worker_last_seen" in {i["name"] for i in insp.get_indexes("worker")}
        with Session(engine) as s:
            w = registry.register_worker(session=s, host="h", name="dynds@h", kind="celery", pid=1, hardware=hw, queues=["cpu", "dynds"])
            assert s.get(Worker, w.id).hardware["key"] == hw.key and s.get(Job, job_id).status == "queued"
        with Session(engine) as s:  # the database itself keeps one row per (host, name), whoever writes
            s.add(Worker(host="h", name="dynds@h", kind="celery", pid=2, version="x", hardware={}, hardware_key="k", hardware_class="c"))
            with pytest.raises(IntegrityError):
                s.commit()
        _move(engine, "downgrade", "0007")
        assert "worker" not in inspect(engine).get_table_names()
        with Session(engine) as s:
            assert [j.id for j in s.exec(select(Job)).all()] == [job_id]
        init_db(engine)
        with Session(engine) as s:
            assert s.exec(select(Worker)).all() == []
    finally:
        engine.dispose()


def test_migration_0008_sqlite(tmp_path):
    _check_0008(f"sqlite:///{tmp_path / 'fleet.db'}")


def test_migration_0008_postgresql(fresh_pg_url):
    _check_0008(fresh_pg_url)
