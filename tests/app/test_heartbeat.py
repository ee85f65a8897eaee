"""Heartbeats: written by the claim and every metrics flush; running jobs whose heartbeat went stale are
failed by the API's periodic check (both databases, both modes), fresh ones are left running."""

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col

from app import crud
from app.main import create_app
from app.models import Job, as_utc, utcnow
from dynds_core.result import StepMetrics
from dynds_core.spec import JobSpec
from worker.sink import MetricsSink


def running_job(session, seed=0, worker="gpu1:4242:MainThread") -> int:
    job, _ = crud.submit_job(session=session, spec=JobSpec.parse({"train": {"seed": seed}}), force=True)
    assert crud.claim_job(session=session, job_id=job.id, worker=worker) is not None
    return job.id


def set_heartbeat(engine, job_id, when) -> None:
    with Session(engine) as s:
        s.execute(update(Job).where(col(Job.id) == job_id).values(heartbeat_at=when))
        s.commit()


def job_row(engine, job_id) -> Job:
    with Session(engine) as s:
        return s.get(Job, job_id)


def step(i, total=100):
    return StepMetrics(
        run="dynds", step=i, epoch=0, batch_type="full", loss=1.0, acc=50.0, lr=0.1, step_time_s=0.01, train_time_s=0.01 * (i + 1), total_steps=total
    )


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_claim_writes_the_first_heartbeat(session):
    before = utcnow()
    job_id = running_job(session)
    beat = as_utc(job_row(session.get_bind(), job_id).heartbeat_at)
    assert beat is not None and before <= beat <= utcnow()


def test_a_stale_job_is_failed_with_the_reason_and_a_fresh_one_is_not(session, engine):
    stale = running_job(session, seed=1)
    fresh = running_job(session, seed=2)
    legacy = running_job(session, seed=3)  # claimed before heartbeats existed: no judgement possible
    now = utcnow()
    set_heartbeat(engine, stale, now - timedelta(seconds=700))
    set_heartbeat(engine, fresh, now - timedelta(seconds=30))
    set_heartbeat(engine, legacy, None)

    assert crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=600), now=now) == [stale]
    job = job_row(engine, stale)
    assert job.status == "failed" and job.active_hash is None and job.finished_at is not None
    assert job.error == f"interrupted: no heartbeat from worker gpu1:4242:MainThread for 700 s; retry it with POST /jobs/{stale}/retry"
    assert job_row(engine, fresh).status == "running" and job_row(engine, legacy).status == "running"
    # The failed job can be retried; a second check finds nothing more to do.
    assert crud.retry_job_once(session=session, job=job_row(engine, stale))[0].attempt == 2
    assert crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=600), now=now) == []
    # Only running jobs are judged: a queued one has no worker to hear from.
    queued, _ = crud.submit_job(session=session, spec=JobSpec.parse({"train": {"seed": 4}}), force=True)
    set_heartbeat(engine, queued.id, now - timedelta(days=1))
    assert crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=600), now=now) == []
    assert job_row(engine, queued.id).status == "queued"


def test_the_sink_writes_the_heartbeat_on_flush_and_not_per_step(session, engine):
    job_id = running_job(session)
    old = utcnow() - timedelta(seconds=3600)
    set_heartbeat(engine, job_id, old)
    opened = []

    def sessions():
        opened.append(1)
        return Session(engine)

    clock = FakeClock()
    sink = MetricsSink(job_id=job_id, session_factory=sessions, flush_every=1000, flush_interval_s=2.0, cancel_poll_s=1e9, clock=clock)
    sink.should_stop()  # the first cancel poll (at start)
    sink.on_run_start("dynds", {"total_steps": 100, "epochs": 1})  # flushes the initial progress
    t0 = as_utc(job_row(engine, job_id).heartbeat_at)
    assert t0 > old + timedelta(seconds=3000)
    set_heartbeat(engine, job_id, old)
    opened.clear()
    for i in range(50):  # 50 steps within one flush interval: no database work at all
        clock.now += 0.01
        sink.on_step(step(i))
        sink.should_stop()
    assert opened == [] and as_utc(job_row(engine, job_id).heartbeat_at) == old
    clock.now += 2.0  # the interval passes: the next step flushes, with the heartbeat in it
    sink.on_step(step(50))
    assert len(opened) == 1 and sink.flushes == 2
    job = job_row(engine, job_id)
    assert as_utc(job.heartbeat_at) > old + timedelta(seconds=3000) and job.progress["step"] == 51
    # The fresh heartbeat keeps the job off the check's list.
    assert crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=600)) == []


def test_a_flush_reads_the_cancel_flag_so_a_training_job_makes_no_separate_poll(session, engine):
    job_id = running_job(session)
    opened = []

    def sessions():
        opened.append(1)
        return Session(engine)

    clock = FakeClock()
    sink = MetricsSink(job_id=job_id, session_factory=sessions, flush_every=1000, flush_interval_s=2.0, cancel_poll_s=2.0, clock=clock)
    assert not sink.should_stop()  # the poll at start
    opened.clear()
    for i in range(40):  # 20 s of training, a step every 0.5 s: a flush every 2 s and nothing else
        clock.now += 0.5
        sink.on_step(step(i))
        assert not sink.should_stop()
    assert len(opened) == sink.flushes == 10
    crud.request_cancel(session=session, job=crud.get_job(session=session, job_id=job_id))
    for i in range(40, 43):
        clock.now += 0.5
        sink.on_step(step(i))
        assert not sink.should_stop()  # not seen until the next flush
    clock.now += 0.5
    sink.on_step(step(43))  # flushes: its UPDATE returns the flag
    assert sink.cancel_requested and sink.should_stop()
    assert len(opened) == sink.flushes == 11  # and still no separate poll


