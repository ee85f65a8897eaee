"""Migration 0010 (job.stops) on SQLite and PostgreSQL databases holding jobs: down to 0009 (each stop gives its
attempt back, as the code before it counted), up again (stops start at 0, the jobs kept)."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlmodel import Session

from app import crud
from app.core.db import init_db, make_engine
from dynds_core.spec import JobSpec
from tests.app.core.migration_helpers import move


def _check_0010(url: str) -> None:
    engine = make_engine(url)
    try:
        init_db(engine)
        with Session(engine) as s:
            stopped, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 1}}))
            crashed, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 2}}))
            ids = stopped.id, crashed.id
            for n in (1, 2):  # stopped by two deploys, then running again
                assert crud.claim_job(session=s, job_id=ids[0], worker="w").attempts == n
                assert crud.requeue_job(session=s, job_id=ids[0], attempt=n, keep_points=True)
            crud.claim_job(session=s, job_id=ids[0], worker="w")
            crud.claim_job(session=s, job_id=ids[1], worker="w")
            assert [(j.attempts, j.stops) for j in map(lambda i: crud.get_job(session=s, job_id=i), ids)] == [(3, 2), (1, 0)]
        move(engine, "downgrade", "0009")
        assert "stops" not in {c["name"] for c in inspect(engine).get_columns("job")}
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, attempts FROM job")).all())
        assert rows == {ids[0]: 1, ids[1]: 1}  # the stops' attempts given back
        init_db(engine)
        with Session(engine) as s:
            assert [(crud.get_job(session=s, job_id=i).attempts, crud.get_job(session=s, job_id=i).stops) for i in ids] == [(1, 0), (1, 0)]
    finally:
        engine.dispose()


def test_migration_0010_sqlite(tmp_path):
    _check_0010(f"sqlite:///{tmp_path / 'stops.db'}")


def test_migration_0010_postgresql(fresh_pg_url):
    _check_0010(fresh_pg_url)
