"""The data functions the worker uses: claiming, metrics, finishing, failing, recovery."""

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from app import crud
from app.models import Job, MetricPoint
from dynds_core.result import EpochMetrics, StepMetrics
from dynds_core.spec import JobSpec


def new_job(session, **spec) -> Job:
    job, created = crud.create_job(session=session, spec=JobSpec.parse(spec))
    assert created
    return job


def test_only_one_of_many_concurrent_claims_wins(session, engine):
    job = new_job(session)
    winners, barrier = [], threading.Barrier(8)

    def claim(i):
        with Session(engine) as s:
            barrier.wait()
            if crud.claim_job(session=s, job_id=job.id, worker=f"w{i}") is not None:
                winners.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    session.refresh(job)
    assert job.status == "running" and job.worker == f"w{winners[0]}" and job.started_at is not None
    assert crud.next_queued_job_id(session=session) is None


def test_queue_order_is_oldest_first(session):
    a, b = new_job(session, train={"seed": 1}), new_job(session, train={"seed": 2})
    assert crud.next_queued_job_id(session=session) == a.id
    crud.claim_job(session=session, job_id=a.id, worker="w")
    assert crud.next_queued_job_id(session=session) == b.id


def test_metric_points_from_callbacks_and_non_finite_values(session):
    job = new_job(session)
    step = StepMetrics(run="dynds", step=3, epoch=0, batch_type="reduced", loss=float("nan"), acc=10.0, lr=0.1,
                       step_time_s=0.01, train_time_s=0.5, total_steps=10)
    epoch = EpochMetrics(run="baseline", epoch=0, epochs=2, train_loss=2.0, train_acc=20.0, val_loss=float("inf"), val_acc=25.0,
                         train_time_s=1.0, time_full_s=1.0, time_reduced_s=0.0, steps_full=5, steps_reduced=0)
    crud.append_metrics(session=session, job_id=job.id, points=[crud.metric_point(step), crud.metric_point(epoch)])
    s, e = crud.metrics_after(session=session, job_id=job.id)
    assert (s.kind, s.step, s.run, s.values["loss"], s.values["batch_type"]) == ("step", 3, "dynds", None, "reduced")
    assert (e.kind, e.epoch, e.run, e.values["val_loss"], e.values["val_acc"]) == ("epoch", 0, "baseline", None, 25.0)
    assert crud.metrics_after(session=session, job_id=job.id, after=s.id) == [e]


def test_finish_fills_the_summary_columns(session, result_for):
    job = new_job(session)
    crud.claim_job(session=session, job_id=job.id, worker="w")
    crud.update_progress(session=session, job_id=job.id, progress={"run": "dynds", "fraction": 0.5})
    crud.set_reproducibility(session=session, job_id=job.id, record={"host": "h", "seed": 0})
    assert crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec(), time_saving=0.4, acc_delta=-0.3, equal_time_gap=0.7))
    session.refresh(job)
    assert job.status == "succeeded" and job.finished_at is not None and job.active_hash == job.spec_hash
    assert (job.time_saving, job.acc_delta, job.equal_time_gap, job.baseline_acc) == (0.4, -0.3, 0.7, 70.0)
    assert job.result["time_saving"] == 0.4 and job.progress["fraction"] == 0.5 and job.reproducibility["host"] == "h"
    # Not running any more: a second finish or a late failure changes nothing.
    assert not crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec()))
    assert not crud.fail_job(session=session, job_id=job.id, error="late")


