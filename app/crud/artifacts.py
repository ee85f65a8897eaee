"""Artifact rows (app/artifacts.py keeps the files) and deleting a finished job with everything that refers to it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from app.crud.lifecycle import finish_job, this_run
from app.crud.transitions import in_sources, move, refusal
from app.models import Artifact, Job, utcnow
from dynds_core.result import JobResult


def finish_job_with_artifact(
    *, session: Session, job_id: int, result: JobResult, artifact: dict[str, Any], attempt: int | None = None, more: tuple[dict[str, Any], ...] = ()
) -> Artifact | None:
    """``finish_job`` and the job's artifact row (``artifact``: Artifact's columns but job_id; ``more``: other
    files of the job, its step archive) in one transaction: the artifact exists exactly when the job succeeded
    with it. None when the job was no longer this run's (nothing written: the caller removes the files).

    A no-op UPDATE of the running job takes its row lock (PostgreSQL) or the write lock (SQLite) first,
    so nobody changes the job between the INSERT and finish_job's UPDATE, which commits both.
    """
    locked = session.execute(update(Job).where(*this_run(job_id, attempt), in_sources("finish")).values(heartbeat_at=utcnow()))
    if locked.rowcount != 1:
        session.rollback()
        return None
    rows = [Artifact(job_id=job_id, **a) for a in (artifact, *more)]
    session.add_all(rows)
    session.flush()
    if not finish_job(session=session, job_id=job_id, result=result, attempt=attempt):  # commits
        for row in rows:  # cannot happen under the lock; never leave a row for a job that did not finish
            session.delete(row)
        session.commit()
        return None
    return rows[0]


def record_artifact(*, session: Session, job_id: int, artifact: dict[str, Any]) -> Artifact:
    """A file a job left after it ended (its step archive: app/storage/step_archive.py), its row committed
    after the file is complete; ``artifact``: Artifact's columns but job_id."""
    row = Artifact(job_id=job_id, **artifact)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def job_artifacts(*, session: Session, job_id: int) -> list[Artifact]:
    return list(session.exec(select(Artifact).where(Artifact.job_id == job_id).order_by(col(Artifact.id))).all())


def job_artifact(*, session: Session, job_id: int, name: str) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name).order_by(col(Artifact.id).desc()).limit(1)
    return session.exec(stmt).first()


def expired_artifacts(
    *, session: Session, older_than: timedelta | None = None, keep_last: int | None = None, now: datetime | None = None, name: str | None = None
) -> list[Artifact]:
    """Artifacts past retention: created before ``now - older_than``, or not among the newest ``keep_last``;
    only those called ``name`` when given (the weights and the step archives expire by settings of their own)."""
    found: dict[int, Artifact] = {}
    named = (col(Artifact.name) == name,) if name is not None else ()
    if older_than is not None:
        cutoff = (now or utcnow()) - older_than
        for a in session.exec(select(Artifact).where(col(Artifact.created_at) < cutoff, *named)).all():
            found[a.id] = a
    if keep_last is not None:
        stmt = select(Artifact).where(*named).order_by(col(Artifact.created_at).desc(), col(Artifact.id).desc()).offset(keep_last)
        for a in session.exec(stmt).all():
            found[a.id] = a
    return sorted(found.values(), key=lambda a: a.id)


def delete_artifact_rows(*, session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(delete(Artifact).where(col(Artifact.id).in_(ids)))
    session.commit()


def delete_job(*, session: Session, job_id: int) -> list[Artifact] | None:
    """Delete a finished job with everything that refers to it, in one transaction: its artifact rows,
    metric points, idempotency keys and the rows of any other table holding a foreign key to it; retries
    of it keep existing (their ``retry_of`` becomes NULL); sweeps list it no more (``sweep_jobs`` skips
    missing ids). Returns the deleted artifact rows (the caller removes their files after the commit),
    None when the job does not exist; raises JobStateError for a queued or running job.

    The first statement, a no-op UPDATE of a finished job, takes its row lock (PostgreSQL) or the write
    lock (SQLite): a concurrent retry of it waits, and a queued or running job is refused.
    """
    locked = session.execute(move("delete", col(Job.id) == job_id, attempt=Job.attempt))
    if locked.rowcount != 1:
        status = session.execute(select(Job.status).where(col(Job.id) == job_id)).scalar()
        session.rollback()
        if status is None:
            return None
        raise refusal(job_id, status, "delete")
    artifacts = job_artifacts(session=session, job_id=job_id)
    for a in artifacts:
        session.expunge(a)
    job_table = Job.__table__
    for table in Job.metadata.sorted_tables:  # artifact, metric_point, idempotency_key, job logs, ...
        for fk in table.foreign_keys:
            if fk.column.table is not job_table:
                continue
            if table is job_table:
                session.execute(job_table.update().where(fk.parent == job_id).values({fk.parent.name: None}))
            else:
                session.execute(table.delete().where(fk.parent == job_id))
    session.execute(delete(Job).where(col(Job.id) == job_id))
    session.commit()
    return artifacts
