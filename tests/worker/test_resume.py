"""Interrupted jobs resume from their last checkpoint (issue 17), with real processes: a Celery worker's pool
child SIGKILLed mid-job, a worker stopped by SIGTERM and another started, and (slow) a whole worker SIGKILLed
and an embedded `dynds serve` SIGKILLed and started again.

What every test checks afterwards: the job succeeded; its step points are complete and each (run, step) is
stored once; the attempt that finished it started from the checkpoint's step, not from 0 (the result's
``interruptions``, the job log); and its accuracies, per-step losses and stored weights (model.pt) are those
of the same spec run without a break (a forced re-run; one torch thread: bit for bit).
"""

from __future__ import annotations

import io
import os
import signal

import httpx
import pyarrow.parquet as pq
import pytest
import torch
from service_helpers import (  # noqa: F401  (fixtures)
    database_url,
    db_sessions,
    pg_database,
    redis_server,
    tiny_spec,
    wait_until,
)
from test_faults import assert_one_clean_run, job_row, start_serve, start_worker, stop_with, submit, wait_status, wait_steps

from app import crud

FINAL = ("succeeded", "failed", "cancelled")
# 128 steps per run (baseline and DynDS in lockstep), a checkpoint every 0.5 s: ~12 s in a worker on one thread.
SIZE, STEPS = 4096, 128


def resume_spec(seed: int = 0) -> dict:
    spec = tiny_spec(seed=seed, checkpoint_every_s=0.5)
    spec["data"] = {**spec["data"], "synthetic_size": SIZE}
    return spec


def _celery_env(redis, **extra) -> dict:
    return dict(DYNDS_BROKER_URL=redis.url, DYNDS_QUEUE="dynds-faults", **extra)


def step_points(sessions, job_id: int) -> list:
    with sessions() as s:
        return [p for p in crud.metrics_after(session=s, job_id=job_id, limit=100_000) if p.kind == "step"]


def weights(url: str, job_id: int) -> dict[str, torch.Tensor]:
    r = httpx.get(f"{url}/api/v1/jobs/{job_id}/artifacts/model.pt", timeout=30)
    assert r.status_code == 200, r.text
    return torch.load(io.BytesIO(r.content), weights_only=True)


