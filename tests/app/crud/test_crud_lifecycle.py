"""app/crud/lifecycle.py: claiming, finishing, failing, cancelling, retrying, requeueing."""

import threading

import pytest
from sqlmodel import Session, select

from app import crud
from app.models import Job, MetricPoint
from dynds_core.spec import JobSpec


def test_only_one_of_many_concurrent_claims_wins(session, engine, new_job):
    job = new_job()
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


def test_queue_order_is_oldest_first(session, new_job):
    a, b = new_job(train={"seed": 1}), new_job(train={"seed": 2})
    assert crud.next_queued_job_id(session=session) == a.id
    crud.claim_job(session=session, job_id=a.id, worker="w")
    assert crud.next_queued_job_id(session=session) == b.id


def test_finish_fills_the_summary_columns(session, result_for, new_job):
    job = new_job()
    crud.claim_job(session=session, job_id=job.id, worker="w")
    crud.record_heartbeat(session=session, job_id=job.id, progress={"run": "dynds", "fraction": 0.5})
    crud.set_reproducibility(session=session, job_id=job.id, record={"host": "h", "seed": 0})
    assert crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec(), time_saving=0.4, acc_delta=-0.3, equal_time_gap=0.7))
    session.refresh(job)
    assert job.status == "succeeded" and job.finished_at is not None and job.active_hash == job.spec_hash
    assert (job.time_saving, job.acc_delta, job.equal_time_gap, job.baseline_acc) == (0.4, -0.3, 0.7, 70.0)
    assert job.result["time_saving"] == 0.4 and job.progress["fraction"] == 0.5 and job.reproducibility["host"] == "h"
    # Not running any more: a second finish or a late failure changes nothing.
    assert not crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec()))
    assert not crud.fail_job(session=session, job_id=job.id, error="late")


def test_a_cancelled_result_frees_the_spec(session, result_for, new_job):
    job = new_job()
    crud.claim_job(session=session, job_id=job.id, worker="w")
    crud.finish_job(session=session, job_id=job.id, result=result_for(JobSpec(), cancelled=True))
    session.refresh(job)
    assert job.status == "cancelled" and job.active_hash is None and job.time_saving is None
    again, outcome = crud.submit_job(session=session, spec=JobSpec())
    assert outcome == "created" and again.id != job.id


def test_retry_refuses_active_jobs(session, new_job):
    job = new_job()
    with pytest.raises(crud.JobStateError, match="job .* is queued: only failed or cancelled jobs can be retried"):
        crud.retry_job_once(session=session, job=job)


def test_retries_of_one_job_make_one_new_job_even_concurrently(session, engine, new_job):
    job = new_job()
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


def test_a_shutdown_requeue_counts_a_stop_not_a_fault(session, new_job):
    job = new_job()
    attempt = crud.claim_job(session=session, job_id=job.id, worker="w").attempts
    crud.append_metrics(session=session, job_id=job.id, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    assert crud.requeue_job(session=session, job_id=job.id, attempt=attempt)
    session.refresh(job)
    assert job.status == "queued" and (job.attempts, job.stops) == (1, 1) and job.progress is None and job.worker is None
    assert session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all() == []
    assert not crud.requeue_job(session=session, job_id=job.id, attempt=attempt)  # not running: nothing changes


def test_a_shutdown_requeue_keeps_the_points_for_a_resumption(session, new_job):
    job = new_job()
    attempt = crud.claim_job(session=session, job_id=job.id, worker="w").attempts
    crud.append_metrics(session=session, job_id=job.id, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    assert crud.requeue_job(session=session, job_id=job.id, attempt=attempt, keep_points=True)
    session.refresh(job)
    assert job.status == "queued" and (job.attempts, job.stops) == (1, 1) and job.progress is None
    assert len(session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all()) == 1


def test_a_resumed_run_replaces_the_points_written_after_its_checkpoint(session, new_job):
    job = new_job()
    first = crud.claim_job(session=session, job_id=job.id, worker="w1").attempts

    def step(run, n):
        return {"run": run, "kind": "step", "step": n, "epoch": n // 4, "values": {}}

    def epoch(run, e):
        return {"run": run, "kind": "epoch", "step": 4 * e + 3, "epoch": e, "values": {}}

    # The lost attempt: the baseline finished (8 steps), the DynDS run reached step 9 (evaluated epochs 0 and 1);
    # an equal-time run had begun. The checkpoint holds the baseline as done and DynDS after 8 steps, at the end
    # of epoch 1 but before its evaluation (which the resumed run makes again).
    points = [step("baseline", n) for n in range(8)] + [epoch("baseline", 0), epoch("baseline", 1)]
    points += [step("dynds", n) for n in range(10)] + [epoch("dynds", 0), epoch("dynds", 1), step("equal_time", 0)]
    assert crud.flush_metrics(session=session, job_id=job.id, points=points, attempt=first)
    crud.requeue_job(session=session, job_id=job.id, attempt=first, keep_points=True)
    second = crud.claim_job(session=session, job_id=job.id, worker="w2").attempts
    assert not crud.resume_run(session=session, job_id=job.id, attempt=second + 1, kept={})  # not this run's: nothing deleted
    assert len(session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all()) == len(points)

    assert crud.resume_run(session=session, job_id=job.id, attempt=second, kept={"baseline": None, "dynds": (8, 1)})
    left = session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id).order_by(MetricPoint.id)).all()
    assert [(p.run, p.kind, p.step) for p in left if p.run == "baseline"] == [(p["run"], p["kind"], p["step"]) for p in points[:10]]
    assert sorted((p.kind, p.step) for p in left if p.run == "dynds") == [("epoch", 3)] + [("step", n) for n in range(8)]
    assert not [p for p in left if p.run == "equal_time"]
    # No checkpoint (from scratch): every point goes.
    assert crud.resume_run(session=session, job_id=job.id, attempt=second, kept={})
    assert session.exec(select(MetricPoint).where(MetricPoint.job_id == job.id)).all() == []
