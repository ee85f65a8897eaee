"""Workers: the fleet as it registered (app/fleet/registry.py), live ones and those recently gone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ReadAuthDep, SessionDep, SettingsDep
from app.fleet import registry
from app.models import WorkerPublic, WorkersPublic

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkersPublic)
def read_workers(
    session: SessionDep,
    settings: SettingsDep,
    _: ReadAuthDep,
    alive: Annotated[bool | None, Query(description="true: live workers only; false: gone ones only")] = None,
) -> WorkersPublic:
    """Each worker with its host, pid, hardware, queues, the jobs it runs and when it was last seen. A worker is
    alive while its heartbeat is younger than DYNDS_WORKER_TIMEOUT_S and it has not stopped; gone ones are
    listed while seen within DYNDS_WORKER_HISTORY_S."""
    rows = registry.list_workers(session=session, timeout_s=settings.worker_timeout_s, history_s=settings.worker_history_s)
    data = [WorkerPublic.from_worker(w, alive=live) for w, live in rows if alive is None or live is alive]
    return WorkersPublic(data=data, count=len(data), live=sum(live for _, live in rows), timeout_s=settings.worker_timeout_s)
