"""Jobs: submit, list, inspect, cancel, retry, and follow their metrics (polling or server-sent events)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from sqlmodel import Session, select

from app import crud
from app.api import sse
from app.api.deps import MAX_INT64, MAX_ROW_ID, CursorQuery, IdParam, ReadAuthDep, SessionDep, SettingsDep, WriteAuthDep
from app.api.errors import problems
from app.api.spec_policy import parse_spec_request
from app.artifacts import remove_checkpoints
from app.core.config import Settings
from app.dispatch import dispatch
from app.fleet import registry, routing
from app.models import Job, JobCreate, JobPublic, JobsPublic, JobSubmitted, MetricsPublic
from dynds_core.spec import JobSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])


def not_found(job_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")


def job_or_404(session: Session, job_id: int) -> Job:
    job = crud.get_job(session=session, job_id=job_id) if job_id <= MAX_ROW_ID else None
    if job is None:
        raise not_found(job_id)
    return job


def fleet_warnings(
    session: Session, settings: Settings, specs: Sequence[JobSpec | dict], *, where: Callable[[str], list], refuse: bool | None = None
) -> list[str]:
    """One warning per queue the specs ask for that no live worker serves now (app.fleet.routing); a 422 instead
    for a job that asks for hardware where the server refuses those (DYNDS_REFUSE_UNSERVED, and always in
    embedded mode, where no other worker will come). ``where(field)``: the error location of train.<field>.
    With DYNDS_DEVICES set, the operator's word stands for the fleet (spec_policy checked the specs against it)."""
    if settings.devices is not None:
        return []
    refuse = (settings.refuse_unserved or settings.embedded) if refuse is None else refuse
    offers = registry.live_offers(session=session, timeout_s=settings.worker_timeout_s)
    first_of: dict[str, JobSpec | dict] = {}  # one answer per queue
    for spec in specs:
        first_of.setdefault(routing.job_queue(spec, settings.queue), spec)
    warnings, errors = [], []
    for queue, spec in first_of.items():
        asked = routing.requested(spec) is not None
        if not asked and settings.embedded:
            continue  # the default queue of an embedded server is its own executor's
        reason = routing.unserved_reason(queue, offers)
        if reason is None:
            continue
        if refuse and asked:
            field = "hardware" if getattr(spec.train, "hardware", "auto") != "auto" else "device"
            why = "embedded mode: jobs run on this server's hardware" if settings.embedded else "DYNDS_REFUSE_UNSERVED"
            errors.append({
                "loc": where(field), "type": "value_error.unserved", "input": getattr(spec.train, field),
                "msg": f"{reason}; this server refuses such jobs ({why}): ask for hardware a live worker has, or auto",
            })  # fmt: skip
        else:
            warnings.append(f"{reason}; the job waits in the queue until a worker that serves it is alive")
    if errors:
        raise RequestValidationError(errors)
    return warnings


def start(request: Request, session: Session, job: Job) -> None:
    """Hand a new job to the dispatcher, for the queue its spec asks for; a dispatcher that cannot take it
    fails the job (503)."""
    try:
        dispatch(job.id, request.app.state.dispatcher, queue=routing.job_queue(job.spec, request.app.state.settings.queue))
    except Exception as exc:  # the broker is down: the job must not sit queued forever
        crud.fail_job(session=session, job_id=job.id, error=f"could not dispatch the job: {exc}")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"job {job.id} could not be dispatched: {exc}") from None


