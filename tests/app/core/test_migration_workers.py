"""Migration 0008 (the worker registry) on a fresh SQLite file and a fresh PostgreSQL database holding jobs:
up (one row per host and node name, enforced by the database), down to 0007 (the table goes, the jobs stay), up again."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.core.db import init_db, make_engine
from app.fleet import registry
from app.models import Job, Worker
from dynds_core.hardware import make_hardware
from tests.app.core.migration_helpers import add_job, job_ids, move


def _check_0008(url: str) -> None:
    engine = make_engine(url)
    hw = make_hardware(device="cpu", model="Intel Xeon", threads=2)
    try:
        move(engine, "upgrade", "0007")
        assert "worker" not in inspect(engine).get_table_names()
        job_id, _ = add_job(engine, seed=1)
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
        move(engine, "downgrade", "0007")
        assert "worker" not in inspect(engine).get_table_names()
        assert job_ids(engine) == [job_id]
        init_db(engine)
        with Session(engine) as s:
            assert s.exec(select(Worker)).all() == []
    finally:
        engine.dispose()


def test_migration_0008_sqlite(tmp_path):
    _check_0008(f"sqlite:///{tmp_path / 'fleet.db'}")


def test_migration_0008_postgresql(fresh_pg_url):
    _check_0008(fresh_pg_url)
