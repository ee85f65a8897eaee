"""app/crud/recovery.py: lost runs given up on (failed or requeued), queued jobs sent again."""

from datetime import timedelta

import pytest
from sqlmodel import select

from app import crud
from app.models import Job, MetricPoint, utcnow


@pytest.mark.parametrize("policy", ["fail", "requeue", "resume"])
def test_recover_interrupted(session, policy, new_job, set_columns):
    stale, fresh = new_job(train={"seed": 1}), new_job(train={"seed": 2})
    for job in (stale, fresh):
        crud.claim_job(session=session, job_id=job.id, worker="dead")
    crud.append_metrics(session=session, job_id=stale.id, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    set_columns(stale.id, started_at=utcnow() - timedelta(hours=2))
    assert crud.recover_interrupted(session=session, older_than=timedelta(hours=1), policy=policy) == [stale.id]
    session.refresh(stale)
    if policy == "fail":
        assert stale.status == "failed" and stale.error.startswith("interrupted") and f"/jobs/{stale.id}/retry" in stale.error
    else:
        assert stale.status == "queued" and stale.started_at is None and stale.attempts == 1
        # "requeue" starts again from step 0; "resume" keeps the points (its next run deletes those past its checkpoint).
        kept = session.exec(select(MetricPoint).where(MetricPoint.job_id == stale.id)).all()
        assert len(kept) == (1 if policy == "resume" else 0)
        # Started three times (the limit), each run's first metrics flush overwriting the progress: the
        # count lives in job.attempts, so the third interruption fails the job with the reason.
        for n in (2, 3):
            assert crud.claim_job(session=session, job_id=stale.id, worker="dead").attempts == n
            assert crud.flush_metrics(session=session, job_id=stale.id, points=[], progress={"step": 1}, attempt=n)
            crud.recover_interrupted(session=session, policy=policy, max_attempts=3)
            session.refresh(stale)
            assert stale.status == ("queued" if n < 3 else "failed"), n
        assert stale.attempts == 3 and "started 3 times" in stale.error and "DYNDS_MAX_ATTEMPTS=3" in stale.error
        assert stale.active_hash is None
    session.refresh(fresh)
    # Untouched by the time-bounded call; the unbounded one (requeue case) requeued it.
    assert fresh.status == ("running" if policy == "fail" else "queued")
    with pytest.raises(ValueError, match="policy"):
        crud.recover_interrupted(session=session, policy="ignore")


def test_runs_a_shutdown_stopped_do_not_count_against_the_attempts_limit(session, new_job):
    """A deploy (SIGTERM) stops a run: counted in ``stops``, so a job interrupted by two deploys and two crashes
    is still requeued under DYNDS_MAX_ATTEMPTS=3; the third crash fails it, the message counting both kinds."""
    job = new_job()
    for n in (1, 2):  # two deploys
        assert crud.claim_job(session=session, job_id=job.id, worker="w").attempts == n
        assert crud.requeue_job(session=session, job_id=job.id, attempt=n, keep_points=True)
    for n in (3, 4, 5):  # then three crashes
        assert crud.claim_job(session=session, job_id=job.id, worker="dead").attempts == n
        crud.recover_interrupted(session=session, policy="resume", max_attempts=3)
        session.refresh(job)
        assert job.status == ("queued" if n < 5 else "failed"), (n, job.status)
    assert (job.attempts, job.stops) == (5, 2)
    assert "started 5 times, 2 of them stopped by a shutdown" in job.error and "DYNDS_MAX_ATTEMPTS=3" in job.error


def test_queued_jobs_are_resent_with_a_doubling_back_off(session, new_job, set_columns):
    job = new_job()
    now = utcnow()
    set_columns(job.id, created_at=now - timedelta(seconds=100))
    after = timedelta(seconds=60)
    assert crud.jobs_to_redispatch(session=session, older_than=after, now=now) == [job.id]  # never re-sent: created_at counts
    crud.mark_dispatched(session=session, job_ids=[job.id], now=now)
    assert crud.jobs_to_redispatch(session=session, older_than=after, now=now + timedelta(seconds=59)) == []
    # Queued 100 s when last sent: the next send waits 100 s (not 60), then 200 s, ...
    assert crud.jobs_to_redispatch(session=session, older_than=after, now=now + timedelta(seconds=99)) == []
    assert crud.jobs_to_redispatch(session=session, older_than=after, now=now + timedelta(seconds=100)) == [job.id]
    # A claimed job is never re-sent.
    crud.claim_job(session=session, job_id=job.id, worker="w")
    assert crud.jobs_to_redispatch(session=session, older_than=after, now=now + timedelta(days=1)) == []


def test_jobs_just_sent_do_not_hide_the_due_ones_behind_them(session, new_job, set_columns):
    """The back-off is judged page by page: with more queued jobs than one round sends, the oldest (just sent,
    not due) must not stop the re-dispatch of the later ones (a backlog a restarted broker lost)."""
    now = utcnow()
    jobs = [new_job(train={"seed": i}) for i in range(5)]
    for i, job in enumerate(jobs):
        set_columns(job.id, created_at=now - timedelta(hours=2, seconds=-i))
    crud.mark_dispatched(session=session, job_ids=[j.id for j in jobs[:3]], now=now)  # the 3 oldest: sent just now
    assert crud.jobs_to_redispatch(session=session, older_than=timedelta(0), now=now, limit=2) == [jobs[3].id, jobs[4].id]
    assert crud.jobs_to_redispatch(session=session, older_than=timedelta(0), now=now, limit=1) == [jobs[3].id]


def test_a_requeued_run_can_no_longer_write_to_its_job(session, new_job, set_columns):
    job = new_job()
    first = crud.claim_job(session=session, job_id=job.id, worker="w1").attempts
    point = {"run": "dynds", "kind": "step", "step": 0, "values": {}}
    assert crud.flush_metrics(session=session, job_id=job.id, points=[point], attempt=first)
    set_columns(job.id, heartbeat_at=utcnow() - timedelta(hours=1))
    assert crud.recover_stale_jobs(session=session, older_than=timedelta(minutes=10), policy="requeue") == {job.id: "queued"}
    assert session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all() == []
    # The stalled first run wakes up: its flush, result and failure are refused, queued or rerun.
    assert not crud.flush_metrics(session=session, job_id=job.id, points=[point], attempt=first)
    second = crud.claim_job(session=session, job_id=job.id, worker="w2").attempts
    assert second == first + 1
    assert not crud.flush_metrics(session=session, job_id=job.id, points=[point], attempt=first)
    assert not crud.fail_job(session=session, job_id=job.id, error="late", attempt=first)
    assert crud.flush_metrics(session=session, job_id=job.id, points=[point], attempt=second)
    assert len(session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all()) == 1
    session.refresh(job)
    assert job.status == "running" and job.worker == "w2"
    assert session.get(Job, job.id).attempts == second