@router.post(
    "",
    response_model=JobSubmitted,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": JobSubmitted, "description": "an identical job (deduplicated) or the job of a repeated Idempotency-Key"},
        **problems(503),
    },
)
def submit_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    _: WriteAuthDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobSubmitted:
    """``warnings``: e.g. that no live worker serves the hardware the job asks for (it waits in its queue)."""
    spec = parse_spec_request(body.spec, settings)
    warnings = fleet_warnings(session, settings, [spec], where=lambda field: ["body", "spec", "train", field])
    try:
        job, outcome = crud.submit_job(session=session, spec=spec, force=body.force, idempotency_key=idempotency_key)
    except crud.IdempotencyKeyReused as exc:
        raise RequestValidationError([{"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "value_error.idempotency_key"}]) from None
    if outcome == "created":
        start(request, session, job)
    else:
        response.status_code = status.HTTP_200_OK
    out = JobSubmitted.from_job(job, deduplicated=outcome == "deduplicated")
    out.warnings = warnings if job.status == "queued" else []
    return out


@router.get("", response_model=JobsPublic)
def read_jobs(
    session: SessionDep,
    _: ReadAuthDep,
    status_: Annotated[Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query(alias="status")] = None,
    arch: str | None = None,
    dataset: str | None = None,
    schedule_kind: str | None = None,
    track: str | None = None,
    hardware_key: Annotated[str | None, Query(max_length=300, description="what the jobs ran on (a hardware key, or unknown)")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=2000, description="the previous page's next_cursor (same order): fast at any depth, stable under inserts"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64, description="rows to skip (older clients): deep pages are slow; prefer cursor")] = 0,
    order: Annotated[
        Literal[crud.JOB_ORDERS],  # type: ignore[valid-type]
        Query(description="a column, ascending; with a leading - descending (e.g. -time_saving); jobs without a value last either way"),
    ] = "-created_at",
) -> Response:
    """A page of jobs, newest first by default. Page with ``cursor`` (each page's ``next_cursor``, null on the last):
    keyset pagination on (order column, id), as fast at page 20,000 as at page 1. ``count`` is exact up to 10,000
    matching jobs; past that it is PostgreSQL's estimate and ``count_exact`` is false (SQLite counts exactly)."""
    if cursor and offset:
        raise RequestValidationError([{"loc": ["query", "offset"], "type": "value_error", "msg": "give cursor or offset, not both", "input": offset}])
    try:
        data, count, exact, next_cursor = crud.list_jobs_json(
            session=session,
            status=status_,
            arch=arch,
            dataset=dataset,
            schedule_kind=schedule_kind,
            track=track,
            hardware_key=hardware_key,
            q=q,
            limit=limit,
            offset=offset,
            order=order,
            cursor=cursor,
        )
    except crud.CursorError as exc:
        raise RequestValidationError([{"loc": ["query", "cursor"], "type": "value_error.cursor", "msg": str(exc), "input": cursor}]) from None
    # Already JSON in the JobsPublic shape (response_model documents it; validating it again would double the cost).
    tail = f'"count":{count},"count_exact":{"true" if exact else "false"},"next_cursor":{json.dumps(next_cursor)}'
    return Response(f'{{"data":{data},{tail}}}', media_type="application/json")


@router.get("/{job_id}", response_model=JobPublic, responses=problems(404))
def read_job(job_id: IdParam, session: SessionDep, _: ReadAuthDep) -> JobPublic:
    return JobPublic.from_job(job_or_404(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=problems(404, 409))
def cancel_job(job_id: IdParam, session: SessionDep, settings: SettingsDep, _: WriteAuthDep) -> JobPublic:
    job = job_or_404(session, job_id)
    try:
        job = crud.request_cancel(session=session, job=job)
    except crud.JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if job.status == "cancelled":  # a queued job (perhaps interrupted, waiting to resume) ended here
        remove_checkpoints(settings, job.id)
    return JobPublic.from_job(job)


@router.post(
    "/{job_id}/retry",
    response_model=JobSubmitted,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": JobSubmitted, "description": "the job's earlier retry (deduplicated)"},
        **problems(404, 409, 503),
    },
)
def retry_job(job_id: IdParam, request: Request, response: Response, session: SessionDep, settings: SettingsDep, _: WriteAuthDep) -> JobSubmitted:
    """201 with the new job; a job retried before answers that retry (200, deduplicated): concurrent
    retries of one job make one new job."""
    job = job_or_404(session, job_id)
    try:
        new, created = crud.retry_job_once(session=session, job=job)
    except crud.JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if not created:
        response.status_code = status.HTTP_200_OK
        return JobSubmitted.from_job(new, deduplicated=True)
    start(request, session, new)
    out = JobSubmitted.from_job(new)
    # A retry is never refused: its spec was accepted once, and the user asked for it again.
    out.warnings = fleet_warnings(session, settings, [new.spec], where=lambda field: ["train", field], refuse=False)
    return out


@router.get("/{job_id}/metrics", response_model=MetricsPublic, responses=problems(404))
def read_metrics(
    job_id: IdParam,
    session: SessionDep,
    _: ReadAuthDep,
    after: CursorQuery = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    kind: Literal["step", "epoch"] | None = None,
) -> Response:
    if job_id > MAX_ROW_ID:
        raise not_found(job_id)
    data, cursor = crud.metrics_json_after(session=session, job_id=job_id, after=after, limit=limit, kind=kind)
    # Points prove the job exists; only an empty page needs the lookup (polling clients get one query).
    if data == "[]" and session.exec(select(Job.id).where(Job.id == job_id)).first() is None:
        raise not_found(job_id)
    return Response(f'{{"data":{data},"next_cursor":{cursor}}}', media_type="application/json")


# ---------------------------------------------------------------- server-sent events


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **problems(404),
        503: {"description": "too many event streams open in this process (Retry-After says when to try again)"},
    },
)
async def job_events(
    job_id: IdParam,
    request: Request,
    _: ReadAuthDep,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_INT64)] = None,
    after: CursorQuery = 0,
) -> StreamingResponse:
    """Live `status` and `metric` events, then `end` once the job is final. `Last-Event-ID` resumes.

    History is replayed in pages with back-pressure; see app/api/sse.py for what bounds a stream's cost.
    """
    if job_id > MAX_ROW_ID:
        raise not_found(job_id)
    return await sse.job_event_stream(request.app, job_id, last_event_id if last_event_id is not None else after)