def test_a_cancelled_result_frees_the_spec(session, result_for):
    job = new_job(session)
    crud.claim_job(session=session, job_id=job.id, worker="w")
    crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec(), cancelled=True))
    session.refresh(job)
    assert job.status == "cancelled" and job.active_hash is None and job.time_saving is None
    again, created = crud.create_job(session=session, spec=JobSpec())
    assert created and again.id != job.id


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_recover_interrupted(session, policy):
    stale, fresh = new_job(session, train={"seed": 1}), new_job(session, train={"seed": 2})
    for job in (stale, fresh):
        crud.claim_job(session=session, job_id=job.id, worker="dead")
    crud.append_metrics(session=session, job_id=stale.id, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    session.execute(Job.__table__.update().where(Job.id == stale.id).values(started_at=crud.utcnow() - timedelta(hours=2)))
    session.commit()
    assert crud.recover_interrupted(session=session, older_than=timedelta(hours=1), policy=policy) == [stale.id]
    session.refresh(stale)
    if policy == "fail":
        assert stale.status == "failed" and stale.error.startswith("interrupted") and f"/jobs/{stale.id}/retry" in stale.error
    else:
        assert stale.status == "queued" and stale.started_at is None and stale.attempts == 1
        assert session.exec(select(MetricPoint).where(MetricPoint.job_id == stale.id)).all() == []
        # Started three times (the limit), each run's first metrics flush overwriting the progress: the
        # count lives in job.attempts, so the third interruption fails the job with the reason.
        for n in (2, 3):
            assert crud.claim_job(session=session, job_id=stale.id, worker="dead").attempts == n
            assert crud.flush_metrics(session=session, job_id=stale.id, points=[], progress={"step": 1}, attempt=n)
            crud.recover_interrupted(session=session, policy="requeue", max_attempts=3)
            session.refresh(stale)
            assert stale.status == ("queued" if n < 3 else "failed"), n
        assert stale.attempts == 3 and "started 3 times" in stale.error and "DYNDS_MAX_ATTEMPTS=3" in stale.error
        assert stale.active_hash is None
    session.refresh(fresh)
    # Untouched by the time-bounded call; the unbounded one (requeue case) requeued it.
    assert fresh.status == ("running" if policy == "fail" else "queued")
    with pytest.raises(ValueError, match="policy"):
        crud.recover_interrupted(session=session, policy="ignore")


def test_retry_refuses_active_jobs(session):
    job = new_job(session)
    with pytest.raises(crud.JobStateError, match="queued"):
        crud.retry_job(session=session, job=job)


def _run(session, job, result_for):
    assert crud.claim_job(session=session, job_id=job.id, worker="w") is not None
    spec = JobSpec.parse(job.spec)
    assert crud.finish_job(session=session, job_id=job.id, result=result_for(spec, timing_noisy=True, verdict="needs_seeds"))
    session.refresh(job)
    return job


def test_a_succeeded_adaptive_job_does_not_answer_a_resubmission(session, result_for):
    adaptive = JobSpec.parse({"dynds": {"schedule": {"kind": "adaptive", "window": 10}}})
    first, created = crud.create_job(session=session, spec=adaptive)
    assert created
    # While it is queued (or running), an identical submission is answered with it.
    again, created = crud.create_job(session=session, spec=adaptive)
    assert not created and again.id == first.id
    first = _run(session, first, result_for)
    assert first.status == "succeeded" and first.active_hash is None
    assert first.timing_noisy is True and first.verdict == "needs_seeds"
    # Succeeded: it is a measurement, not a function of the spec: a new submission runs again.
    second, created = crud.create_job(session=session, spec=adaptive)
    assert created and second.id != first.id and second.active_hash == adaptive.spec_hash
    third, created = crud.create_job(session=session, spec=adaptive)
    assert not created and third.id == second.id


def test_a_succeeded_fixed_schedule_job_still_answers_a_resubmission(session, result_for):
    spec = JobSpec.parse({"dynds": {"schedule": {"kind": "stochastic", "p": 0.4}}})
    first, _ = crud.create_job(session=session, spec=spec)
    first = _run(session, first, result_for)
    assert first.active_hash == spec.spec_hash
    again, created = crud.create_job(session=session, spec=spec)
    assert not created and again.id == first.id


def test_job_rows_carry_recipe_and_frontier_keys(session):
    from app.leaderboard import frontier_key, recipe_hash

    job = new_job(session, train={"epochs": 5, "seed": 3})
    assert job.recipe_hash == recipe_hash(job.spec) and job.frontier_key == frontier_key(job.spec)
    retried = crud.retry_job(session=session, job=crud.request_cancel(session=session, job=job))
    assert retried.recipe_hash == job.recipe_hash and retried.frontier_key == job.frontier_key


def _set(session, job_id, **values):
    session.execute(Job.__table__.update().where(Job.id == job_id).values(**values))
    session.commit()


def test_queued_jobs_are_resent_with_a_doubling_back_off(session):
    job = new_job(session)
    now = crud.utcnow()
    _set(session, job.id, created_at=now - timedelta(seconds=100))
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


def test_retries_of_one_job_make_one_new_job_even_concurrently(session, engine):
    job = new_job(session)
    crud.fail_job(session=session, job_id=job.id, error="boom")
    results, barrier = [], threading.Barrier(10)

    def retry():
        with Session(engine) as s:
            old = s.get(Job, job.id)
            barrier.wait()
            new, created = crud.retry_job_once(session=s, job=old)
            results.append((new.id, created))

    threads = [threading.Thread(target=retry) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c for _, c in results) == [False] * 9 + [True]
    assert len({i for i, _ in results}) == 1
    assert len(session.exec(select(Job).where(Job.retry_of == job.id)).all()) == 1
    (new_id,) = {i for i, _ in results}
    new = session.get(Job, new_id)
    assert new.attempt == 2 and new.status == "queued" and new.active_hash == job.spec_hash and new.attempts == 0


def test_a_requeued_run_can_no_longer_write_to_its_job(session):
    job = new_job(session)
    first = crud.claim_job(session=session, job_id=job.id, worker="w1").attempts
    point = {"run": "dynds", "kind": "step", "step": 0, "values": {}}
    assert crud.flush_metrics(session=session, job_id=job.id, points=[point], attempt=first)
    _set(session, job.id, heartbeat_at=crud.utcnow() - timedelta(hours=1))
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


def test_a_shutdown_requeue_gives_the_attempt_back(session):
    job = new_job(session)
    attempt = crud.claim_job(session=session, job_id=job.id, worker="w").attempts
    crud.append_metrics(session=session, job_id=job.id, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    assert crud.requeue_job(session=session, job_id=job.id, attempt=attempt)
    session.refresh(job)
    assert job.status == "queued" and job.attempts == 0 and job.progress is None and job.worker is None
    assert session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all() == []
    assert not crud.requeue_job(session=session, job_id=job.id, attempt=attempt)  # not running: nothing changes
