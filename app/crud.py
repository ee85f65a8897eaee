"""Data functions for jobs, metrics and sweeps: used by the API routes and by the worker.

All take keyword-only arguments and a Session::

    job, created = create_job(session=session, spec=JobSpec.parse(data))
    job = claim_job(session=session, job_id=job.id, worker="host:123")   # None: someone else has it

Every state change is one conditional UPDATE (``... WHERE status = 'queued'``), so two processes racing
for the same job cannot both win; the caller learns the outcome from the row count.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, case, cast, delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from dynds_core.result import EpochMetrics, JobResult, StepMetrics
from dynds_core.spec import JobSpec

from app.leaderboard import frontier_key, recipe_hash, recipe_of, resolve_track, setting_key, track_of
from app.models import (
    DEDUP_STATES,
    SUMMARY_FIELDS,
    IdempotencyKey,
    Job,
    MetricPoint,
    Sweep,
    as_utc,
    iso_utc,
    utcnow,
)

INTERRUPTED_ERROR = "interrupted: the process running it stopped; retry it with POST /jobs/{id}/retry"
STALE_ERROR = "interrupted: no heartbeat from worker {worker} for {age} s; retry it with POST /jobs/{id}/retry"
JOB_ORDERS = ("created_at", "-created_at", "id", "-id", "finished_at", "-finished_at", "name", "-name")


class JobStateError(ValueError):
    """The job is not in a state that allows the operation (the API answers 409)."""


# ---------------------------------------------------------------- helpers


def finite(obj: Any) -> Any:
    """NaN/inf -> None, recursively: JSON (and PostgreSQL's json type) has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


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


def metric_point(m: StepMetrics | EpochMetrics) -> dict[str, Any]:
    """A training callback's metrics as an ``append_metrics`` point."""
    if isinstance(m, StepMetrics):
        values = {"loss": m.loss, "acc": m.acc, "lr": m.lr, "batch_type": m.batch_type, "step_time_s": m.step_time_s}
        return {"run": m.run, "kind": "step", "step": m.step, "epoch": m.epoch, "train_time_s": m.train_time_s, "values": values}
    values = {
        "train_loss": m.train_loss, "train_acc": m.train_acc, "val_loss": m.val_loss, "val_acc": m.val_acc,
        "time_full_s": m.time_full_s, "time_reduced_s": m.time_reduced_s,
        "steps_full": m.steps_full, "steps_reduced": m.steps_reduced, "epochs": m.epochs,
    }
    return {"run": m.run, "kind": "epoch", "step": None, "epoch": m.epoch, "train_time_s": m.train_time_s, "values": values}


# ---------------------------------------------------------------- creating jobs


def _job_for_key(session: Session, key: str) -> Job | None:
    return session.exec(select(Job).join(IdempotencyKey, IdempotencyKey.job_id == Job.id).where(IdempotencyKey.key == key)).first()


# An adaptive schedule decides from measured step times, so it is not a pure function of (seed, step):
# a re-run is a new measurement, and a succeeded adaptive job does not answer an identical submission.
NOT_REPEATABLE_KINDS = ("adaptive",)


def dedup_states(spec: JobSpec) -> tuple[str, ...]:
    """The states in which an identical earlier job answers a submission of ``spec``."""
    return ("queued", "running") if spec.dynds.schedule.kind in NOT_REPEATABLE_KINDS else DEDUP_STATES


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


def create_job(
    *,
    session: Session,
    spec: JobSpec,
    force: bool = False,
    idempotency_key: str | None = None,
    sweep_id: int | None = None,
) -> tuple[Job, bool]:
    """Queue a job for ``spec``; returns (job, created). See ``submit_job``."""
    job, outcome = submit_job(session=session, spec=spec, force=force, idempotency_key=idempotency_key, sweep_id=sweep_id)
    return job, outcome == "created"


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


# ---------------------------------------------------------------- reading jobs


def get_job(*, session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def _job_filters(*, status=None, arch=None, dataset=None, schedule_kind=None, track=None, q=None) -> list:
    conds = []
    for column, value in ((Job.status, status), (Job.arch, arch), (Job.dataset, dataset), (Job.schedule_kind, schedule_kind), (Job.track, track)):
        if value is not None:
            conds.append(column == value)
    if q:
        conds.append(col(Job.name).ilike(f"%{q}%"))
    return conds


def list_jobs(
    *,
    session: Session,
    status: str | None = None,
    arch: str | None = None,
    dataset: str | None = None,
    schedule_kind: str | None = None,
    track: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
    order: str = "-created_at",
) -> tuple[list[Job], int]:
    """A page of jobs (without their full result loaded) and the total count under the filters."""
    if order not in JOB_ORDERS:
        raise ValueError(f"order must be one of {', '.join(JOB_ORDERS)}, got {order!r}")
    conds = _job_filters(status=status, arch=arch, dataset=dataset, schedule_kind=schedule_kind, track=track, q=q)
    field = getattr(Job, order.lstrip("-"))
    ordering = [col(field).desc(), col(Job.id).desc()] if order.startswith("-") else [col(field).asc(), col(Job.id).asc()]
    # Lists never show the full result or the setting (it is in the spec): not loaded, not parsed.
    stmt = select(Job).options(defer(Job.result), defer(Job.setting)).where(*conds).order_by(*ordering).offset(offset).limit(limit)
    jobs = list(session.exec(stmt).all())
    count = session.exec(select(func.count()).select_from(Job).where(*conds)).one()
    return jobs, count


LIST_SCALARS = (
    "id", "name", "status", "spec_hash", "arch", "dataset", "schedule_kind", "track", "recipe_hash", "attempt", "attempts", "retry_of", "sweep_id",
    "created_at", "started_at", "finished_at", "cancel_requested", "error", "heartbeat_at",
)
LIST_RAW_JSON = ("spec", "progress", "reproducibility")


def list_jobs_json(*, session: Session, limit: int = 50, offset: int = 0, order: str = "-created_at", **filters) -> tuple[str, int]:
    """``list_jobs`` as a ready JSON array of list items (JobListItem's shape), stored JSON spliced in unparsed.

    GET /jobs is the most requested page; building ORM objects and re-encoding every spec was most of its cost.
    """
    if order not in JOB_ORDERS:
        raise ValueError(f"order must be one of {', '.join(JOB_ORDERS)}, got {order!r}")
    conds = _job_filters(**filters)
    field = getattr(Job, order.lstrip("-"))
    ordering = [col(field).desc(), col(Job.id).desc()] if order.startswith("-") else [col(field).asc(), col(Job.id).asc()]
    columns = [getattr(Job, c) for c in LIST_SCALARS + SUMMARY_FIELDS] + [cast(getattr(Job, c), Text) for c in LIST_RAW_JSON]
    rows = session.execute(select(*columns).where(*conds).order_by(*ordering).offset(offset).limit(limit)).all()
    count = session.exec(select(func.count()).select_from(Job).where(*conds)).one()
    n_scalar, n_summary = len(LIST_SCALARS), len(SUMMARY_FIELDS)
    items = []
    for row in rows:
        head = dict(zip(LIST_SCALARS, row[:n_scalar]))
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            head[key] = iso_utc(head[key])
        head["deduplicated"] = False
        head["result"] = None
        head["summary"] = dict(zip(SUMMARY_FIELDS, row[n_scalar : n_scalar + n_summary])) if head["status"] == "succeeded" else None
        raw = row[n_scalar + n_summary :]
        tail = ",".join(f'"{name}":{text if text is not None else "null"}' for name, text in zip(LIST_RAW_JSON, raw))
        items.append(json.dumps(head, separators=(",", ":"))[:-1] + "," + tail + "}")
    return "[" + ",".join(items) + "]", count


# ---------------------------------------------------------------- the worker's side


def next_queued_job_id(*, session: Session) -> int | None:
    """The oldest queued job (the embedded executor's queue)."""
    return session.exec(select(Job.id).where(Job.status == "queued").order_by(col(Job.created_at), col(Job.id)).limit(1)).first()


def claim_job(*, session: Session, job_id: int, worker: str) -> Job | None:
    """queued -> running, atomically, with its first heartbeat and one more ``attempts``; None when the job
    is not queued (claimed elsewhere, cancelled, unknown). The returned job's ``attempts`` identifies this
    run: the guarded writes below (``flush_metrics``, ``finish_job``, ``fail_job``, ``requeue_job``) take it,
    so a run that was given up on (requeued, then claimed again elsewhere) can no longer write to the job."""
    now = utcnow()
    res = session.execute(
        update(Job).where(col(Job.id) == job_id, col(Job.status) == "queued")
        .values(status="running", started_at=now, worker=worker, heartbeat_at=now, attempts=Job.attempts + 1)
    )
    session.commit()
    if res.rowcount != 1:
        return None
    job = session.get(Job, job_id)
    session.refresh(job)
    return job


def append_metrics(*, session: Session, job_id: int, points: list[dict[str, Any]]) -> None:
    """One bulk INSERT of metric points (dicts as made by ``metric_point``)."""
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


def record_heartbeat(*, session: Session, job_id: int, progress: dict[str, Any] | None = None) -> None:
    """The worker is alive: heartbeat_at = now, and the progress with it when given (one UPDATE)."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = finite(progress)
    session.execute(update(Job).where(col(Job.id) == job_id).values(**values))
    session.commit()


def _run_is(job_id: int, attempt: int | None) -> list:
    """WHERE clauses: the job is running, and (``attempt`` given) still by the run that claimed it as that attempt."""
    conds = [col(Job.id) == job_id, col(Job.status) == "running"]
    if attempt is not None:
        conds.append(col(Job.attempts) == attempt)
    return conds


def flush_metrics(
    *, session: Session, job_id: int, points: list[dict[str, Any]], progress: dict[str, Any] | None = None, attempt: int | None = None
) -> bool:
    """A worker's flush in one transaction: heartbeat (and progress) first, by an UPDATE that requires the job
    still this run's (``attempt``: claimed as that attempt and not requeued since), then the points only if
    it matched. False: the job is no longer this run's (requeued, rerun); nothing was written.

    The UPDATE takes the job's row lock (PostgreSQL) or the write lock (SQLite) before the INSERT, and a
    recovery updates the same row before deleting the points: the two serialise, so a requeued job never
    keeps points of the run it gave up on.
    """
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = finite(progress)
    # Not requeued, not claimed again since: a job failed meanwhile (a stale heartbeat) still gets the points
    # it made (they explain it); a requeued or rerun one does not.
    conds = [col(Job.id) == job_id]
    if attempt is not None:
        conds += [col(Job.attempts) == attempt, col(Job.status) != "queued"]
    res = session.execute(update(Job).where(*conds).values(**values))
    if res.rowcount != 1:
        session.rollback()
        return False
    if points:
        append_metrics(session=session, job_id=job_id, points=points)  # commits
    else:
        session.commit()
    return True


def update_progress(*, session: Session, job_id: int, progress: dict[str, Any]) -> None:
    """The progress, and a heartbeat (a worker writing progress is alive)."""
    record_heartbeat(session=session, job_id=job_id, progress=progress)


def is_cancel_requested(*, session: Session, job_id: int) -> bool:
    return bool(session.exec(select(Job.cancel_requested).where(Job.id == job_id)).first())


def job_control(*, session: Session, job_id: int) -> tuple[bool, str | None]:
    """What a running job's worker polls, in one query: (cancel requested, status; None if unknown)."""
    row = session.execute(select(Job.cancel_requested, Job.status).where(col(Job.id) == job_id)).first()
    return (bool(row[0]), row[1]) if row else (False, None)


def set_reproducibility(*, session: Session, job_id: int, record: dict[str, Any]) -> None:
    session.execute(update(Job).where(col(Job.id) == job_id).values(reproducibility=finite(record), heartbeat_at=utcnow()))
    session.commit()


def finish_job(*, session: Session, job_id: int, result: JobResult, attempt: int | None = None) -> bool:
    """running -> succeeded (with the summary columns filled), or cancelled when ``result.cancelled``.

    Returns False when the job was no longer running (e.g. recovered as interrupted meanwhile).
    """
    data = finite(result.model_dump(mode="json"))
    values: dict[str, Any] = {"result": data, "finished_at": utcnow()}
    if result.cancelled:
        values.update(status="cancelled", active_hash=None)
    else:
        values.update(status="succeeded", **finite(result.summary()))
        # A succeeded adaptive job gives up its dedup hold: the next identical submission runs again.
        values["active_hash"] = case((col(Job.schedule_kind).in_(NOT_REPEATABLE_KINDS), None), else_=Job.active_hash)
    res = session.execute(update(Job).where(*_run_is(job_id, attempt)).values(**values))
    session.commit()
    return res.rowcount == 1


def fail_job(*, session: Session, job_id: int, error: str, attempt: int | None = None) -> bool:
    """queued/running -> failed with ``error``; frees the spec for a new submission.
    ``attempt``: only the running job's run of that attempt (a worker failing its own job)."""
    conds = _run_is(job_id, attempt) if attempt is not None else [col(Job.id) == job_id, col(Job.status).in_(("queued", "running"))]
    res = session.execute(
        update(Job)
        .where(*conds)
        .values(status="failed", error=error, active_hash=None, finished_at=utcnow())
    )
    session.commit()
    return res.rowcount == 1


def request_cancel(*, session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is flagged (the worker stops within one step)."""
    res = session.execute(
        update(Job).where(col(Job.id) == job.id, col(Job.status) == "queued").values(status="cancelled", active_hash=None, finished_at=utcnow())
    )
    if res.rowcount != 1:
        res = session.execute(update(Job).where(col(Job.id) == job.id, col(Job.status) == "running").values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    if res.rowcount != 1:
        raise JobStateError(f"job {job.id} is {job.status}: only queued or running jobs can be cancelled")
    return job


RETRY_COLUMNS = ("name", "spec", "spec_hash", "arch", "dataset", "schedule_kind", "track", "recipe_hash", "frontier_key", "setting", "setting_key", "seed", "sweep_id")


def retry_job(*, session: Session, job: Job) -> Job:
    """A new attempt of a failed or cancelled job (the old job stays as it was). See ``retry_job_once``."""
    return retry_job_once(session=session, job=job)[0]


def retry_job_once(*, session: Session, job: Job) -> tuple[Job, bool]:
    """The retry of a failed or cancelled job: (the new job, True), or (the retry made before, False).

    A job is retried once: concurrent retries of one job make exactly one new job, and every other (and
    every later) retry answers that one; to go again, retry the retry. The transaction starts with a no-op
    UPDATE of the old job, which takes its row lock (PostgreSQL) or the write lock (SQLite): concurrent
    retries of one job run one after the other, and each sees the retry its predecessor committed.
    """
    for _ in range(5):
        locked = session.execute(
            update(Job).where(col(Job.id) == job.id, col(Job.status).in_(("failed", "cancelled"))).values(attempt=Job.attempt)
        )
        if locked.rowcount != 1:
            session.rollback()
            session.refresh(job)
            raise JobStateError(f"job {job.id} is {job.status}: only failed or cancelled jobs can be retried")
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


# ---------------------------------------------------------------- recovery: jobs whose run was lost

INTERRUPTED_LIMIT = " (started {attempts} times, the most DYNDS_MAX_ATTEMPTS={max_attempts} allows: not requeued again)"
# The name the embedded executor's runs carry (worker/runner.worker_name: host:pid:thread).
EXECUTOR_THREAD = "dynds-executor"


def give_up_run(
    *, session: Session, job_id: int, error: str, policy: str = "fail", max_attempts: int = 3, where: tuple = (), now: datetime | None = None
) -> str | None:
    """A running job whose run is lost (its process died): requeued or failed; returns its new status,
    or None when it was not running (or ``where`` no longer held) and nothing changed.

    policy "requeue": back to `queued` while ``attempts < max_attempts``, its points, progress, result
    and reproducibility record of the lost run deleted (the rerun starts from step 0 and writes its own);
    beyond that, and under policy "fail", failed with ``error`` (the limit said in it). A job whose
    cancel was requested is cancelled instead. One transaction: the conditional UPDATE of the job (which
    re-checks ``where``, e.g. the heartbeat still stale) before the points are deleted.
    """
    if policy not in ("fail", "requeue"):
        raise ValueError(f"policy must be 'fail' or 'requeue', got {policy!r}")
    row = session.execute(select(Job.attempts, Job.cancel_requested).where(col(Job.id) == job_id, col(Job.status) == "running")).first()
    if row is None:
        session.rollback()
        return None
    attempts, cancel = row
    now = now or utcnow()
    conds = [*_run_is(job_id, attempts), *where]
    if cancel:
        values: dict[str, Any] = dict(status="cancelled", active_hash=None, finished_at=now, error=error)
    elif policy == "requeue" and attempts < max_attempts:
        values = dict(status="queued", started_at=None, worker=None, progress=None, result=None, reproducibility=None, heartbeat_at=now)
    else:
        limit = INTERRUPTED_LIMIT.format(attempts=attempts, max_attempts=max_attempts) if policy == "requeue" else ""
        values = dict(status="failed", error=error + limit, active_hash=None, finished_at=now)
    res = session.execute(update(Job).where(*conds).values(**values))
    if res.rowcount != 1:
        session.rollback()
        return None
    if values["status"] == "queued":
        session.execute(delete(MetricPoint).where(col(MetricPoint.job_id) == job_id))
    session.commit()
    return values["status"]


def requeue_job(*, session: Session, job_id: int, attempt: int | None = None) -> bool:
    """A run stopped by its own process's shutdown (SIGTERM, not a fault): back to `queued` at once,
    and the attempt given back (``attempts - 1``: a deploy restarting workers must not use up a job's
    requeue limit). Its points and progress are deleted in the same transaction: the rerun writes its own
    from step 0. False when the job is no longer this run's."""
    res = session.execute(
        update(Job).where(*_run_is(job_id, attempt)).values(
            status="queued", started_at=None, worker=None, progress=None, result=None, reproducibility=None,
            heartbeat_at=utcnow(), attempts=case((col(Job.attempts) > 0, Job.attempts - 1), else_=0),
        )
    )
    if res.rowcount != 1:
        session.rollback()
        return False
    session.execute(delete(MetricPoint).where(col(MetricPoint.job_id) == job_id))
    session.commit()
    return True


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
    if policy not in ("fail", "requeue"):
        raise ValueError(f"policy must be 'fail' or 'requeue', got {policy!r}")
    stmt = select(Job.id).where(Job.status == "running")
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
        .where(col(Job.status) == "running", col(Job.heartbeat_at).is_not(None), col(Job.heartbeat_at) < cutoff)
        .order_by(col(Job.id))
    ).all()
    session.rollback()
    out: dict[int, str] = {}
    for job_id, worker, beat in stale:
        age = int((now - as_utc(beat)).total_seconds())
        error = STALE_ERROR.format(worker=worker or "unknown", age=age, id=job_id)
        status = give_up_run(session=session, job_id=job_id, error=error, policy=policy, max_attempts=max_attempts,
                             where=(col(Job.heartbeat_at) < cutoff,), now=now)
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
    rows = session.execute(
        select(Job.id, Job.created_at, Job.heartbeat_at)
        .where(col(Job.status) == "queued", sent <= now - older_than)
        .order_by(col(Job.created_at), col(Job.id)).limit(limit)
    ).all()
    session.rollback()
    due = []
    for job_id, created, last in rows:
        created, last = as_utc(created), as_utc(last)
        if last is None or now - last >= max(older_than, last - created):
            due.append(job_id)
    return due


def mark_dispatched(*, session: Session, job_ids: list[int], now: datetime | None = None) -> None:
    """Remember that these queued jobs were just sent (``jobs_to_redispatch``'s clock)."""
    if job_ids:
        session.execute(update(Job).where(col(Job.id).in_(job_ids), col(Job.status) == "queued").values(heartbeat_at=now or utcnow()))
    session.commit()


# ---------------------------------------------------------------- metrics and results


def metrics_after(
    *, session: Session, job_id: int, after: int = 0, limit: int = 1000, kind: str | None = None
) -> list[MetricPoint]:
    """Points with id > after, oldest first (keyset pagination on the (job_id, id) index)."""
    stmt = select(MetricPoint).where(MetricPoint.job_id == job_id, col(MetricPoint.id) > after)
    if kind is not None:
        stmt = stmt.where(MetricPoint.kind == kind)
    return list(session.exec(stmt.order_by(col(MetricPoint.id)).limit(limit)).all())


def metrics_json_rows(*, session: Session, job_id: int, after: int = 0, limit: int = 1000, kind: str | None = None) -> list[tuple[int, str]]:
    """``metrics_after`` as (id, the point as JSON) pairs: the stored values text is spliced in, not parsed.

    The hot path of dashboards polling a running job and of event streams: no ORM objects, no JSON round trip.
    """
    raw_values = cast(MetricPoint.values, Text)  # the stored JSON text (psycopg would parse a json column)
    stmt = select(MetricPoint.id, MetricPoint.run, MetricPoint.kind, MetricPoint.step, MetricPoint.epoch, MetricPoint.train_time_s, raw_values)
    stmt = stmt.where(MetricPoint.job_id == job_id, col(MetricPoint.id) > after)
    if kind is not None:
        stmt = stmt.where(MetricPoint.kind == kind)
    rows = session.execute(stmt.order_by(col(MetricPoint.id)).limit(limit)).all()
    dumps = json.dumps
    return [
        (i, f'{{"id":{i},"run":{dumps(run)},"kind":{dumps(k)},"step":{dumps(step)},"epoch":{dumps(epoch)},'
            f'"train_time_s":{dumps(t)},"values":{values}}}')
        for i, run, k, step, epoch, t, values in rows
    ]


def metrics_json_after(*, session: Session, job_id: int, after: int = 0, limit: int = 1000, kind: str | None = None) -> tuple[str, int]:
    """``metrics_json_rows`` as a ready JSON array, and the last id (``after`` when there is none)."""
    rows = metrics_json_rows(session=session, job_id=job_id, after=after, limit=limit, kind=kind)
    return "[" + ",".join(js for _, js in rows) + "]", rows[-1][0] if rows else after


SUMMARY_ROW_COLUMNS = (
    "id", "name", "track", "recipe_hash", "arch", "dataset", "schedule_kind", "setting_key", "seed",
    "time_saving", "acc_delta", "flop_saving", "equal_time_gap",
    "dynds_acc", "baseline_acc", "equal_time_acc", "dynds_time_s", "baseline_time_s",
    "time_saving_interleaved", "timing_noisy", "verdict",
)
_RECIPE_HASH = re.compile(r"[0-9a-f]{16}")


def _track_base(session: Session, track: str) -> str:
    """The stored track label (``track_of``) under which ``track`` (a label, a unique label with its
    `` · `` suffix, or a recipe hash) lies: what the SQL filter can select on."""
    if _RECIPE_HASH.fullmatch(track):
        stored = session.execute(select(Job.track).where(Job.recipe_hash == track).limit(1)).scalar()
        if stored is not None:
            return stored
    return track.split(" · ")[0]


def _summary_tuples(session: Session, conds: list) -> list[tuple]:
    columns = [getattr(Job, c) for c in SUMMARY_ROW_COLUMNS]
    stmt = select(*columns).where(Job.status == "succeeded", *conds)
    return [tuple(row) for row in session.execute(stmt.order_by(col(Job.id))).all()]


def recipes(*, session: Session, hashes: set[str]) -> dict[str, dict[str, Any]]:
    """The recipe (``recipe_of`` the stored spec) of each recipe hash: one stored spec parsed per hash."""
    if not hashes:
        return {}
    first_ids = select(func.min(Job.id)).where(col(Job.recipe_hash).in_(hashes)).group_by(Job.recipe_hash)
    rows = session.execute(select(Job.recipe_hash, Job.spec).where(col(Job.id).in_(first_ids))).all()
    return {h: recipe_of(spec) for h, spec in rows}


def _with_recipes(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = recipes(session=session, hashes={r["recipe_hash"] for r in rows if r.get("recipe_hash")})
    for row in rows:
        row["recipe"] = found.get(row["recipe_hash"])
    return rows


def summary_tuples(*, session: Session, track: str | None = None) -> list[tuple]:
    """One tuple per succeeded job (values in SUMMARY_ROW_COLUMNS order), oldest first, from the summary
    columns only: no result JSON is read, no dict is built (the export encodes these directly).

    ``track``: a track label (as the leaderboard names it) or a recipe hash; only that recipe's jobs.
    """
    if track is None:
        return _summary_tuples(session, [])
    tuples = _summary_tuples(session, [Job.track == _track_base(session, track)])
    rows = _with_recipes(session, [dict(zip(SUMMARY_ROW_COLUMNS, t)) for t in tuples])
    key = resolve_track(rows, track)
    return [t for t, r in zip(tuples, rows) if key is not None and (r["recipe_hash"] or f"track:{r['track']}") == key]


def summary_rows(*, session: Session, track: str | None = None, with_setting: bool = False) -> list[dict[str, Any]]:
    """One flat row per succeeded job, from the summary columns only (no result JSON is read), each with
    its ``recipe``. With ``track`` (a label or a recipe hash): the jobs under that track's stored label,
    every recipe sharing it included (so labels are made unique over the same recipes as the full board)."""
    conds = [] if track is None else [Job.track == _track_base(session, track)]
    rows = _with_recipes(session, [dict(zip(SUMMARY_ROW_COLUMNS, row)) for row in _summary_tuples(session, conds)])
    if with_setting and rows:
        # Equal setting_keys mean equal settings: parse one stored setting per key, not one per job.
        first_ids = select(func.min(Job.id)).where(Job.status == "succeeded").group_by(Job.setting_key)
        settings = dict(session.execute(select(Job.setting_key, Job.setting).where(col(Job.id).in_(first_ids))).all())
        for row in rows:
            row["setting"] = settings.get(row["setting_key"])
    return rows


def _steps(result: Any, run: str) -> int | None:
    if isinstance(result, str):
        result = json.loads(result)
    part = (result or {}).get(run) if isinstance(result, dict) else None
    return part.get("steps") if isinstance(part, dict) else None


def frontier_rows(*, session: Session, track: str) -> list[dict[str, Any]] | None:
    """The rows ``app.leaderboard.build_frontier`` needs for ``track``: the leaderboard rows under its
    label and every succeeded job of its frontier key (all budgets), the latter with the step counts of
    their runs (``dynds_steps``, ``baseline_steps``, ``equal_time_steps``, read from the stored results).
    None when no succeeded job has that track."""
    rows = summary_rows(session=session, track=track, with_setting=True)
    key = resolve_track(rows, track)
    if key is None:
        return None
    recipe = next((r["recipe"] for r in rows if r["recipe_hash"] == key and r.get("recipe")), None)
    if recipe is None:
        return rows
    fk = frontier_key(recipe)
    seen = {r["id"] for r in rows}
    more = [dict(zip(SUMMARY_ROW_COLUMNS, t)) for t in _summary_tuples(session, [Job.frontier_key == fk]) if t[0] not in seen]
    rows += _with_recipes(session, more)
    results = dict(session.execute(select(Job.id, Job.result).where(Job.status == "succeeded", Job.frontier_key == fk)).all())
    for row in rows:
        if row["id"] in results:
            res = results[row["id"]]
            row["frontier_key"] = fk
            row.update({f"{run}_steps": _steps(res, run) for run in ("dynds", "baseline", "equal_time")})
    return rows


def results_version(*, session: Session) -> tuple[int, Any]:
    """Changes whenever a job succeeds: the leaderboard cache key.

    Succeeded jobs never change state, so their count alone would do; the newest finish time guards
    against a deletion and an addition cancelling out. Two queries, because SQLite answers a lone
    max() from the (status, finished_at) index in microseconds but scans when count() rides along.
    """
    succeeded = col(Job.status) == "succeeded"
    count = session.execute(select(func.count()).select_from(Job).where(succeeded)).scalar_one()
    last = session.execute(select(func.max(Job.finished_at)).where(succeeded)).scalar_one()
    return count, last


# ---------------------------------------------------------------- artifacts and deleting jobs

from app.models import FINAL_STATES, Artifact  # noqa: E402  (this section's own names)



def finish_job_with_artifact(
    *, session: Session, job_id: int, result: JobResult, artifact: dict[str, Any], attempt: int | None = None
) -> Artifact | None:
    """``finish_job`` and the job's artifact row (``artifact``: Artifact's columns but job_id) in one
    transaction: the artifact exists exactly when the job succeeded with it. None when the job was no
    longer this run's (nothing written: the caller removes the file).

    A no-op UPDATE of the running job takes its row lock (PostgreSQL) or the write lock (SQLite) first,
    so nobody changes the job between the INSERT and finish_job's UPDATE, which commits both.
    """
    locked = session.execute(update(Job).where(*_run_is(job_id, attempt)).values(heartbeat_at=utcnow()))
    if locked.rowcount != 1:
        session.rollback()
        return None
    row = Artifact(job_id=job_id, **artifact)
    session.add(row)
    session.flush()
    if not finish_job(session=session, job_id=job_id, result=result, attempt=attempt):  # commits
        session.delete(row)  # cannot happen under the lock; never leave a row for a job that did not finish
        session.commit()
        return None
    return row


def job_artifacts(*, session: Session, job_id: int) -> list[Artifact]:
    return list(session.exec(select(Artifact).where(Artifact.job_id == job_id).order_by(col(Artifact.id))).all())


def job_artifact(*, session: Session, job_id: int, name: str) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name).order_by(col(Artifact.id).desc()).limit(1)
    return session.exec(stmt).first()


def expired_artifacts(
    *, session: Session, older_than: timedelta | None = None, keep_last: int | None = None, now: datetime | None = None
) -> list[Artifact]:
    """Artifacts past retention: created before ``now - older_than``, or not among the newest ``keep_last``."""
    found: dict[int, Artifact] = {}
    if older_than is not None:
        cutoff = (now or utcnow()) - older_than
        for a in session.exec(select(Artifact).where(col(Artifact.created_at) < cutoff)).all():
            found[a.id] = a
    if keep_last is not None:
        stmt = select(Artifact).order_by(col(Artifact.created_at).desc(), col(Artifact.id).desc()).offset(keep_last)
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
    locked = session.execute(update(Job).where(col(Job.id) == job_id, col(Job.status).in_(FINAL_STATES)).values(attempt=Job.attempt))
    if locked.rowcount != 1:
        status = session.execute(select(Job.status).where(col(Job.id) == job_id)).scalar()
        session.rollback()
        if status is None:
            return None
        raise JobStateError(f"job {job_id} is {status}: cancel it and wait until it stops before deleting it")
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


# ---------------------------------------------------------------- job logs (app/logs.py writes them)

from app.models import JobLog  # noqa: E402  (this section's own names)


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
    stmt = select(JobLog.seq, JobLog.created_at, JobLog.level, JobLog.logger, JobLog.message).where(
        JobLog.job_id == job_id, col(JobLog.seq) > after)
    if min_level is not None:
        order = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        stmt = stmt.where(col(JobLog.level).in_(order[order.index(min_level.upper()):]))
    rows = session.execute(stmt.order_by(col(JobLog.seq), col(JobLog.id)).limit(limit)).all()
    return [{"seq": seq, "created_at": iso_utc(created), "level": level, "logger": logger, "message": message}
            for seq, created, level, logger, message in rows]