def test_the_sink_stops_training_when_the_job_was_failed_meanwhile(session, engine):
    job_id = running_job(session)
    clock = FakeClock()
    sink = MetricsSink(job_id=job_id, session_factory=lambda: Session(engine), cancel_poll_s=0.5, clock=clock)
    assert not sink.should_stop()
    set_heartbeat(engine, job_id, utcnow() - timedelta(seconds=700))
    assert crud.fail_stale_jobs(session=session, older_than=timedelta(seconds=600)) == [job_id]
    assert not sink.should_stop()  # not polled again yet
    clock.now = 0.5
    assert sink.should_stop() and sink.no_longer_running == "failed" and not sink.cancel_requested


@pytest.mark.parametrize("broker", [None, "redis://127.0.0.1:1/0"], ids=["embedded", "celery"])
def test_the_app_checks_heartbeats_periodically(settings, engine, dispatcher, broker, session):
    stale = running_job(session, seed=1)
    fresh = running_job(session, seed=2)
    now = utcnow()
    set_heartbeat(engine, stale, now - timedelta(seconds=700))
    set_heartbeat(engine, fresh, now)
    update = {"broker_url": broker, "stale_check_interval_s": 0.05, "recover_policy": "fail"}
    app = create_app(settings.model_copy(update=update), dispatcher=dispatcher)

    def status(c, job_id):
        return c.get(f"/api/v1/jobs/{job_id}").json()

    def wait_failed(c, job_id):
        deadline = time.monotonic() + 10
        while status(c, job_id)["status"] != "failed":
            assert time.monotonic() < deadline, f"job {job_id} was not failed by the heartbeat check"
            time.sleep(0.05)
        return status(c, job_id)

    with TestClient(app) as c:
        # Both modes: starting up is no reason to touch a running job; only its heartbeat's age is.
        assert app.state.recovered == []
        body = wait_failed(c, stale)
        assert body["error"].startswith("interrupted: no heartbeat from worker gpu1:4242:MainThread for 7")
        assert body["heartbeat_at"].endswith("Z")
        time.sleep(0.2)  # a few more rounds: the fresh job stays running
        assert status(c, fresh)["status"] == "running"
        # A job that goes silent while the app runs is caught by a later round.
        set_heartbeat(engine, fresh, utcnow() - timedelta(seconds=601))
        assert "no heartbeat" in wait_failed(c, fresh)["error"]
        listed = {j["id"]: j for j in c.get("/api/v1/jobs").json()["data"]}
        assert listed[fresh]["heartbeat_at"] == status(c, fresh)["heartbeat_at"]


def test_with_requeue_a_stale_job_is_requeued_and_sent_again_until_its_attempts_run_out(settings, engine, dispatcher, session):
    job_id = running_job(session, seed=1)
    set_heartbeat(engine, job_id, utcnow() - timedelta(seconds=700))
    app_settings = settings.model_copy(
        update={
            "broker_url": "redis://127.0.0.1:1/0",
            "recover_policy": "requeue",
            "max_attempts": 2,
            "stale_check_interval_s": 0.05,
        }
    )
    with TestClient(create_app(app_settings, dispatcher=dispatcher)):
        deadline = time.monotonic() + 10
        while job_id not in dispatcher.job_ids:
            assert time.monotonic() < deadline, "the requeued job was not sent again"
            time.sleep(0.02)
        job = job_row(engine, job_id)
        assert job.status == "queued" and job.attempts == 1 and job.worker is None
        # Its second start goes silent too: max_attempts=2 reached, failed with the reason.
        assert crud.claim_job(session=session, job_id=job_id, worker="gpu2:1:MainThread").attempts == 2
        set_heartbeat(engine, job_id, utcnow() - timedelta(seconds=700))
        while job_row(engine, job_id).status != "failed":
            assert time.monotonic() < deadline + 10, "not failed after its last attempt"
            time.sleep(0.02)
        job = job_row(engine, job_id)
        assert job.error.startswith("interrupted: no heartbeat from worker gpu2:1:MainThread") and "started 2 times" in job.error


def test_a_stale_job_keeps_its_checkpoints_while_requeued_and_loses_them_when_failed(settings, engine, session):
    from app.artifacts import checkpoint_dir
    from app.main import check_heartbeats

    requeued, failed = running_job(session, seed=1), running_job(session, seed=2)
    used = {failed: 2, requeued: 0}  # attempts before this claim: the failed one has used up max_attempts=2
    for job_id, before in used.items():
        with Session(engine) as s:
            s.execute(update(Job).where(col(Job.id) == job_id).values(attempts=before + 1, heartbeat_at=utcnow() - timedelta(seconds=700)))
            s.commit()
        checkpoint_dir(settings, job_id).mkdir(parents=True)
        (checkpoint_dir(settings, job_id) / "ckpt-000000.dynds").write_bytes(b"x")
    outcome = check_heartbeats(engine, settings.model_copy(update={"max_attempts": 2}))  # the default policy: resume
    assert sorted(outcome) == sorted([requeued, failed])
    assert job_row(engine, requeued).status == "queued" and job_row(engine, failed).status == "failed"
    assert (checkpoint_dir(settings, requeued) / "ckpt-000000.dynds").exists(), "the next attempt resumes from it"
    assert not checkpoint_dir(settings, failed).exists(), "the job ended: its checkpoints are deleted"
