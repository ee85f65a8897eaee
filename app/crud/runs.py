"""What a running job's worker writes and polls: metric points, heartbeat and progress, the
reproducibility record, the cancel flag."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session, col

from app.crud.transitions import in_sources
from app.models import Job, MetricPoint, utcnow


def finite(obj: Any) -> Any:
    """NaN/inf -> None, recursively: JSON (and PostgreSQL's json type) has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def append_metrics(*, session: Session, job_id: int, points: list[dict[str, Any]]) -> None:
    """One bulk INSERT of metric points (dicts as made by ``worker.sink.metric_point``)."""
    if not points:
        return
    rows = [
        {
            "job_id": job_id,
            "run": p["run"],
            "kind": p["kind"],
            "step": p.get("step"),
            "epoch": p.get("epoch"),
            "train_time_s": finite(p.get("train_time_s")),
            "values": finite(p.get("values") or {}),
        }
        for p in points
    ]
    session.execute(insert(MetricPoint), rows)
    session.commit()


def _beat(progress: dict[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = finite(progress)
    return values


def record_heartbeat(*, session: Session, job_id: int, progress: dict[str, Any] | None = None) -> None:
    """The worker is alive: heartbeat_at = now, and the progress with it when given (one UPDATE)."""
    session.execute(update(Job).where(col(Job.id) == job_id).values(**_beat(progress)))
    session.commit()


@dataclass(frozen=True)
class Flushed:
    """What a flush found: whether the job was still this run's (false: nothing written; the object is falsy
    then), and its cancel flag, read back by the flush's own UPDATE (a flush is also a cancel check)."""

    ours: bool
    cancel_requested: bool = False

    def __bool__(self) -> bool:
        return self.ours


def flush_metrics(
    *, session: Session, job_id: int, points: list[dict[str, Any]], progress: dict[str, Any] | None = None, attempt: int | None = None
) -> Flushed:
    """A worker's flush in one transaction: heartbeat (and progress) first, by an UPDATE that requires the job
    still this run's (``attempt``: claimed as that attempt and not requeued since: the "flush" transition) and
    returns its cancel flag, then the points only if it matched. Falsy: the job is no longer this run's
    (requeued, rerun); nothing was written.

    The UPDATE takes the job's row lock (PostgreSQL) or the write lock (SQLite) before the INSERT, and a
    recovery updates the same row before deleting the points: the two serialise, so a requeued job never
    keeps points of the run it gave up on.
    """
    conds = [col(Job.id) == job_id]
    if attempt is not None:
        conds += [col(Job.attempts) == attempt, in_sources("flush")]
    row = session.execute(update(Job).where(*conds).values(**_beat(progress)).returning(Job.cancel_requested)).first()
    if row is None:
        session.rollback()
        return Flushed(False)
    if points:
        append_metrics(session=session, job_id=job_id, points=points)  # commits
    else:
        session.commit()
    return Flushed(True, bool(row[0]))


def job_control(*, session: Session, job_id: int) -> tuple[bool, str | None]:
    """What a running job's worker polls, in one query: (cancel requested, status; None if unknown)."""
    row = session.execute(select(Job.cancel_requested, Job.status).where(col(Job.id) == job_id)).first()
    return (bool(row[0]), row[1]) if row else (False, None)


def set_reproducibility(*, session: Session, job_id: int, record: dict[str, Any]) -> None:
    """Store what a job runs on; the record's ``hardware`` (dynds_core.hardware, measured by the process
    that runs the job) also fills the job's hardware columns, so a running job shows it."""
    values: dict[str, Any] = {"reproducibility": finite(record), "heartbeat_at": utcnow()}
    hardware = record.get("hardware")
    if isinstance(hardware, dict) and hardware.get("key"):
        values.update(hardware=hardware, hardware_key=hardware["key"])
    session.execute(update(Job).where(col(Job.id) == job_id).values(**values))
    session.commit()