def losses(points: list) -> list[tuple]:
    """What a run computed at each step (its times aside): equal for two runs that trained alike."""
    return sorted((p.run, p.step, p.values["loss"], p.values["acc"], p.values["batch_type"]) for p in points)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The same spec run once without a break, forced (no deduplication), by the worker's own run_job: its
    result, step losses and stored weights. Shared by the tests of this module (it takes ~10 s)."""
    from app.artifacts import resolve
    from app.core.config import Settings
    from app.core.db import init_db, make_engine, session_factory
    from dynds_core.spec import JobSpec
    from worker.runner import run_job

    home = tmp_path_factory.mktemp("uninterrupted")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'dynds.db'}", worker_threads=1, metrics_flush_interval_s=0.2)
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = session_factory(engine)
    try:
        with sessions() as s:
            job, _ = crud.submit_job(session=s, spec=JobSpec.parse(resume_spec()), force=True)
        assert run_job(job.id, session_factory=sessions, settings=settings, own_process=True) == "succeeded"
        with sessions() as s:
            job = crud.get_job(session=s, job_id=job.id)
            (artifact,) = [a for a in crud.job_artifacts(session=s, job_id=job.id) if a.name == "model.pt"]
        assert job.result["interruptions"] == []
        state = torch.load(resolve(settings, artifact.path), weights_only=True)
        return {"result": job.result, "losses": losses(step_points(sessions, job.id)), "weights": state}
    finally:
        engine.dispose()


def assert_resumed_as_uninterrupted(sessions, url: str, job_id: int, uninterrupted: dict, *, attempts: int, kept: list | None = None) -> dict:
    """The job succeeded after one resumption and ends where the uninterrupted run of its spec ends.
    ``kept``: the step points stored before the resumption (their ids), which must still be there."""
    job = assert_one_clean_run(sessions, job_id, attempts=attempts)  # every step once, none missing
    (where,) = job.result["interruptions"]
    resumed = where["steps"]["dynds"]
    # In lockstep a stop finds the baseline within a step of the DynDS run.
    assert 0 < resumed < STEPS and abs(where["steps"]["baseline"] - resumed) <= 1 and where["lost_s"] >= 0, where
    points = step_points(sessions, job_id)
    if kept is not None:
        # A point as it was written (SQLite may give a deleted point's id to a new one; its time tells them apart).
        def written(p):
            return (p.id, p.run, p.step, p.train_time_s)

        now = {written(p) for p in points}
        assert kept and {written(p) for p in kept if p.step < resumed} <= now, "points the checkpoint covers were rewritten"
        # The finishing attempt's first step is the checkpoint's: every point it wrote is at or after it.
        new = [p for p in points if written(p) not in {written(k) for k in kept}]
        for run, step in where["steps"].items():
            assert min(p.step for p in new if p.run == run) == step, (run, step)
    with sessions() as s:
        lines = [line["message"] for line in crud.job_logs_after(session=s, job_id=job_id, limit=1000)]
    assert any("resumes from checkpoint ckpt-" in m and f"dynds at step {resumed}" in m for m in lines), lines

    for run in ("dynds", "baseline"):
        assert job.result[run]["final_val_acc"] == uninterrupted["result"][run]["final_val_acc"], run
    assert losses(step_points(sessions, job_id)) == uninterrupted["losses"]
    mine, theirs = weights(url, job_id), uninterrupted["weights"]
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # The step archive too: every step once, the dead attempt's past the checkpoint dropped (app/storage/step_archive.py).
    r = httpx.get(f"{url}/api/v1/jobs/{job_id}/artifacts/steps.parquet", timeout=30)
    assert r.status_code == 200, r.text
    archived = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert sorted((a["run"], a["step"], a["loss"], a["acc"], a["batch_type"]) for a in archived) == uninterrupted["losses"]
    assert {a["attempt"] for a in archived if a["run"] == "dynds" and a["step"] >= resumed} == {attempts}
    return {"job": job, "resumed": resumed}


def checkpoints_of(tmp_path, job_id: int) -> list[str]:
    d = tmp_path / "home" / "artifacts" / str(job_id) / "checkpoints"
    return sorted(p.name for p in d.iterdir() if p.suffix == ".dynds") if d.is_dir() else []


def test_a_sigkilled_worker_child_has_its_job_resumed_from_the_checkpoint(tmp_path, redis_server, uninterrupted):
    """The pool child running the job dies at ~60 % (the OOM killer): Celery redelivers the message to a
    fresh child, which finds the dead pid on the job and runs attempt 2 from the last checkpoint."""
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    serve, url = start_serve(tmp_path, db_url, **_celery_env(redis))
    worker = start_worker(tmp_path, db_url, redis.url, "w")
    try:
        job_id = submit(url, resume_spec())["id"]
        job = wait_steps(sessions, job_id, int(0.6 * STEPS), 90, worker)
        assert checkpoints_of(tmp_path, job_id), "no checkpoint written by 60 %"
        os.kill(int(job.worker.split(":")[1]), signal.SIGKILL)
        wait_status(sessions, job_id, FINAL, 90, worker)
        # (Celery redelivers at once: no moment to see the lost attempt's points alone; the slow tests do.)
        assert_resumed_as_uninterrupted(sessions, url, job_id, uninterrupted, attempts=2)
        assert checkpoints_of(tmp_path, job_id) == []
    finally:
        worker.stop()
        serve.stop()
        sessions.engine.dispose()


def test_sigterm_to_a_worker_stops_its_job_at_a_checkpoint_and_the_next_worker_resumes_it(tmp_path, redis_server, uninterrupted):
    """A graceful stop (a deploy): the job stops at the end of a step with a checkpoint there, goes back to the
    queue with the points so far (a stop: not counted against the attempts limit), and the next worker continues
    from that step: two attempts, one of them stopped."""
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    serve, url = start_serve(tmp_path, db_url, **_celery_env(redis))
    try:
        first = start_worker(tmp_path, db_url, redis.url, "first")
        try:
            job_id = submit(url, resume_spec())["id"]
            wait_steps(sessions, job_id, int(0.6 * STEPS), 90, first)
            stop_with(first, signal.SIGTERM)
        finally:
            first.stop()
        job = job_row(sessions, job_id)
        kept = step_points(sessions, job_id)
        stopped_at = max(p.step for p in kept if p.run == "dynds") + 1  # the stop's checkpoint: steps done
        assert job.status == "queued" and (job.attempts, job.stops) == (1, 1) and stopped_at >= int(0.6 * STEPS), (job.status, job.error)
        assert checkpoints_of(tmp_path, job_id), "no checkpoint at the stop"
        second = start_worker(tmp_path, db_url, redis.url, "second")
        try:
            wait_status(sessions, job_id, FINAL, 90, second)
            out = assert_resumed_as_uninterrupted(sessions, url, job_id, uninterrupted, attempts=2, kept=kept)
            assert out["resumed"] == stopped_at, "the stop's own checkpoint: nothing done twice"
        finally:
            second.stop()
        assert checkpoints_of(tmp_path, job_id) == []
    finally:
        serve.stop()
        sessions.engine.dispose()


@pytest.mark.slow  # about 60 s (the heartbeat must go stale, 30 s at least): CI runs it with -m slow
def test_a_sigkilled_worker_has_its_job_resumed_by_another_worker(tmp_path, redis_server, uninterrupted):
    """The whole worker is lost at ~60 % (its machine gone): the API's heartbeat check requeues the job and sends
    it again, and another worker continues it from the last checkpoint the lost one wrote."""
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    env = _celery_env(redis, DYNDS_STALE_JOB_AFTER_S="30", DYNDS_STALE_CHECK_INTERVAL_S="1")
    serve, url = start_serve(tmp_path, db_url, **env)
    doomed = start_worker(tmp_path, db_url, redis.url, "doomed")
    try:
        job_id = submit(url, resume_spec())["id"]
        wait_steps(sessions, job_id, int(0.6 * STEPS), 90, doomed)
        os.killpg(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait(10)
        assert checkpoints_of(tmp_path, job_id)
        kept = step_points(sessions, job_id)  # the lost attempt's, past its last checkpoint included
        other = start_worker(tmp_path, db_url, redis.url, "other")
        try:
            wait_status(sessions, job_id, FINAL, 120, other, serve)
            assert_resumed_as_uninterrupted(sessions, url, job_id, uninterrupted, attempts=2, kept=kept)
        finally:
            other.stop()
    finally:
        doomed.stop()
        serve.stop()
        sessions.engine.dispose()


@pytest.mark.slow  # about 40 s
def test_an_embedded_serve_killed_and_started_again_resumes_its_job(tmp_path, database_url, uninterrupted):
    """`dynds serve` and its job's child SIGKILLed together (a host's OOM kill, a power cut of the container): the
    server started again holds the database's serve lock, recovers the job at once and resumes it."""
    sessions = db_sessions(database_url)
    serve, url = start_serve(tmp_path, database_url)
    try:
        job_id = submit(url, resume_spec())["id"]
        wait_steps(sessions, job_id, int(0.6 * STEPS), 90, serve)
        os.killpg(serve.popen.pid, signal.SIGKILL)  # the server and the job's child, no chance to checkpoint
        serve.popen.wait(10)
    finally:
        serve.stop()
    kept = step_points(sessions, job_id)
    assert job_row(sessions, job_id).status == "running" and checkpoints_of(tmp_path, job_id)
    again, url = start_serve(tmp_path, database_url)
    try:
        wait_status(sessions, job_id, FINAL, 120, again)
        assert_resumed_as_uninterrupted(sessions, url, job_id, uninterrupted, attempts=2, kept=kept)
        assert checkpoints_of(tmp_path, job_id) == []
    finally:
        again.stop()
        sessions.engine.dispose()
