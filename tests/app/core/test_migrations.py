"""Alembic migrations on a fresh SQLite file and a fresh PostgreSQL database: up, idempotent, down (0002 with a job in the table)."""

from datetime import UTC, timedelta

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import Session, select

from app import crud
from app.core.db import MIGRATIONS_DIR, init_db, make_engine
from app.models import Job
from dynds_core.spec import JobSpec

EXPECTED = {"job", "metric_point", "sweep", "api_token", "idempotency_key", "alembic_version"}


def _config() -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def _move(engine, cfg: Config, direction: str, revision: str) -> None:
    """``alembic upgrade|downgrade revision`` on ``engine``, in one transaction."""
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


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
        cfg = _config()
        with Session(engine) as s:  # a job running across the 0002 down and up again
            job, _ = crud.submit_job(session=s, spec=JobSpec())
            assert crud.claim_job(session=s, job_id=job.id, worker="w") is not None
            job_id = job.id
        _move(engine, cfg, "downgrade", "0001")  # 0002 down: the heartbeat column goes, the rest stays
        assert "heartbeat_at" not in {c["name"] for c in inspect(engine).get_columns("job")}
        init_db(engine)
        with Session(engine) as s:  # kept, without a heartbeat: the stale check leaves it to its worker
            assert s.get(Job, job_id).status == "running" and s.get(Job, job_id).heartbeat_at is None
            assert crud.fail_stale_jobs(session=s, older_than=timedelta(seconds=1)) == []
        _move(engine, cfg, "downgrade", "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        init_db(engine)
        assert EXPECTED <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_migrations_postgresql(fresh_pg_url):
    _check(fresh_pg_url)


def _old_job(spec: JobSpec, *, status: str, active: bool, data: dict | None = None, **summary) -> dict:
    from datetime import datetime

    from app.leaderboard import setting_key, track_of

    canonical = data if data is not None else spec.canonical()
    # Stored before train.hardware and train.checkpoint_every_s existed (0007): an old row has neither.
    canonical = {**canonical, "train": {k: v for k, v in canonical["train"].items() if k not in ("hardware", "checkpoint_every_s")}}
    return {
        "name": "old",
        "status": status,
        "spec_hash": spec.spec_hash,
        "arch": spec.model.arch,
        "dataset": spec.data.dataset,
        "schedule_kind": spec.dynds.schedule.kind,
        "track": track_of(canonical),
        "attempt": 1,
        "created_at": datetime(2026, 11, 20, tzinfo=UTC),
        "cancel_requested": False,
        "spec": canonical,
        "active_hash": spec.spec_hash if active else None,
        "setting_key": setting_key(canonical["dynds"]),
        "setting": canonical["dynds"],
        "seed": spec.train.seed,
        **summary,
    }


def _check_0003(url):
    """0003 on a database at 0002 that holds jobs: their recipe_hash and frontier_key come from their stored spec."""
    from sqlalchemy import MetaData, Table

    from app.leaderboard import frontier_key, recipe_hash

    engine = make_engine(url)
    cfg = _config()
    try:
        _move(engine, cfg, "upgrade", "0002")
        job = Table("job", MetaData(), autoload_with=engine)
        fixed = JobSpec.parse({"train": {"seed": 1, "lr": 0.05}})
        adaptive = JobSpec.parse({"dynds": {"schedule": {"kind": "adaptive"}}})
        old_shape = JobSpec.parse({"train": {"seed": 2}})
        stored_old = old_shape.canonical()
        del stored_old["train"]["pairing"]  # stored before train.pairing existed
        figures = {"time_saving": 0.3, "acc_delta": -0.1}
        with engine.begin() as conn:
            conn.execute(
                job.insert(),
                [
                    _old_job(fixed, status="succeeded", active=True, **figures),
                    _old_job(adaptive, status="succeeded", active=True, **figures),
                    _old_job(old_shape, status="queued", active=True, data=stored_old, time_saving=None, acc_delta=None),
                ],
            )
        init_db(engine)  # to head
        columns = {c["name"] for c in inspect(engine).get_columns("job")}
        assert {"recipe_hash", "frontier_key", "time_saving_interleaved", "timing_noisy", "verdict"} <= columns
        assert {"ix_job_recipe_status", "ix_job_frontier_status"} <= {i["name"] for i in inspect(engine).get_indexes("job")}
        with Session(engine) as s:
            jobs = {j.spec_hash: j for j in s.exec(select(Job)).all()}
            f, a, o = jobs[fixed.spec_hash], jobs[adaptive.spec_hash], jobs[old_shape.spec_hash]
            assert f.recipe_hash == recipe_hash(fixed.canonical()) and f.frontier_key == frontier_key(fixed.canonical())
            assert a.recipe_hash == recipe_hash(adaptive.canonical())
            assert o.recipe_hash == recipe_hash(stored_old) != recipe_hash(old_shape.canonical())  # kept as stored
            assert f.timing_noisy is False and f.verdict is None and f.time_saving_interleaved is None
            assert f.active_hash == fixed.spec_hash and a.active_hash is None and o.active_hash == old_shape.spec_hash
            rows = crud.summary_rows(session=s, with_setting=True)
            assert {r["recipe_hash"] for r in rows} == {f.recipe_hash, a.recipe_hash}
            assert all(r["recipe"] and "seed" not in r["recipe"]["train"] for r in rows)
            # A new submission of the adaptive spec runs again (the old succeeded one gave up its hold).
            _, outcome = crud.submit_job(session=s, spec=adaptive)
            assert outcome == "created"
        _move(engine, cfg, "downgrade", "0002")
        assert "recipe_hash" not in {c["name"] for c in inspect(engine).get_columns("job")}
        init_db(engine)
        assert "recipe_hash" in {c["name"] for c in inspect(engine).get_columns("job")}
    finally:
        engine.dispose()


def test_migration_0003_on_existing_jobs_sqlite(tmp_path):
    _check_0003(f"sqlite:///{tmp_path / 'old.db'}")


def test_migration_0003_on_existing_jobs_postgresql(fresh_pg_url):
    _check_0003(fresh_pg_url)


def _check_0004(url):
    """0004 on a database at 0003 that holds jobs: a job ever started counts one attempt, and so does a queued
    job carrying the old requeue marker in its progress; a job never started counts none."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table

    engine = make_engine(url)
    cfg = _config()
    try:
        _move(engine, cfg, "upgrade", "0003")
        job = Table("job", MetaData(), autoload_with=engine)
        started = datetime(2026, 11, 20, 1, tzinfo=UTC)
        specs = [JobSpec.parse({"train": {"seed": s}}) for s in range(5)]
        rows = [
            _old_job(specs[0], status="running", active=True, started_at=started, progress={"fraction": 0.4}),
            _old_job(specs[1], status="queued", active=True, started_at=None, progress={"requeued": True}),  # started once, requeued
            _old_job(specs[2], status="queued", active=True, started_at=None, progress=None),  # never started
            _old_job(specs[3], status="succeeded", active=True, started_at=started, progress=None),
            _old_job(specs[4], status="cancelled", active=False, started_at=None, progress=None),  # cancelled while queued
        ]
        with engine.begin() as conn:
            conn.execute(job.insert(), rows)
        init_db(engine)  # to head
        with Session(engine) as s:
            attempts = {j.seed: j.attempts for j in s.exec(select(Job)).all()}
        assert attempts == {0: 1, 1: 1, 2: 0, 3: 1, 4: 0}
        assert {"artifact", "job_log"} <= set(inspect(engine).get_table_names())  # 0005 and 0006 on top
        _move(engine, cfg, "downgrade", "0003")
        assert "attempts" not in {c["name"] for c in inspect(engine).get_columns("job")}
        assert not {"artifact", "job_log"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_0004_counts_the_attempts_of_existing_jobs_sqlite(tmp_path):
    _check_0004(f"sqlite:///{tmp_path / 'old.db'}")


def test_migration_0004_counts_the_attempts_of_existing_jobs_postgresql(fresh_pg_url):
    _check_0004(fresh_pg_url)


def _check_0007(url):
    """0007 on a database at 0006 that holds jobs: each gets the hardware its reproducibility record names
    (the spec's num_threads first), "unknown" when finished without one, nothing while queued; recipe
    hashes no longer hold where a job ran (train.device, num_threads), and come back on the way down."""
    from sqlalchemy import MetaData, Table

    from app.leaderboard import build_leaderboard, recipe_hash
    from dynds_core.hardware import clean_cpu_model, make_hardware

    engine = make_engine(url)
    cfg = _config()
    xeon = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    record = {"device": "cpu", "device_name": xeon, "torch_threads": 2, "torch": "2.14.1+cpu", "cuda": None, "cudnn": None}
    gpu_record = {**record, "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "cuda": "13.0", "cudnn": 91000}

    def stored(spec: JobSpec) -> dict:  # the spec as stored before train.hardware and checkpoint_every_s existed
        data = spec.canonical()
        del data["train"]["hardware"], data["train"]["checkpoint_every_s"]
        return data

    def old_recipe_hash(data: dict) -> str:  # 0003's rule: the recipe kept train.device and num_threads
        import hashlib
        import json

        recipe = {k: v for k, v in data.items() if k not in ("name", "dynds", "baseline", "equal_time_baseline")}
        recipe["train"] = {k: v for k, v in recipe["train"].items() if k != "seed"}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    try:
        _move(engine, cfg, "upgrade", "0006")
        job = Table("job", MetaData(), autoload_with=engine)
        auto, on_cpu, one_thread, on_gpu, failed, queued = (
            JobSpec.parse({"train": {"seed": s, **extra}})
            for s, extra in ((0, {}), (1, {"device": "cpu"}), (2, {"num_threads": 1}), (3, {}), (4, {}), (5, {}))
        )
        figures = {"time_saving": 0.3, "acc_delta": -0.1}
        rows = [
            _old_job(auto, status="succeeded", active=True, data=stored(auto), reproducibility=record, **figures),
            _old_job(on_cpu, status="succeeded", active=True, data=stored(on_cpu), reproducibility=record, **figures),
            _old_job(one_thread, status="succeeded", active=True, data=stored(one_thread), reproducibility=record, **figures),
            _old_job(on_gpu, status="succeeded", active=True, data=stored(on_gpu), reproducibility=gpu_record, **figures),
            _old_job(failed, status="failed", active=False, data=stored(failed), reproducibility=None, time_saving=None, acc_delta=None),
            _old_job(queued, status="queued", active=True, data=stored(queued), reproducibility=None, time_saving=None, acc_delta=None),
        ]
        for r in rows:
            r["recipe_hash"] = old_recipe_hash(r["spec"])
        with engine.begin() as conn:
            conn.execute(job.insert(), rows)
            before = dict(conn.execute(select(job.c.seed, job.c.recipe_hash)).all())
        init_db(engine)  # to head
        assert {"ix_job_hardware_status"} <= {i["name"] for i in inspect(engine).get_indexes("job")}
        two = make_hardware(device="cpu", model=clean_cpu_model(xeon), threads=2).key
        assert two == "cpu · Intel Xeon Platinum 8375C · 2 threads"  # what detect_hardware names that machine
        with Session(engine) as s:
            jobs = {j.seed: j for j in s.exec(select(Job)).all()}
            keys = {seed: j.hardware_key for seed, j in jobs.items()}
            assert keys == {
                0: two, 1: two, 2: "cpu · Intel Xeon Platinum 8375C · 1 thread", 3: "cuda · NVIDIA H100 80GB HBM3 · x1", 4: "unknown", 5: None,
            }  # fmt: skip
            assert jobs[0].hardware["threads"] == 2 and jobs[0].hardware["torch"] == "2.14.1" and jobs[3].hardware["cudnn"] == "91000"
            assert jobs[4].hardware is None and jobs[0].contended is False
            # Where a job ran left the recipe: device auto and device cpu are one recipe now (one track on one machine).
            assert jobs[0].recipe_hash == jobs[1].recipe_hash == recipe_hash(stored(auto)) and before[0] != before[1]
            board = build_leaderboard(
                [{**r, "job_id": r.pop("id")} for r in crud.summary_rows(session=s, with_setting=True)], max_acc_drop=5, min_seeds=1
            )
            assert sorted((t["hardware_key"], len(t["entries"][0]["job_ids"])) for t in board["tracks"]) == sorted(
                [(two, 2), ("cpu · Intel Xeon Platinum 8375C · 1 thread", 1), ("cuda · NVIDIA H100 80GB HBM3 · x1", 1)]
            )
        _move(engine, cfg, "downgrade", "0006")
        assert not {"hardware", "hardware_key", "contended"} & {c["name"] for c in inspect(engine).get_columns("job")}
        with engine.connect() as conn:
            assert dict(conn.execute(select(job.c.seed, job.c.recipe_hash)).all()) == before
        init_db(engine)
    finally:
        engine.dispose()


def test_migration_0007_records_the_hardware_of_existing_jobs_sqlite(tmp_path):
    _check_0007(f"sqlite:///{tmp_path / 'old.db'}")


def test_migration_0007_records_the_hardware_of_existing_jobs_postgresql(fresh_pg_url):
    _check_0007(fresh_pg_url)
