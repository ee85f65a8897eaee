"""A job's log lines (app/logs.py captures and writes them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, update
from sqlmodel import Session, col, select

from app.models import JobLog, iso_utc


def append_job_logs(*, session: Session, rows: list[dict[str, Any]]) -> None:
    """Store log lines (JobLog's columns: job_id, seq, created_at, level, logger, message) in one INSERT."""
    if rows:
        session.execute(insert(JobLog), rows)
        session.commit()


def last_job_log_seq(*, session: Session, job_id: int) -> int:
    """The number of the job's last stored line (0: none): a later run of the job numbers its lines after it."""
    return int(session.execute(select(func.max(JobLog.seq)).where(JobLog.job_id == job_id)).scalar() or 0)


def set_job_log_message(*, session: Session, job_id: int, seq: int, message: str) -> None:
    session.execute(update(JobLog).where(col(JobLog.job_id) == job_id, col(JobLog.seq) == seq).values(message=message))
    session.commit()


def job_logs_after(*, session: Session, job_id: int, after: int = 0, limit: int = 1000, min_level: str | None = None) -> list[dict[str, Any]]:
    """The job's lines with seq > after, oldest first (keyset paging on the (job_id, seq) index), as the API sends them."""
    stmt = select(JobLog.seq, JobLog.created_at, JobLog.level, JobLog.logger, JobLog.message).where(JobLog.job_id == job_id, col(JobLog.seq) > after)
    if min_level is not None:
        order = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        stmt = stmt.where(col(JobLog.level).in_(order[order.index(min_level.upper()) :]))
    rows = session.execute(stmt.order_by(col(JobLog.seq), col(JobLog.id)).limit(limit)).all()
    return [
        {"seq": seq, "created_at": iso_utc(created), "level": level, "logger": logger, "message": message}
        for seq, created, level, logger, message in rows
    ]
