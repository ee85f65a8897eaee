"""The embedded executor inside the real app (create_app + TestClient, SQLite file database)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_helpers import TINY_SPEC, tiny_spec, wait_until

from app import crud
from app.main import create_app
from worker.embedded import EmbeddedExecutor, embedded_threads

API = "/api/v1"


def _get(client, job_id):
    r = client.get(f"{API}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _final(client, job_id, timeout=90):
    return wait_until(lambda: (j := _get(client, job_id))["status"] in ("succeeded", "failed", "cancelled") and j, timeout, f"job {job_id} to finish")


@pytest.fixture
def served(settings):
    """The app with an embedded executor, its lifespan (migrate, recover, start the executor) running."""
    executor = EmbeddedExecutor(settings, idle_poll_s=0.5)
    with TestClient(create_app(settings, dispatcher=executor)) as client:
        yield client, executor
    assert not executor.running, "the app's shutdown stops the executor"


def test_embedded_executor_runs_a_posted_job_end_to_end(served):
    client, executor = served
    assert executor.running and executor.threads == 1
    r = client.post(f"{API}/jobs", json={"spec": TINY_SPEC})
    assert r.status_code == 201, r.text
    job = _final(client, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["summary"]["time_saving"] is not None and job["reproducibility"]["device"] == "cpu"
    metrics = client.get(f"{API}/jobs/{job['id']}/metrics").json()["data"]
    assert sorted({(m["run"], m["kind"]) for m in metrics}) == [("baseline", "epoch"), ("baseline", "step"), ("dynds", "epoch"), ("dynds", "step")]
    # The job's success is committed before run_job returns to the executor's loop, which counts it.
    wait_until(lambda: executor.jobs_run == 1, 10, "the executor to count the job it ran")
    assert executor.jobs_run == 1 and executor.current_job is None


def test_jobs_run_one_at_a_time_in_submission_order(served):
    client, executor = served
    ids = [client.post(f"{API}/jobs", json={"spec": tiny_spec(seed=s), "force": True}).json()["id"] for s in (1, 2, 3)]
    jobs = [_final(client, i) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    starts = [j["started_at"] for j in jobs]
    assert starts == sorted(starts)
    # One at a time: each job started after the previous one finished.
    assert all(jobs[i + 1]["started_at"] >= jobs[i]["finished_at"] for i in range(2))


def test_cancelling_a_running_job_over_http(served):
    client, _ = served
    spec = tiny_spec()
    spec["data"] = {**spec["data"], "synthetic_size": 2048}  # 64 steps per run: time to cancel mid-run
    job_id = client.post(f"{API}/jobs", json={"spec": spec}).json()["id"]
    wait_until(lambda: (_get(client, job_id).get("progress") or {}).get("step", 0) >= 2, 60, "the job to take steps")
    r = client.post(f"{API}/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"], r.text
    job = _final(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and job["result"]["cancelled"]
    run = job["progress"]["run"]
    assert job["result"][run]["steps"] < 64, "the run stopped before its end"


def test_cancelling_a_queued_job_is_immediate(settings):
    # No executor: the job stays queued, and a cancel ends it at once.
    with TestClient(create_app(settings)) as client:
        job_id = client.post(f"{API}/jobs", json={"spec": TINY_SPEC}).json()["id"]
        r = client.post(f"{API}/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        # An executor started now finds nothing to run.
        executor = EmbeddedExecutor(settings, idle_poll_s=0.1).start()
        try:
            wait_until(lambda: executor._wake.is_set() is False, 5, "the executor to look at the queue")
        finally:
            assert executor.stop(10)
        assert executor.jobs_run == 0 and _get(client, job_id)["started_at"] is None


def test_stopping_the_executor_requeues_the_running_job(settings, sessions, make_job):
    spec = tiny_spec()
    spec["data"] = {**spec["data"], "synthetic_size": 4096}
    job_id = make_job(spec)
    executor = EmbeddedExecutor(settings, session_factory=sessions, idle_poll_s=0.1).start()

    def stepping():
        with sessions() as s:
            return ((crud.get_job(session=s, job_id=job_id).progress or {}).get("step") or 0) >= 2

    wait_until(stepping, 60, "the job to take steps")
    assert executor.stop(timeout=20), "the running job stops within a step"
    with sessions() as s:
        job = crud.get_job(session=s, job_id=job_id)
        points = crud.metrics_after(session=s, job_id=job_id)
    # A shutdown is not the job's fault: queued again, the attempt given back, the stopped run's points gone.
    assert job.status == "queued" and job.attempts == 0 and job.error is None and job.progress is None and points == []


def test_embedded_threads():
    # one core kept for the API and the metric writes: 20 readers slowed a job 2.5-3.8x with both cores
    # training and 1.9-2.4x with one kept (bench/embedded_readers.py)
    assert embedded_threads(1) == 1
    assert embedded_threads(2) == 1
    assert embedded_threads(4) == 3
    assert embedded_threads(16) == 15
    assert embedded_threads(16, requested=3) == 3
    with pytest.raises(ValueError, match="worker_threads must be at least 1: 0"):
        embedded_threads(8, requested=0)
