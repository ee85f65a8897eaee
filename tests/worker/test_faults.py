"""Faults with real processes: a broker that loses its messages, a second `dynds serve`, SIGTERM and SIGKILL
to servers and workers, concurrent retries. Each runs `dynds serve` / `dynds worker` subprocesses (one torch
thread each) against a Redis of its own (tests/worker/service_helpers.RedisServer) and SQLite or PostgreSQL.

What every test checks in the database afterwards: each job ends succeeded exactly once (``attempts``
counts its starts), and its metric points are those of one run (no step twice).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from service_helpers import (  # noqa: F401  (fixtures)
    Proc,
    database_url,
    db_sessions,
    free_port,
    pg_database,
    redis_server,
    subprocess_env,
    tiny_spec,
    wait_until,
)
from service_helpers import start_serve as serve_process

from app import crud
from app.models import Job
from dynds_core.spec import JobSpec

QUEUE = "dynds-faults"
FINAL = ("succeeded", "failed", "cancelled")


def long_spec(seed: int = 0, size: int = 2048) -> dict:
    """64 steps per run at 16x16 (``size`` / 32): long enough (seconds on one thread) to be caught mid-run."""
    spec = tiny_spec(seed=seed)
    spec["data"] = {**spec["data"], "synthetic_size": size}
    return spec


def start_serve(tmp_path: Path, db_url: str, **env: str) -> tuple[Proc, str]:
    return serve_process(tmp_path, DYNDS_DATABASE_URL=db_url, **env)


def start_worker(tmp_path: Path, db_url: str, broker: str, name: str, **env: str) -> Proc:
    return Proc(
        ["worker", "--queue", QUEUE, "--concurrency", "1", "--loglevel", "info"],
        subprocess_env(tmp_path, DYNDS_DATABASE_URL=db_url, DYNDS_BROKER_URL=broker, DYNDS_QUEUE=QUEUE, **env),
        tmp_path / f"worker-{name}.log",
    )


def submit(url: str, spec: dict) -> dict:
    r = httpx.post(url + "/api/v1/jobs", json={"spec": spec}, timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def job_row(sessions, job_id: int) -> Job:
    with sessions() as s:
        return crud.get_job(session=s, job_id=job_id)


def wait_status(sessions, job_id: int, statuses, timeout: float, *procs: Proc) -> Job:
    def check():
        for p in procs:
            assert p.popen.poll() is None, f"{p.log_path.name} exited:\n{p.output()}"
        job = job_row(sessions, job_id)
        return job if job.status in statuses else None

    try:
        return wait_until(check, timeout, f"job {job_id} to be {'/'.join(statuses)}", interval=0.2)
    except AssertionError as e:  # what the processes were doing meanwhile: the only trace a CI run keeps
        tails = "\n".join(f"--- {p.log_path.name}:\n" + "\n".join(p.output().splitlines()[-40:]) for p in procs)
        raise AssertionError(f"{e}\n{tails}") from None


def wait_steps(sessions, job_id: int, steps: int, timeout: float, *procs: Proc) -> Job:
    def check():
        for p in procs:
            assert p.popen.poll() is None, f"{p.log_path.name} exited:\n{p.output()}"
        job = job_row(sessions, job_id)
        return job if job.status == "running" and ((job.progress or {}).get("step") or 0) >= steps else None

    return wait_until(check, timeout, f"job {job_id} to take {steps} steps", interval=0.1)


def assert_one_clean_run(sessions, job_id: int, attempts: int = 1) -> Job:
    """Succeeded, started ``attempts`` times, and its points those of one whole run: every step once."""
    job = job_row(sessions, job_id)
    assert job.status == "succeeded", f"job {job_id}: {job.status} {job.error}"
    assert job.attempts == attempts, f"job {job_id} was started {job.attempts} times"
    with sessions() as s:
        points = crud.metrics_after(session=s, job_id=job_id, limit=100_000)
    steps = Counter((p.run, p.step) for p in points if p.kind == "step")
    assert steps and max(steps.values()) == 1, f"job {job_id}: steps written twice: {[k for k, n in steps.items() if n > 1][:5]}"
    for run, part in job.result.items():
        if isinstance(part, dict) and part.get("steps"):
            assert sorted(st for r, st in steps if r == run) == list(range(part["steps"])), f"job {job_id} run {run}"
    return job


def stop_with(proc: Proc, sig: int, timeout: float = 40) -> int:
    """Send ``sig`` to the process itself (not its group, as an orchestrator does) and wait for it to end."""
    proc.popen.send_signal(sig)
    try:
        return proc.popen.wait(timeout)
    except Exception:
        raise AssertionError(f"{proc.log_path.name} did not exit within {timeout} s of signal {sig}:\n{proc.output()}") from None


# ---------------------------------------------------------------- nothing queued is ever lost


@pytest.mark.slow  # 25-40 s each: CI runs it with -m slow
@pytest.mark.parametrize("persistent", [False, True], ids=["redis-no-persistence", "redis-aof"])
def test_jobs_queued_through_a_redis_restart_each_run_once(tmp_path, redis_server, persistent):
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server(persistent=persistent)
    sessions = db_sessions(db_url)
    from app.core.db import init_db

    init_db(sessions.engine)
    # An API that died between committing a job and sending it: in the database, never in the broker.
    with sessions() as s:
        orphan, _ = crud.submit_job(session=s, spec=JobSpec.parse(tiny_spec(seed=99)))
    env = dict(DYNDS_BROKER_URL=redis.url, DYNDS_QUEUE=QUEUE, DYNDS_REDISPATCH_AFTER_S="2", DYNDS_REDISPATCH_CHECK_INTERVAL_S="0.5")
    serve, url = start_serve(tmp_path, db_url, **env)
    try:
        jobs = [submit(url, tiny_spec(seed=seed))["id"] for seed in range(4)]
        wait_until(lambda: redis.client().llen(QUEUE) >= 5, 10, "the messages (and the orphan's, sent at start-up) in Redis")
        before = task_ids(redis.client())
        redis.restart()  # no worker has consumed anything yet
        # By task id: the server's re-dispatch may already have sent some jobs again, as new messages.
        kept = before & task_ids(redis.client())
        assert kept == before if persistent else not kept, f"{len(kept)} of the {len(before)} messages kept by the restart"
        # Resubmitting a stuck job's spec answers that job, which then runs (it is not stuck forever).
        again = submit(url, tiny_spec(seed=0))
        assert again["id"] == jobs[0] and again["deduplicated"]
        worker = start_worker(tmp_path, db_url, redis.url, "w1")
        try:
            for job_id in [*jobs, orphan.id]:
                wait_status(sessions, job_id, FINAL, 90, serve, worker)
            for job_id in [*jobs, orphan.id]:
                assert_one_clean_run(sessions, job_id)
        finally:
            worker.stop()
    finally:
        serve.stop()
        sessions.engine.dispose()


def task_ids(client) -> set[str]:
    """The Celery task ids of the messages waiting in QUEUE (kombu's Redis transport: a JSON list entry each)."""
    return {json.loads(m)["headers"]["id"] for m in client.lrange(QUEUE, 0, -1)}


# ---------------------------------------------------------------- a second server


def test_a_second_embedded_serve_refuses_to_start_and_leaves_the_first_ones_job_alone(tmp_path, database_url):
    sessions = db_sessions(database_url)
    first, url = start_serve(tmp_path, database_url)
    try:
        job_id = submit(url, long_spec(size=4096))["id"]  # ~15 s: outlasts the second server's start
        wait_steps(sessions, job_id, 2, 60, first)
        second = Proc(["serve", "--port", str(free_port())], subprocess_env(tmp_path, DYNDS_DATABASE_URL=database_url), tmp_path / "second.log")
        try:
            rc = second.popen.wait(60)
        finally:
            second.stop()
        out = second.output()
        assert rc == 1, out
        assert "in use by another dynds serve" in out and f"pid {first.popen.pid}" in out, out
        before = job_row(sessions, job_id)
        assert before.status == "running", before.error
        time.sleep(1.0)
        after = job_row(sessions, job_id)
        assert after.status in ("running", "succeeded") and after.heartbeat_at >= before.heartbeat_at
        wait_status(sessions, job_id, FINAL, 120, first)
        assert_one_clean_run(sessions, job_id)
    finally:
        first.stop()
        sessions.engine.dispose()
    # The lock goes with its process: a new server starts on the database.
    third, _ = start_serve(tmp_path, database_url)
    third.stop()


# ---------------------------------------------------------------- graceful stops


def test_sigterm_to_serve_requeues_the_running_job_which_reruns_cleanly(tmp_path, database_url):
    """Recover policy requeue: from scratch (test_resume.py: the default, resume, continues from a checkpoint)."""
    sessions = db_sessions(database_url)
    serve, url = start_serve(tmp_path, database_url, DYNDS_RECOVER_POLICY="requeue")
    try:
        job_id = submit(url, long_spec())["id"]
        wait_steps(sessions, job_id, 3, 60, serve)
        # uvicorn ends a graceful shutdown by re-raising the signal: -SIGTERM is its normal exit.
        assert stop_with(serve, signal.SIGTERM) in (0, -signal.SIGTERM), serve.output()
    finally:
        serve.stop()
    job = job_row(sessions, job_id)
    with sessions() as s:
        points = crud.metrics_after(session=s, job_id=job_id)
    # Requeued (a shutdown is not the job's fault): counted as a stop, not against the limit, the stopped run's points and
    # progress gone with it in one transaction, and the heartbeat stamped with the requeue.
    assert job.status == "queued" and (job.attempts, job.stops) == (1, 1) and job.worker is None and job.progress is None, (job.status, job.error)
    assert points == [] and job.heartbeat_at is not None and job.result is None
    again, _ = start_serve(tmp_path, database_url, DYNDS_RECOVER_POLICY="requeue")
    try:
        wait_status(sessions, job_id, FINAL, 120, again)
        assert_one_clean_run(sessions, job_id, attempts=2)  # the stopped run and this one
    finally:
        again.stop()
        sessions.engine.dispose()


def _celery_env(redis, **extra) -> dict:
    return dict(DYNDS_BROKER_URL=redis.url, DYNDS_QUEUE=QUEUE, **extra)


def test_sigterm_to_a_worker_requeues_its_job_for_the_next_worker(tmp_path, redis_server):
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    serve, url = start_serve(tmp_path, db_url, **_celery_env(redis, DYNDS_RECOVER_POLICY="requeue"))
    try:
        first = start_worker(tmp_path, db_url, redis.url, "first", DYNDS_RECOVER_POLICY="requeue")
        try:
            job_id = submit(url, long_spec())["id"]
            wait_steps(sessions, job_id, 3, 90, first)
            stop_with(first, signal.SIGTERM)
        finally:
            first.stop()
        job = job_row(sessions, job_id)
        with sessions() as s:
            points = crud.metrics_after(session=s, job_id=job_id)
        assert job.status == "queued" and (job.attempts, job.stops) == (1, 1) and points == [], (job.status, job.error, first.output()[-3000:])
        # The message went back to the broker with the job (rejected with requeue): the next worker takes it.
        second = start_worker(tmp_path, db_url, redis.url, "second", DYNDS_RECOVER_POLICY="requeue")
        try:
            wait_status(sessions, job_id, FINAL, 90, second)
            assert_one_clean_run(sessions, job_id, attempts=2)
        finally:
            second.stop()
    finally:
        serve.stop()
        sessions.engine.dispose()


def test_sigkill_of_a_worker_child_requeues_the_job_once_per_attempt(tmp_path, redis_server):
    """The pool child running the job dies (out of memory, a driver fault): Celery redelivers the message
    to a fresh child, which finds the dead pid on the job and, with recover policy requeue, runs it as attempt 2."""
    import os

    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    serve, url = start_serve(tmp_path, db_url, **_celery_env(redis, DYNDS_RECOVER_POLICY="requeue"))
    worker = start_worker(tmp_path, db_url, redis.url, "w", DYNDS_RECOVER_POLICY="requeue")
    try:
        job_id = submit(url, long_spec())["id"]
        job = wait_steps(sessions, job_id, 3, 90, worker)
        child = int(job.worker.split(":")[1])
        assert child != worker.popen.pid
        os.kill(child, signal.SIGKILL)
        wait_status(sessions, job_id, FINAL, 90, worker)
        assert_one_clean_run(sessions, job_id, attempts=2)
    finally:
        worker.stop()
        serve.stop()
        sessions.engine.dispose()


@pytest.mark.slow  # about 50 s (the heartbeat must go stale, 30 s at least): CI runs it with -m slow
def test_sigkill_of_a_whole_worker_requeues_its_job_onto_another_by_heartbeat(tmp_path, redis_server):
    """The whole worker is gone (its machine lost): its message is never redelivered (visibility timeout of
    days); the API's heartbeat check requeues the job after stale_job_after_s (30 s, the floor) and sends it
    again, and the other worker runs it, once."""
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    redis = redis_server()
    sessions = db_sessions(db_url)
    env = _celery_env(redis, DYNDS_RECOVER_POLICY="requeue", DYNDS_STALE_JOB_AFTER_S="30", DYNDS_STALE_CHECK_INTERVAL_S="1")
    serve, url = start_serve(tmp_path, db_url, **env)
    doomed = start_worker(tmp_path, db_url, redis.url, "doomed")
    try:
        job_id = submit(url, long_spec())["id"]
        wait_steps(sessions, job_id, 3, 90, doomed)
        import os

        os.killpg(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait(10)
        other = start_worker(tmp_path, db_url, redis.url, "other")
        try:
            wait_status(sessions, job_id, FINAL, 90, other, serve)
            job = assert_one_clean_run(sessions, job_id, attempts=2)
            assert job.worker.split(":")[1] != str(doomed.popen.pid)
        finally:
            other.stop()
    finally:
        doomed.stop()
        serve.stop()
        sessions.engine.dispose()


# ---------------------------------------------------------------- retries


def test_fifty_concurrent_retries_of_one_job_make_one_new_job(tmp_path, database_url):
    sessions = db_sessions(database_url)
    with sessions() as s:
        job, _ = crud.submit_job(session=s, spec=JobSpec.parse(tiny_spec(seed=7)))
        crud.fail_job(session=s, job_id=job.id, error="boom")
    serve, url = start_serve(tmp_path, database_url)
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(50)

    def retry():
        with httpx.Client(timeout=30) as c:
            barrier.wait()
            answers.append(c.post(f"{url}/api/v1/jobs/{job.id}/retry"))

    try:
        threads = [threading.Thread(target=retry) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = Counter(r.status_code for r in answers)
        assert codes == {201: 1, 200: 49}, codes
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 1 and ids != {job.id}
        assert all(r.json()["deduplicated"] for r in answers if r.status_code == 200)
        with sessions() as s:
            from sqlmodel import select

            assert len(s.exec(select(Job).where(Job.retry_of == job.id)).all()) == 1
        (new_id,) = ids
        wait_status(sessions, new_id, FINAL, 60, serve)
        assert_one_clean_run(sessions, new_id)
    finally:
        serve.stop()
        sessions.engine.dispose()
