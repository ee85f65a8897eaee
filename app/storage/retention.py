"""Expiring finished jobs' records, tier by tier, with a dry run that says what would go.

    for e in plan(session, settings):          # dynds retention --dry-run
        print(e.what, e.jobs, e.items, e.bytes)
    apply(session, settings)                   # dynds retention

Each tier has its age in days since the job finished, ``None`` keeping it (app/core/config.py):

- ``step_archive_retention_days``: the step archive (``steps.parquet``: its row, then its file) and the
  chunks of one never merged (a job failed by the heartbeat sweep while its worker was gone);
- ``metric_points_retention_days``: the job's step points in SQL (its epoch points, result and summary stay,
  so its page, the leaderboard and the comparisons keep working);
- ``checkpoint_retention_days``: checkpoints left beside a finished job (``keep_checkpoints``, or a worker
  that died before deleting them);
- the weights: ``artifact_retention_days`` / ``artifact_keep_last``, as each store applies them (app/artifacts.py).

Only jobs in a final state (succeeded, failed, cancelled) with ``finished_at`` before the cutoff are
looked at, and every DELETE names that condition again: a queued or running job is never touched.
SQL bytes are the rows' stored size (PostgreSQL: ``pg_column_size`` of the rows; SQLite: the JSON text plus
the fixed columns, an estimate); file bytes are the files' sizes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, text
from sqlmodel import Session, col

from app import crud
from app.artifacts import CHECKPOINTS, MODEL_FILE, apply_retention, artifact_root, remove_checkpoints, remove_files
from app.core.config import Settings
from app.models import FINAL_STATES, Artifact, Job, MetricPoint, utcnow
from app.storage.step_archive import ARCHIVE_FILE, CHUNKS, remove_chunks

log = logging.getLogger(__name__)

BATCH = 500  # job ids per statement
SQLITE_FIXED_ROW_BYTES = 48  # id, job_id, run, kind, step, epoch, train_time_s and the record header, about


@dataclass
class Expiry:
    """One tier's share of a retention pass: what, under which setting, how many jobs, items and bytes."""

    what: str
    setting: str
    configured: bool  # the setting is set: this tier expires
    jobs: int = 0
    items: int = 0
    bytes: int = 0
    job_ids: list[int] = field(default_factory=list, repr=False)

    def line(self, dry_run: bool) -> str:
        if not self.configured:
            return f"{self.what}: kept ({self.setting} not set)"
        verb = "would delete" if dry_run else "deleted"
        return f"{self.what}: {verb} {self.items:,} of {self.jobs:,} job(s), {self.bytes:,} bytes ({self.setting})"


def _batches(ids: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), BATCH):
        yield ids[i : i + BATCH]


def _finished(cutoff: datetime):
    return (col(Job.status).in_(sorted(FINAL_STATES)), col(Job.finished_at) < cutoff)


def finished_before(session: Session, cutoff: datetime) -> list[int]:
    """The ids of the jobs that ended before ``cutoff`` (index ix_job_status_finished)."""
    return list(session.execute(select(Job.id).where(*_finished(cutoff)).order_by(col(Job.id))).scalars())


def _job_dirs(settings: Settings, sub: str) -> dict[int, Path]:
    """``<artifact_dir>/<job id>/<sub>`` that exist, by job id."""
    root, found = artifact_root(settings), {}
    if not root.is_dir():
        return found
    with os.scandir(root) as entries:
        for e in entries:
            if e.name.isdigit() and (Path(e.path) / sub).is_dir():
                found[int(e.name)] = Path(e.path) / sub
    return found


def _dir_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _ended_among(session: Session, ids: list[int], cutoff: datetime) -> set[int]:
    found: set[int] = set()
    for chunk in _batches(sorted(ids)):
        found.update(session.execute(select(Job.id).where(col(Job.id).in_(chunk), *_finished(cutoff))).scalars())
    return found


def _cutoff(days: float | None, now: datetime | None) -> datetime | None:
    return None if days is None else (now or utcnow()) - timedelta(days=days)


def _step_archives(session: Session, settings: Settings, cutoff: datetime) -> tuple[Expiry, list[Artifact], dict[int, Path]]:
    e = Expiry("step archives", "DYNDS_STEP_ARCHIVE_RETENTION_DAYS", True)
    stmt = select(Artifact).join(Job, col(Job.id) == col(Artifact.job_id)).where(col(Artifact.name) == ARCHIVE_FILE, *_finished(cutoff))
    rows = list(session.execute(stmt).scalars())
    chunks = _job_dirs(settings, CHUNKS)
    stale = {i: chunks[i] for i in _ended_among(session, list(chunks), cutoff)}
    e.items = len(rows) + sum(_dir_bytes(p)[0] for p in stale.values())
    e.bytes = sum(a.size_bytes for a in rows) + sum(_dir_bytes(p)[1] for p in stale.values())
    e.job_ids = sorted({a.job_id for a in rows} | set(stale))
    e.jobs = len(e.job_ids)
    return e, rows, stale


