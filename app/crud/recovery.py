"""Recovery: running jobs whose run was lost (its process died, its heartbeat stopped), and queued jobs
whose broker message may be lost (sent again)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_
from sqlmodel import Session, col, select

from app.crud.lifecycle import RUN_RESET, this_run
from app.crud.transitions import GIVE_UP, in_sources, move, target
from app.models import Job, MetricPoint, as_utc, utcnow

INTERRUPTED_ERROR = "interrupted: the process running it stopped; retry it with POST /jobs/{id}/retry"
STALE_ERROR = "interrupted: no heartbeat from worker {worker} for {age} s; retry it with POST /jobs/{id}/retry"
INTERRUPTED_LIMIT = " (started {attempts} times{stopped}, the most DYNDS_MAX_ATTEMPTS={max_attempts} allows: not requeued again)"
# The name the embedded executor's runs carry (worker/runner.worker_name: host:pid:thread).
EXECUTOR_THREAD = "dynds-executor"
POLICIES = ("resume", "requeue", "fail")
REQUEUING = ("resume", "requeue")


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"policy must be 'resume', 'requeue' or 'fail', got {policy!r}")


def give_up_run(
    *, session: Session, job_id: int, error: str, policy: str = "fail", max_attempts: int = 3, where: tuple = (), now: datetime | None = None
) -> str | None:
    """A running job whose run is lost (its process died): requeued or failed; returns its new status,
    or None when it was not running (or ``where`` no longer held) and nothing changed.

    policy "requeue": back to `queued` while ``attempts < max_attempts``, its points, progress, result
    and reproducibility record of the lost run deleted (the rerun starts from step 0 and writes its own);
    policy "resume": the same, but the points stay (the next attempt continues from the job's checkpoint
    and deletes those it does not cover: ``resume_run``); beyond that, and under policy "fail", failed with
    ``error`` (the limit said in it). A job whose
    cancel was requested is cancelled instead. One transaction: the conditional UPDATE of the job (which
    re-checks ``where``, e.g. the heartbeat still stale) before the points are deleted.
    """
    _check_policy(policy)
    row = session.execute(select(Job.attempts, Job.stops, Job.cancel_requested).where(col(Job.id) == job_id, in_sources(*GIVE_UP))).first()
    if row is None:
        session.rollback()
        return None
    attempts, stops, cancel = row
    faults = attempts - stops  # runs a shutdown stopped (a deploy) do not count against the limit
    now = now or utcnow()
    if cancel:
        op, values = "give_up_cancelled", dict(active_hash=None, finished_at=now, error=error)
    elif policy in REQUEUING and faults < max_attempts:
        op, values = "give_up_requeue", dict(RUN_RESET, heartbeat_at=now)
    else:
        stopped = f", {stops} of them stopped by a shutdown, which do not count" if stops else ""
        limit = INTERRUPTED_LIMIT.format(attempts=attempts, stopped=stopped, max_attempts=max_attempts) if policy in REQUEUING else ""
        op, values = "give_up_fail", dict(error=error + limit, active_hash=None, finished_at=now)
    stmt = move(op, *this_run(job_id, attempts), *where, **values)
    if session.execute(stmt).rowcount != 1:
        session.rollback()
        return None
    if op == "give_up_requeue" and policy == "requeue":
        session.execute(delete(MetricPoint).where(col(MetricPoint.job_id) == job_id))
    session.commit()
    return target(op)


def recover_interrupted(
    *,
    session: Session,
    older_than: datetime | timedelta | None = None,
    policy: str = "fail",
    max_attempts: int = 3,
    executor_only: bool = False,
) -> list[int]:
    """Jobs left `running` by a process known to be gone: requeued or failed (``give_up_run``); returns their ids.

    Nothing here guesses: a caller names jobs whose process it knows is dead. ``executor_only``: the jobs
    of embedded executors (the `dynds serve` that holds the database's serve lock calls this at start-up:
    the lock proves no other embedded executor is alive on this database). ``older_than``: only jobs
    started before this time (or this long ago). Everything else is judged by its heartbeat's age alone
    (``recover_stale_jobs``).
    """
    _check_policy(policy)
    stmt = select(Job.id).where(in_sources(*GIVE_UP))
    if older_than is not None:
        cutoff = utcnow() - older_than if isinstance(older_than, timedelta) else older_than
        stmt = stmt.where(col(Job.started_at) < cutoff)
    if executor_only:
        stmt = stmt.where(col(Job.worker).like(f"%:{EXECUTOR_THREAD}"))
    ids = list(session.exec(stmt.order_by(col(Job.id))).all())
    session.rollback()
    done = []
    for job_id in ids:
        if give_up_run(session=session, job_id=job_id, error=INTERRUPTED_ERROR.format(id=job_id), policy=policy, max_attempts=max_attempts):
            done.append(job_id)
    return done


def recover_stale_jobs(
    *, session: Session, older_than: timedelta, policy: str = "fail", max_attempts: int = 3, now: datetime | None = None
) -> dict[int, str]:
    """Running jobs whose worker has written no heartbeat for ``older_than`` (it died): requeued or failed
    by ``policy`` (``give_up_run``); returns {job id: new status}.

    The worker's heartbeat comes with its claim and every metrics flush (seconds apart), so a long
    silence means the process is gone: this is what frees a Celery job whose worker was killed.
    Each job is changed by one UPDATE that re-checks the heartbeat, so a beat arriving meanwhile keeps
    the job running. Jobs without any heartbeat (claimed before the column existed) are left alone.
    """
    now = now or utcnow()
    cutoff = now - older_than
    stale = session.execute(
        select(Job.id, Job.worker, Job.heartbeat_at)
        .where(in_sources(*GIVE_UP), col(Job.heartbeat_at).is_not(None), col(Job.heartbeat_at) < cutoff)
        .order_by(col(Job.id))
    ).all()
    session.rollback()
    out: dict[int, str] = {}
    for job_id, worker, beat in stale:
        age = int((now - as_utc(beat)).total_seconds())
        error = STALE_ERROR.format(worker=worker or "unknown", age=age, id=job_id)
        status = give_up_run(
            session=session, job_id=job_id, error=error, policy=policy, max_attempts=max_attempts, where=(col(Job.heartbeat_at) < cutoff,), now=now
        )
        if status:
            out[job_id] = status
    return out


def fail_stale_jobs(*, session: Session, older_than: timedelta, now: datetime | None = None) -> list[int]:
    """``recover_stale_jobs`` with policy "fail": the ids of the jobs failed."""
    return list(recover_stale_jobs(session=session, older_than=older_than, now=now))


# ---------------------------------------------------------------- re-dispatch: queued jobs whose message may be lost


def jobs_to_redispatch(*, session: Session, older_than: timedelta, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Queued jobs to send to the broker again: queued (never claimed since) and last sent at least
    ``older_than`` ago, and at least as long ago as they had been queued when last sent (a doubling
    back-off: a job waiting hours behind a long backlog is re-sent a handful of times, not every round).

    A queued job's ``heartbeat_at`` is when it was last sent (``mark_dispatched``) or requeued; NULL: never
    re-sent, its ``created_at`` counts. A duplicate message is harmless: the claim lets one run win.
    """
    now = now or utcnow()
    sent = func.coalesce(Job.heartbeat_at, Job.created_at)
    candidates = select(Job.id, Job.created_at, Job.heartbeat_at).where(in_sources("mark_dispatched"), sent <= now - older_than)
    due: list[int] = []
    # Page by page (oldest first) until ``limit`` are due: the back-off is judged here, so the oldest jobs, just
    # sent and not due, must not hide those behind them (a backlog of more than ``limit`` after a broker lost it).
    after = None
    while len(due) < limit:
        page = candidates
        if after is not None:
            page = page.where(or_(col(Job.created_at) > after[0], and_(col(Job.created_at) == after[0], col(Job.id) > after[1])))
        rows = session.execute(page.order_by(col(Job.created_at), col(Job.id)).limit(limit)).all()
        for job_id, created, last in rows:
            if last is None or now - as_utc(last) >= max(older_than, as_utc(last) - as_utc(created)):
                due.append(job_id)
        if len(rows) < limit:
            break
        after = (rows[-1][1], rows[-1][0])
    session.rollback()
    return due[:limit]


def mark_dispatched(*, session: Session, job_ids: list[int], now: datetime | None = None) -> None:
    """Remember that these queued jobs were just sent (``jobs_to_redispatch``'s clock)."""
    if job_ids:
        session.execute(move("mark_dispatched", col(Job.id).in_(job_ids), heartbeat_at=now or utcnow()))
    session.commit()
