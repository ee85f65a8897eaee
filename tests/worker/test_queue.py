"""The Celery path end to end: a real Redis (db 15), a real `dynds worker` process, the API sending the task."""

from __future__ import annotations

import os

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from service_helpers import TINY_SPEC, Proc, subprocess_env, wait_until

from app import crud
from app.core.config import Settings
from app.dispatch import TASK_NAME, CeleryDispatcher
from app.main import create_app

QUEUE = "dynds-test"


@pytest.fixture
def worker_proc(tmp_path, redis_url, sessions):
    proc = Proc(
        ["worker", "--queue", QUEUE, "--concurrency", "1", "--loglevel", "info"],
        subprocess_env(tmp_path, DYNDS_BROKER_URL=redis_url),
        tmp_path / "worker.log",
    )
    yield proc
    proc.stop()


def test_a_job_posted_to_the_api_runs_on_a_celery_worker(tmp_path, settings, sessions, redis_url, worker_proc):
    api_settings = Settings(**{**settings.model_dump(), "broker_url": redis_url, "queue": QUEUE})
    with TestClient(create_app(api_settings)) as client:
        r = client.post("/api/v1/jobs", json={"spec": TINY_SPEC})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def finished():
            assert worker_proc.popen.poll() is None, f"dynds worker exited:\n{worker_proc.output()}"
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            return job["status"] in ("succeeded", "failed", "cancelled") and job

        job = wait_until(finished, 120, f"job {job_id} on the Celery worker", interval=0.3)
        assert job["status"] == "succeeded", f"{job['error']}\n{worker_proc.output()}"
        assert client.get("/api/v1/readyz").json()["broker"] == "ok"

    with sessions() as s:
        n_points = len(crud.metrics_after(session=s, job_id=job_id, limit=10_000))
        # Claimed by the worker's child process, not by this (the API's) process.
        assert crud.get_job(session=s, job_id=job_id).worker.split(":")[1] not in ("", str(os.getpid()))
    assert n_points == 10

    # Redelivered messages (as after a lost worker, or re-dispatched duplicates) are skipped: the job is not run
    # twice. An ended job's deliveries are acknowledged by the parent, without a fresh pool child each (each costs
    # seconds on a busy machine: a backlog of duplicates after a broker restart once held a queue up for minutes).
    children = worker_proc.output().count("dynds worker process")
    sender = CeleryDispatcher(redis_url, queue=QUEUE).celery
    for _ in range(5):
        sender.send_task(TASK_NAME, args=[job_id], queue=QUEUE)
    acked = f"job {job_id} is already succeeded: its delivery acknowledged without a pool child"
    wait_until(lambda: worker_proc.output().count(acked) == 5, 60, "the worker to acknowledge the 5 redeliveries")
    assert worker_proc.output().count("dynds worker process") == children, "a pool child was started for an ended job"
    assert "is not queued" not in worker_proc.output()
    broker = redis_lib.Redis.from_url(redis_url)
    assert broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0, "a delivery left in the broker, not acknowledged"
    with sessions() as s:
        assert len(crud.metrics_after(session=s, job_id=job_id, limit=10_000)) == n_points
        assert crud.get_job(session=s, job_id=job_id).status == "succeeded"


def test_a_pool_child_runs_one_job_unless_the_settings_say_more(settings):
    """A fresh child per job bounds what a job leaks; a fleet of short jobs may reuse children (a fresh one
    costs about 0.3 s of CPU per job: bench/fleet_sim.py)."""
    from worker.celery_app import make_celery

    offline = {"broker_url": "redis://127.0.0.1:1/0"}  # never connected
    assert make_celery(settings.model_copy(update=offline)).conf.worker_max_tasks_per_child == 1
    many = settings.model_copy(update={**offline, "worker_max_jobs_per_child": 50})
    assert make_celery(many).conf.worker_max_tasks_per_child == 50
    with pytest.raises(ValueError, match="worker_max_jobs_per_child"):
        Settings(worker_max_jobs_per_child=0)


def test_queued_jobs_behind_messages_in_their_queue_are_not_sent_again_until_it_drains(settings, sessions, redis_url):
    """The re-dispatch sweep asks the real broker how many messages each queue holds: jobs routed to a queue that
    still holds some are behind a backlog and keep their message; once the queue is empty (drained, or lost with
    a broker restarted without persistence) the jobs still queued are sent again."""
    from app.core.db import make_engine
    from app.main import redispatch_queued

    engine = make_engine(settings.database_url)
    api_settings = Settings(**{**settings.model_dump(), "broker_url": redis_url, "queue": QUEUE})
    dispatcher = CeleryDispatcher(redis_url, queue=QUEUE)
    r = redis_lib.Redis.from_url(redis_url)
    assert dispatcher.waiting(QUEUE) == 0  # never used: no such list in Redis
    with sessions() as s:
        ids = [crud.submit_job(session=s, spec=crud_spec(seed), force=True)[0].id for seed in range(3)]
    for job_id in ids:
        dispatcher.dispatch(job_id)
    assert dispatcher.waiting(QUEUE) == 3 == r.llen(QUEUE)
    assert redispatch_queued(engine, api_settings, dispatcher, older_than_s=0.0) == []
    assert r.llen(QUEUE) == 3  # nothing added behind them
    r.delete(QUEUE)  # the broker lost them (restarted without persistence)
    assert sorted(redispatch_queued(engine, api_settings, dispatcher, older_than_s=0.0)) == ids
    assert r.llen(QUEUE) == 3
    # A broker that cannot say (unreachable): None, and the sweep sends as it did before (or fails to send).
    assert CeleryDispatcher("redis://127.0.0.1:1/0", queue=QUEUE).waiting(QUEUE) is None


def crud_spec(seed: int):
    from dynds_core.spec import JobSpec

    return JobSpec.parse({**TINY_SPEC, "train": {**TINY_SPEC.get("train", {}), "seed": seed}})
