"""Submitting jobs and sweeps: deduplication by spec hash, Idempotency-Keys, one transaction per sweep.

job, outcome = submit_job(session=session, spec=JobSpec.parse(data))   # "created", "deduplicated", "idempotent"
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from app.crud.transitions import LIVE
from app.leaderboard import frontier_key, recipe_hash, setting_key, track_of
from app.models import DEDUP_STATES, IdempotencyKey, Job, Sweep
from dynds_core.spec import JobSpec


def job_columns(spec: JobSpec) -> dict[str, Any]:
    """What a Job row stores about its spec (the listing and leaderboard columns included)."""
    canonical = spec.canonical()
    return {
        "name": spec.name,
        "spec": canonical,
        "spec_hash": spec.spec_hash,
        "arch": spec.model.arch,
        "dataset": spec.data.dataset,
        "schedule_kind": spec.dynds.schedule.kind,
        "track": track_of(canonical),
        "recipe_hash": recipe_hash(canonical),
        "frontier_key": frontier_key(canonical),
        "setting": canonical["dynds"],
        "setting_key": setting_key(canonical["dynds"]),
        "seed": spec.train.seed,
    }


def _job_for_key(session: Session, key: str) -> Job | None:
    return session.exec(select(Job).join(IdempotencyKey, IdempotencyKey.job_id == Job.id).where(IdempotencyKey.key == key)).first()


# An adaptive schedule decides from measured step times, so it is not a pure function of (seed, step):
# a re-run is a new measurement, and a succeeded adaptive job does not answer an identical submission.
NOT_REPEATABLE_KINDS = ("adaptive",)


def dedup_states(spec: JobSpec) -> tuple[str, ...]:
    """The states in which an identical earlier job answers a submission of ``spec``."""
    return LIVE if spec.dynds.schedule.kind in NOT_REPEATABLE_KINDS else DEDUP_STATES


def active_job(*, session: Session, spec_hash: str, states: tuple[str, ...] = DEDUP_STATES) -> Job | None:
    """The job an identical submission is answered with: queued, running or succeeded (the dedup holder first)."""
    stmt = (
        select(Job)
        .where(Job.spec_hash == spec_hash, col(Job.status).in_(states))
        .order_by(case((col(Job.active_hash).is_(None), 1), else_=0), col(Job.id).desc())
        .limit(1)
    )
    return session.exec(stmt).first()


def _remember_key(session: Session, key: str, job_id: int) -> None:
    session.add(IdempotencyKey(key=key, job_id=job_id))
    try:
        session.commit()
    except IntegrityError:  # a concurrent request with the same key recorded it first
        session.rollback()


class IdempotencyKeyReused(ValueError):
    """An Idempotency-Key repeated with another request than its first (a 422)."""


def check_key_reuse(job: Job, *, spec_hash: str, force: bool, key: str) -> None:
    """Raise ``IdempotencyKeyReused`` unless this request could be the key's first one again: the same
    canonical spec (``spec_hash``) and, as far as the stored job tells, the same ``force``. A job that
    holds its spec's hash (``active_hash``) was not forced: repeating its key with ``force: true`` is a
    different request. (A forced job holds none; neither does any job once failed or cancelled, so the
    other way round cannot be told from the job and is let through.)"""
    if job.spec_hash != spec_hash:
        raise IdempotencyKeyReused(
            f"this Idempotency-Key was first used with another spec (job {job.id}, spec_hash {job.spec_hash[:12]}..., "
            f"this request's {spec_hash[:12]}...): a new request needs a new key"
        )
    if force and job.active_hash == spec_hash:
        raise IdempotencyKeyReused(
            f"this Idempotency-Key was first used without force (job {job.id}); this request sets force: true: a new request needs a new key"
        )


def submit_job(
    *,
    session: Session,
    spec: JobSpec,
    force: bool = False,
    idempotency_key: str | None = None,
    sweep_id: int | None = None,
) -> tuple[Job, str]:
    """Queue a job for ``spec``; returns (job, outcome): "created", "deduplicated" or "idempotent" (a repeated key).

    An identical spec (same spec_hash) already queued, running or succeeded is returned instead
    ("deduplicated") unless ``force``; for an adaptive schedule only a queued or running one (a
    finished adaptive run is a measurement, not a function of the spec). A repeated ``idempotency_key`` returns the job of its first use
    (``IdempotencyKeyReused`` when the request differs: ``check_key_reuse``).
    Concurrent identical submissions are settled by the unique index on ``active_hash``: the losers'
    INSERT fails and they return the winner.
    """
    h = spec.spec_hash
    for _ in range(5):
        if idempotency_key:
            job = _job_for_key(session, idempotency_key)
            if job is not None:
                check_key_reuse(job, spec_hash=h, force=force, key=idempotency_key)
                return job, "idempotent"
        if not force:
            existing = active_job(session=session, spec_hash=h, states=dedup_states(spec))
            if existing is not None:
                if idempotency_key:
                    _remember_key(session, idempotency_key, existing.id)
                return existing, "deduplicated"
        job = Job(**job_columns(spec), active_hash=None if force else h, sweep_id=sweep_id)
        session.add(job)
        try:
            session.flush()
            if idempotency_key:
                session.add(IdempotencyKey(key=idempotency_key, job_id=job.id))
            session.commit()
            return job, "created"
        except IntegrityError:
            # Lost a race (same active_hash or same idempotency key): look again for the winner.
            session.rollback()
    raise RuntimeError(f"could not create or find a job for spec_hash {h} after 5 tries")


def _sweep_job(session: Session, spec: JobSpec, force: bool, sweep_id: int) -> tuple[Job, bool]:
    """Inside the sweep's transaction: the job answering ``spec`` (an identical active one unless force), or a new one (flushed)."""
    if not force:
        existing = active_job(session=session, spec_hash=spec.spec_hash, states=dedup_states(spec))
        if existing is not None:
            return existing, False
    job = Job(**job_columns(spec), active_hash=None if force else spec.spec_hash, sweep_id=sweep_id)
    session.add(job)
    session.flush()
    return job, True


def create_sweep(
    *, session: Session, name: str, base: dict[str, Any], grid: dict[str, list[Any]], specs: list[JobSpec], force: bool = False
) -> tuple[Sweep, list[tuple[Job, bool]]]:
    """Record a sweep and queue one job per (already validated) spec; returns the sweep and (job, created) per point.

    One transaction: the sweep and all its jobs are committed together or not at all. A point equal to
    an earlier one (in the database or in this sweep) is answered by that job unless ``force``. When a
    concurrent submission takes a spec's dedup hold first, the commit fails on the unique active_hash
    and the whole sweep is tried again (then answered by that job).
    """
    for _ in range(5):
        try:
            sweep = Sweep(name=name, base=base, grid=grid, count=len(specs))
            session.add(sweep)
            session.flush()
            jobs = [_sweep_job(session, spec, force, sweep.id) for spec in specs]
            sweep.job_ids = [job.id for job, _ in jobs]
            session.add(sweep)
            session.commit()
            return sweep, jobs
        except IntegrityError:
            session.rollback()
    raise RuntimeError(f"could not create sweep {name!r} after 5 tries")


def sweep_jobs(*, session: Session, sweep: Sweep) -> list[Job]:
    """The job answering each grid point, in grid order (without their full results loaded)."""
    rows = session.exec(select(Job).options(defer(Job.result)).where(col(Job.id).in_(sweep.job_ids))).all()
    by_id = {job.id: job for job in rows}
    return [by_id[i] for i in sweep.job_ids if i in by_id]