def _points_where(chunk: list[int], cutoff: datetime):
    ended = select(Job.id).where(col(Job.id).in_(chunk), *_finished(cutoff))
    return (col(MetricPoint.job_id).in_(ended), col(MetricPoint.kind) == "step")


def _metric_points(session: Session, settings: Settings, cutoff: datetime) -> Expiry:
    e = Expiry("step points (SQL)", "DYNDS_METRIC_POINTS_RETENTION_DAYS", True)
    pg = session.get_bind().dialect.name == "postgresql"
    for chunk in _batches(finished_before(session, cutoff)):
        where = _points_where(chunk, cutoff)
        if pg:
            size = func.sum(func.pg_column_size(text("metric_point.*")))
        else:
            size = func.sum(func.length(MetricPoint.values) + SQLITE_FIXED_ROW_BYTES)
        n, b, jobs = session.execute(select(func.count(), size, func.count(func.distinct(MetricPoint.job_id))).where(*where)).one()
        e.items += int(n or 0)
        e.bytes += int(b or 0)
        e.jobs += int(jobs or 0)
    return e


def _checkpoints(session: Session, settings: Settings, cutoff: datetime) -> tuple[Expiry, dict[int, Path]]:
    e = Expiry("checkpoints", "DYNDS_CHECKPOINT_RETENTION_DAYS", True)
    found = _job_dirs(settings, CHECKPOINTS)
    stale = {i: found[i] for i in _ended_among(session, list(found), cutoff)}
    for p in stale.values():
        files, size = _dir_bytes(p)
        e.items += files
        e.bytes += size
    e.job_ids, e.jobs = sorted(stale), len(stale)
    return e, stale


def _weights(session: Session, settings: Settings, now: datetime | None) -> Expiry:
    days, keep = settings.artifact_retention_days, settings.artifact_keep_last
    e = Expiry("weights", "DYNDS_ARTIFACT_RETENTION_DAYS / DYNDS_ARTIFACT_KEEP_LAST", days is not None or keep is not None)
    if not e.configured:
        return e
    older_than = timedelta(days=days) if days is not None else None
    rows = crud.expired_artifacts(session=session, older_than=older_than, keep_last=keep, now=now, name=MODEL_FILE)
    e.items, e.bytes = len(rows), sum(a.size_bytes for a in rows)
    e.job_ids = sorted({a.job_id for a in rows})
    e.jobs = len(e.job_ids)
    return e


def plan(session: Session, settings: Settings, *, now: datetime | None = None) -> list[Expiry]:
    """What a retention pass would delete now, tier by tier (nothing is deleted)."""
    out = []
    if (cut := _cutoff(settings.step_archive_retention_days, now)) is not None:
        out.append(_step_archives(session, settings, cut)[0])
    else:
        out.append(Expiry("step archives", "DYNDS_STEP_ARCHIVE_RETENTION_DAYS", False))
    if (cut := _cutoff(settings.metric_points_retention_days, now)) is not None:
        out.append(_metric_points(session, settings, cut))
    else:
        out.append(Expiry("step points (SQL)", "DYNDS_METRIC_POINTS_RETENTION_DAYS", False))
    if (cut := _cutoff(settings.checkpoint_retention_days, now)) is not None:
        out.append(_checkpoints(session, settings, cut)[0])
    else:
        out.append(Expiry("checkpoints", "DYNDS_CHECKPOINT_RETENTION_DAYS", False))
    out.append(_weights(session, settings, now))
    return out


def apply(session: Session, settings: Settings, *, now: datetime | None = None, logger: logging.Logger = log) -> list[Expiry]:
    """Delete what ``plan`` lists: rows first (committed), then their files. Returns what went."""
    out = []
    if (cut := _cutoff(settings.step_archive_retention_days, now)) is not None:
        e, rows, stale = _step_archives(session, settings, cut)
        gone = [(a.id, a.path) for a in rows]
        for chunk in _batches([i for i, _ in gone]):
            # Deleted only while the job is still ended before the cutoff (it always is: a final state is final).
            ended = select(Job.id).where(*_finished(cut))
            session.execute(delete(Artifact).where(col(Artifact.id).in_(chunk), col(Artifact.job_id).in_(ended)))
        session.commit()
        remove_files(settings, [rel for _, rel in gone], what="step archive", logger=logger)
        for path in stale.values():
            remove_chunks(path)
        out.append(e)
    if (cut := _cutoff(settings.metric_points_retention_days, now)) is not None:
        e = _metric_points(session, settings, cut)
        for chunk in _batches(finished_before(session, cut)):
            session.execute(delete(MetricPoint).where(*_points_where(chunk, cut)))
            session.commit()
        out.append(e)
    if (cut := _cutoff(settings.checkpoint_retention_days, now)) is not None:
        e, stale = _checkpoints(session, settings, cut)
        for job_id in stale:
            remove_checkpoints(settings, job_id, ended=False, logger=logger)
        out.append(e)
    weights = _weights(session, settings, now)
    if weights.items:
        apply_retention(session, settings, logger=logger)
    out.append(weights)
    for e in out:
        if e.items:
            logger.info("retention: %s", e.line(dry_run=False))
    return out
