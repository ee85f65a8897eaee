"""A job's artifacts (its trained weights) and deleting a job with its files.

GET    /jobs/{id}/artifacts            the job's files: name, size, sha256, loading recipe, download URL
GET    /jobs/{id}/artifacts/model.pt   the trained DynDS model's state_dict (torch.save; ETag: its sha256)
DELETE /jobs/{id}                      a finished job, its metric points, artifacts (rows and files)
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Header, HTTPException, Response, status
from fastapi.responses import FileResponse

from app import crud
from app.api.deps import IdParam, ReadAuthDep, SessionDep, SettingsDep, WriteAuthDep
from app.api.routes.jobs import job_or_404
from app.artifacts import ArtifactError, remove_job_files, resolve
from app.core.config import Settings
from app.models import Artifact, ArtifactPublic, ArtifactsPublic

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["artifacts"])
API_PREFIX = "/api/v1"


def public(a: Artifact) -> ArtifactPublic:
    return ArtifactPublic(
        id=a.id,
        job_id=a.job_id,
        name=a.name,
        size_bytes=a.size_bytes,
        sha256=a.sha256,
        recipe=a.recipe,
        created_at=a.created_at,
        download=f"{API_PREFIX}/jobs/{a.job_id}/artifacts/{a.name}",
    )


@router.get("/{job_id}/artifacts", response_model=ArtifactsPublic)
def read_artifacts(job_id: IdParam, session: SessionDep, _: ReadAuthDep) -> ArtifactsPublic:
    job_or_404(session, job_id)
    rows = crud.job_artifacts(session=session, job_id=job_id)
    return ArtifactsPublic(data=[public(a) for a in rows], count=len(rows))


def _no_artifact(job_id: int, name: str, job_status: str) -> HTTPException:
    why = {
        "queued": "it has not run yet",
        "running": "it is still running",
        "failed": "it failed",
        "cancelled": "it was cancelled",
    }.get(
        job_status,
        "none was stored (over DYNDS_MAX_ARTIFACT_BYTES, deleted by retention, or it ran before the server kept weights; the worker log says which)",
    )
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} has no {name}: {why}")


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file; ETag is its sha256"},
        304: {"description": "If-None-Match named this file's sha256"},
        404: {"description": "no such job, or the job has no such artifact (the detail says why)"},
    },
)
def download_artifact(
    job_id: IdParam,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    _: ReadAuthDep,
    if_none_match: str | None = Header(default=None),
) -> Response:
    job = job_or_404(session, job_id)
    artifact = crud.job_artifact(session=session, job_id=job_id, name=name)
    if artifact is None:
        raise _no_artifact(job_id, name, job.status)
    etag = f'"{artifact.sha256}"'
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    try:
        path = resolve(settings, artifact.path)
    except ArtifactError:
        path = None
    if path is None or not path.is_file():
        log.error("job %s: artifact %s is recorded but its file %s is missing under %s", job_id, name, artifact.path, settings.artifact_dir)
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=(
                f"job {job_id}'s {name} is recorded but its file is missing on this server "
                "(DYNDS_ARTIFACT_DIR must be the same shared storage for the API and the workers)"
            ),
        )
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"job-{job_id}-{name}",
        headers={"ETag": etag, "Cache-Control": "private, no-cache", "X-Content-SHA256": artifact.sha256},
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "no such job"},
        409: {"description": "the job is queued or running"},
    },
)
def delete_job(job_id: IdParam, session: SessionDep, settings: SettingsDep, _: WriteAuthDep) -> Response:
    """Delete a finished job: its metric points, artifacts (rows, then files) and the job itself."""
    job_or_404(session, job_id)
    try:
        artifacts = crud.delete_job(session=session, job_id=job_id)
    except crud.JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if artifacts is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    _remove_files(settings, job_id, artifacts)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _remove_files(settings: Settings, job_id: int, artifacts: list[Artifact]) -> None:
    try:
        remove_job_files(settings, job_id, artifacts)
    except Exception:  # the rows are gone: the files are orphans at worst, never served
        log.warning("job %s deleted; its artifact files were not all removed", job_id, exc_info=True)
