"""What routes get injected: the session, the settings, and the token checks.

    @router.post("/jobs")
    def submit(body: JobCreate, session: SessionDep, _: WriteAuthDep): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from app.core.config import Settings
from app.security import has_tokens, verify_token


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


def _check_token(request: Request, session: Session, what: str) -> None:
    if not has_tokens(session=session):
        return  # no token defined yet: the server is open (a fresh, local install)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"{what} need an API token: send 'Authorization: Bearer <token>' "
            "(an admin creates one with `dynds token create --name NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if verify_token(session=session, token=token.strip()) is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the API token is not valid (unknown or revoked)")


async def require_write_token(request: Request, session: SessionDep) -> None:
    await run_in_threadpool(_check_token, request, session, "writes")


async def require_read_token(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    if settings.read_requires_token:
        await run_in_threadpool(_check_token, request, session, "reads on this server")


WriteAuthDep = Annotated[None, Depends(require_write_token)]
ReadAuthDep = Annotated[None, Depends(require_read_token)]
