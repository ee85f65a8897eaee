"""The operations on one job's state: claim, finish, fail, cancel, retry, requeue.

Each is one conditional UPDATE built by ``transitions.move`` (``... WHERE status IN (<the operation's
sources>)``), so two processes racing for the same job cannot both win; the caller learns the outcome
from the row count. The guarded writes of a run (``finish_job``, ``fail_job``, ``requeue_job``, and
``runs.flush_metrics``) also take the run's ``attempt`` (``claim_job``'s ``attempts``), so a run that was
given up on (requeued, then claimed again elsewhere) can no longer write to the job.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.crud.runs import finite
from app.crud.submission import NOT_REPEATABLE_KINDS
from app.crud.transitions import in_sources, move, refusal
from app.models import Job, MetricPoint, utcnow
from dynds_core.result import JobResult


def this_run(job_id: int, attempt: int | None) -> list:
    """WHERE clauses: the job, and (``attempt`` given) still the run that claimed it as that attempt."""
    conds = [col(Job.id) == job_id]
    if attempt is not None:
        conds.append(col(Job.attempts) == attempt)
    return conds


def next_queued_job_id(*, session: Session) -> int | None:
    """The oldest job that can be claimed (the embedded executor's queue)."""
    stmt = select(Job.id).where(in_sources("claim")).order_by(col(Job.created_at), col(Job.id)).limit(1)
    return session.exec(stmt).first()


def claim_job(*, session: Session, job_id: int, worker: str) -> Job | None:
    """queued -> running, atomically, with its first heartbeat and one more ``attempts``; None when the job
    is not queued (claimed elsewhere, cancelled, unknown). The returned job's ``attempts`` identifies this run."""
    now = utcnow()
    res = session.execute(move("claim", col(Job.id) == job_id, started_at=now, worker=worker, heartbeat_at=now, attempts=Job.attempts + 1))
    session.commit()
    if res.rowcount != 1:
        return None
    job = session.get(Job, job_id)
    session.refresh(job)
    return job


def finish_job(*, session: Session, job_id: int, result: JobResult, attempt: int | None = None) -> bool:
    """running -> succeeded (with the summary columns filled), or cancelled when ``result.cancelled``.

    Returns False when the job was no longer running (e.g. recovered as interrupted meanwhile).
    """
    data = finite(result.model_dump(mode="json"))
    values: dict[str, Any] = {"result": data, "finished_at": utcnow()}
    if result.cancelled:
        op = "finish_cancelled"
        values["active_hash"] = None
    else:
        op = "finish"
        values.update(finite(result.summary()))
        if result.hardware is not None:  # what training measured: confirms (or corrects) the claim's record
            values["hardware"] = result.hardware.model_dump(mode="json")
        else:  # a result without it (a library older than 0007's) leaves what the claim recorded
            values.pop("hardware_key", None)
        # A succeeded adaptive job gives up its dedup hold: the next identical submission runs again.
        values["active_hash"] = case((col(Job.schedule_kind).in_(NOT_REPEATABLE_KINDS), None), else_=Job.active_hash)
    res = session.execute(move(op, *this_run(job_id, attempt), **values))
    session.commit()
    return res.rowcount == 1


def fail_job(*, session: Session, job_id: int, error: str, attempt: int | None = None) -> bool:
    """queued/running -> failed with ``error``; frees the spec for a new submission.
    ``attempt``: only the running job's run of that attempt (a worker failing its own job)."""
    op = "fail" if attempt is None else "fail_run"
    res = session.execute(move(op, *this_run(job_id, attempt), error=error, active_hash=None, finished_at=utcnow()))
    session.commit()
    return res.rowcount == 1


def request_cancel(*, session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is flagged (the worker stops within one step)."""
    res = session.execute(move("cancel_queued", col(Job.id) == job.id, active_hash=None, finished_at=utcnow()))
    if res.rowcount != 1:
        res = session.execute(move("flag_cancel", col(Job.id) == job.id, cancel_requested=True))
    session.commit()
    session.refresh(job)
    if res.rowcount != 1:
        raise refusal(job.id, job.status, "cancel_queued", "flag_cancel")
    return job


RETRY_COLUMNS = (
    "name",
    "spec",
    "spec_hash",
    "arch",
    "dataset",
    "schedule_kind",
    "track",
    "recipe_hash",
    "frontier_key",
    "setting",
    "setting_key",
    "seed",
    "sweep_id",
)


def retry_job_once(*, session: Session, job: Job) -> tuple[Job, bool]:
    """The retry of a failed or cancelled job: (the new job, True), or (the retry made before, False).

    A job is retried once: concurrent retries of one job make exactly one new job, and every other (and
    every later) retry answers that one; to go again, retry the retry. The transaction starts with a no-op
    UPDATE of the old job, which takes its row lock (PostgreSQL) or the write lock (SQLite): concurrent
    retries of one job run one after the other, and each sees the retry its predecessor committed.
    """
    for _ in range(5):
        locked = session.execute(move("retry", col(Job.id) == job.id, attempt=Job.attempt))
        if locked.rowcount != 1:
            session.rollback()
            session.refresh(job)
            raise refusal(job.id, job.status, "retry")
        earlier = session.exec(select(Job).where(Job.retry_of == job.id).order_by(col(Job.id)).limit(1)).first()
        if earlier is not None:
            session.commit()
            return earlier, False
        columns = {k: getattr(job, k) for k in RETRY_COLUMNS}
        # Hold the dedup index when no live job does (later identical submissions then answer this one).
        held = session.exec(select(Job.id).where(Job.active_hash == job.spec_hash)).first()
        new = Job(**columns, attempt=job.attempt + 1, retry_of=job.id, active_hash=None if held is not None else job.spec_hash)
        session.add(new)
        try:
            session.commit()
            return new, True
        except IntegrityError:  # a submission took the dedup hold meanwhile (PostgreSQL): try again
            session.rollback()
    raise RuntimeError(f"could not retry job {job.id} after 5 tries")


# What a run back in the queue no longer has: it starts again from step 0 and writes its own.
RUN_RESET = dict(started_at=None, worker=None, progress=None, result=None, reproducibility=None)


def requeue_job(*, session: Session, job_id: int, attempt: int | None = None, keep_points: bool = False) -> bool:
    """A run stopped by its own process's shutdown (SIGTERM, not a fault): back to `queued` at once,
    counted in ``stops`` (a deploy restarting workers must not use up a job's requeue limit, which is on
    ``attempts - stops``; ``attempts`` still counts the run). Its points and progress are deleted in the same transaction: the rerun writes its own
    from step 0; ``keep_points`` (the rerun resumes from a checkpoint): the points stay, and the resuming
    run deletes those its checkpoint does not cover (``resume_run``). False when the job is no longer this run's."""
    res = session.execute(
        move(
            "requeue",
            *this_run(job_id, attempt),
            **RUN_RESET,
            heartbeat_at=utcnow(),
            stops=Job.stops + 1,
        )
    )
    if res.rowcount != 1:
        session.rollback()
        return False
    if not keep_points:
        session.execute(delete(MetricPoint).where(col(MetricPoint.job_id) == job_id))
    session.commit()
    return True


def resume_run(*, session: Session, job_id: int, attempt: int, kept: dict[str, tuple[int, int] | None]) -> bool:
    """The run claimed as ``attempt`` starts where a checkpoint left the job: the metric points an earlier
    attempt wrote beyond it are deleted, so that each step is stored once (the resumed run writes them again).

    ``kept``: what the checkpoint holds of each run: None for a run it holds as finished (all its points stay),
    (step, epoch) for a run in flight (its step points before ``step`` stay, and its epoch points before
    ``epoch``, the epoch in progress, whose evaluation runs again); a run it does not name loses all its
    points (``{}``: no checkpoint, the run starts from step 0). One transaction, after an UPDATE that requires
    the job still this run's (False, nothing deleted, when it is not).
    """
    res = session.execute(move("flush", *this_run(job_id, attempt), in_sources("fail_run"), heartbeat_at=utcnow()))
    if res.rowcount != 1:
        session.rollback()
        return False
    mine = col(MetricPoint.job_id) == job_id
    session.execute(delete(MetricPoint).where(mine, col(MetricPoint.run).not_in(list(kept))))
    for run, where in kept.items():
        if where is None:
            continue
        step, epoch = where
        this = (mine, col(MetricPoint.run) == run)
        session.execute(delete(MetricPoint).where(*this, col(MetricPoint.kind) == "step", col(MetricPoint.step) >= step))
        session.execute(delete(MetricPoint).where(*this, col(MetricPoint.kind) == "epoch", col(MetricPoint.epoch) >= epoch))
    session.commit()
    return True
