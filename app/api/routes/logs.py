"""A job's log lines, as the process that ran it logged them (INFO and above; app/logs.py stores them).

    GET /api/v1/jobs/12/logs?after=0&limit=500      -> {"data": [{"seq": 1, "level": "INFO", ...}], "next_cursor": 7}

Paged like /metrics: ``after`` is the last ``seq`` seen (``next_cursor`` of the previous page; it stays
``after`` when nothing is new), so a client following a running job asks again with it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import select

from app import crud
from app.api.deps import MAX_ROW_ID, CursorQuery, IdParam, ReadAuthDep, SessionDep
from app.api.errors import problems
from app.models import Job, JobLogsPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}/logs", response_model=JobLogsPublic, responses=problems(404))
def read_logs(
    job_id: IdParam,
    session: SessionDep,
    _: ReadAuthDep,
    after: CursorQuery = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    level: Literal["debug", "info", "warning", "error", "critical"] | None = None,
) -> JobLogsPublic:
    if job_id > MAX_ROW_ID:  # a valid id no job can have (the column is narrower): not found, no query
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    lines = crud.job_logs_after(session=session, job_id=job_id, after=after, limit=limit, min_level=level)
    # Lines prove the job exists; only an empty page needs the lookup.
    if not lines and session.exec(select(Job.id).where(Job.id == job_id)).first() is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    return JobLogsPublic.model_validate({"data": lines, "next_cursor": lines[-1]["seq"] if lines else after})
