"""app/crud/runs.py: what a running job's worker writes (metric points with non-finite values, the heartbeat)."""

from app import crud
from dynds_core.result import EpochMetrics, StepMetrics
from worker.sink import metric_point


def test_metric_points_from_callbacks_and_non_finite_values(session, new_job):
    job = new_job()
    step = StepMetrics(
        run="dynds", step=3, epoch=0, batch_type="reduced", loss=float("nan"), acc=10.0, lr=0.1, step_time_s=0.01, train_time_s=0.5, total_steps=10
    )
    epoch = EpochMetrics(
        run="baseline",
        epoch=0,
        epochs=2,
        train_loss=2.0,
        train_acc=20.0,
        val_loss=float("inf"),
        val_acc=25.0,
        train_time_s=1.0,
        time_full_s=1.0,
        time_reduced_s=0.0,
        steps_full=5,
        steps_reduced=0,
    )
    crud.append_metrics(session=session, job_id=job.id, points=[metric_point(step), metric_point(epoch)])
    s, e = crud.metrics_after(session=session, job_id=job.id)
    assert (s.kind, s.step, s.run, s.values["loss"], s.values["batch_type"]) == ("step", 3, "dynds", None, "reduced")
    assert (e.kind, e.epoch, e.run, e.values["val_loss"], e.values["val_acc"]) == ("epoch", 0, "baseline", None, 25.0)
    assert crud.metrics_after(session=session, job_id=job.id, after=s.id) == [e]


def test_a_heartbeat_writes_the_progress_and_the_worker_polls_the_cancel_flag(session, new_job):
    job = new_job()
    assert crud.job_control(session=session, job_id=job.id) == (False, "queued")
    crud.claim_job(session=session, job_id=job.id, worker="w")
    crud.record_heartbeat(session=session, job_id=job.id, progress={"fraction": float("nan")})
    crud.request_cancel(session=session, job=job)
    session.refresh(job)
    assert job.progress == {"fraction": None} and job.heartbeat_at is not None
    assert crud.job_control(session=session, job_id=job.id) == (True, "running")
    assert crud.job_control(session=session, job_id=424242) == (False, None)
