"""What routes get injected: the session, the settings, and the token checks.

@router.post("/jobs")
def submit(body: JobCreate, session: SessionDep, _: WriteAuthDep): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.datastructures import Headers

from app.api.errors import SCOPE_AUTHED
from app.core.config import Settings
from app.security import has_tokens, verify_token, writes_closed

READ_METHODS = ("GET", "HEAD")


# The light dependencies are async on purpose: FastAPI runs a sync dependency in the thread pool, and
# those thread hops were a third of a small request's cost. A Session connects lazily, so making one
# here does no I/O; the queries run in the (sync) route, in the thread pool.
async def get_db(request: Request) -> AsyncIterator[Session]:
    engine = request.app.state.read_engine if request.method in READ_METHODS else request.app.state.engine
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()  # returns the connection to the pool (a local rollback at most)


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="an API token (`dynds token create --name NAME`); needed for writes "
    "once the server has any token, and for reads when DYNDS_READ_REQUIRES_TOKEN=true",
)


def _check_token(request: Request | None, session: Session, what: str, headers=None) -> None:
    if not has_tokens(session=session):
        return  # no token was ever created: the server is open (a fresh, local install)
    if headers is None:
        headers = request.headers
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        closed = (
            " (writes are closed: the last token was revoked; no token is valid until a new one is created)" if writes_closed(session=session) else ""
        )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"{what} need an API token: send 'Authorization: Bearer <token>' "
            f"(an admin creates one with `dynds token create --name NAME`){closed}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if verify_token(session=session, token=token.strip()) is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the API token is not valid (unknown or revoked)")


def check_token(engine, scope, what: str) -> None:
    """The token check for a raw ASGI request (app.api.errors.AuthGate runs it before the body is read)."""
    with Session(engine, expire_on_commit=False) as session:
        _check_token(None, session, what, headers=Headers(scope=scope))


def _already_checked(request: Request) -> bool:
    return bool(request.scope.get(SCOPE_AUTHED))


async def require_write_token(request: Request, session: SessionDep, _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]) -> None:
    # AuthGate has checked it already (before the body was read); this covers an app mounted without it.
    if not _already_checked(request):
        await run_in_threadpool(_check_token, request, session, "writes")


async def require_read_token(
    request: Request, session: SessionDep, settings: SettingsDep, _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
) -> None:
    if settings.read_requires_token and not _already_checked(request):
        await run_in_threadpool(_check_token, request, session, "reads on this server")


WriteAuthDep = Annotated[None, Depends(require_write_token)]
ReadAuthDep = Annotated[None, Depends(require_read_token)]

# Integer parameters, bounded so no database sees a number it cannot hold (SQLite and PostgreSQL
# BIGINT are signed 64-bit): ids from 1, offsets and cursors from 0.
MAX_INT64 = 2**63 - 1
IdParam = Annotated[int, Path(ge=1, le=MAX_INT64, description="an id (1 .. 2^63-1)")]
# Job and sweep ids are INTEGER columns (32-bit on PostgreSQL): an id past this names nothing (a 404),
# and is never sent to the database (PostgreSQL would refuse the comparison as out of range).
MAX_ROW_ID = 2**31 - 1
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_INT64)]
CursorQuery = Annotated[int, Query(ge=0, le=MAX_INT64, description="a metric id: points after it")]
