"""Migration 0009 (an index per jobs-list order; results versions kept by triggers) on a fresh SQLite file and a
fresh PostgreSQL database holding jobs: up (indexes there, counters filled from the succeeded jobs, then bumped by
the database on every later change), down to 0008 (the table, triggers and indexes go, the jobs stay), up again."""

from __future__ import annotations

from sqlalchemy import MetaData, Table, inspect, text
from sqlmodel import Session

from app import crud
from app.core.db import init_db, make_engine
from app.models import JOB_SORT_COLUMNS
from tests.app.core.migration_helpers import add_job, job_ids, move


def _set(engine, job_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(Table("job", MetaData(), autoload_with=engine).update().where(text(f"id = {job_id}")).values(**values))


def _versions(engine) -> dict:
    with Session(engine) as s:
        return crud.results_versions(session=s)


def _check_0009(url: str) -> None:
    engine = make_engine(url)
    try:
        move(engine, "upgrade", "0008")
        made = [add_job(engine, seed, epochs) for seed, epochs in ((1, 2), (2, 2), (3, 3))]
        ids = [i for i, _ in made]
        track_a, track_c, fk = made[0][1].track, made[2][1].track, made[0][1].frontier_key
        for i in ids[:2]:
            _set(engine, i, status="succeeded", time_saving=0.3, active_hash=None)
        init_db(engine)  # 0009 on top of a database with jobs in it
        indexes = {i["name"] for i in inspect(engine).get_indexes("job")}
        assert {f"ix_job_{c}_id" for c in JOB_SORT_COLUMNS} | {"ix_job_arch_dataset", "ix_job_dataset"} <= indexes
        # Filled from the jobs there: two succeeded jobs in track A, none yet in C.
        assert _versions(engine) == {("track", track_a): 2, ("frontier", fk): 2}
        # Bumped by the database itself, whoever writes: a success, a change to a succeeded job, a deletion.
        _set(engine, ids[2], status="succeeded", active_hash=None)
        v = _versions(engine)
        assert v[("track", track_c)] == 1 and v[("track", track_a)] == 2 and v[("frontier", fk)] == 3  # same frontier (all budgets)
        _set(engine, ids[0], time_saving=0.5)
        assert _versions(engine)[("track", track_a)] > 2
        before = _versions(engine)
        _set(engine, ids[2], heartbeat_at=None)  # a succeeded job written: counted; queued/running writes are not
        new_id, _ = add_job(engine, 9, 2)
        _set(engine, new_id, progress={"step": 1})
        assert _versions(engine)[("track", track_a)] == before[("track", track_a)]
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM job WHERE id = :i"), {"i": ids[1]})
        assert _versions(engine)[("track", track_a)] == before[("track", track_a)] + 1

        move(engine, "downgrade", "0008")
        insp = inspect(engine)
        assert "results_version" not in insp.get_table_names()
        assert not ({f"ix_job_{c}_id" for c in JOB_SORT_COLUMNS} | {"ix_job_arch_dataset"}) & {i["name"] for i in insp.get_indexes("job")}
        with engine.begin() as conn:  # no trigger left behind to fail on a missing table
            conn.execute(text("UPDATE job SET status = 'succeeded' WHERE id = :i"), {"i": new_id})
        assert job_ids(engine) == sorted([ids[0], ids[2], new_id])
        init_db(engine)
        assert _versions(engine)[("track", track_a)] == 2  # refilled: A's two succeeded jobs now (ids[0] and the new one)
    finally:
        engine.dispose()


def test_migration_0009_sqlite(tmp_path):
    _check_0009(f"sqlite:///{tmp_path / 'sort.db'}")


def test_migration_0009_postgresql(fresh_pg_url):
    _check_0009(fresh_pg_url)
