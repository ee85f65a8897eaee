"""Sweeps: a grid over spec fields, expanded into one job per point (all validated before any is queued)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from app import crud
from app.api.deps import MAX_ROW_ID, IdParam, ReadAuthDep, SessionDep, SettingsDep, WriteAuthDep
from app.api.errors import problems
from app.api.routes.jobs import fleet_warnings, start
from app.api.sweep_grid import effective_grid, sweep_specs
from app.models import JobListItem, Sweep, SweepCreate, SweepPublic

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def _public(session, sweep: Sweep) -> SweepPublic:
    jobs = crud.sweep_jobs(session=session, sweep=sweep)
    return SweepPublic(id=sweep.id, name=sweep.name, count=sweep.count, jobs=[JobListItem.from_job(j, with_result=False) for j in jobs])


@router.post("", response_model=SweepPublic, status_code=status.HTTP_201_CREATED, responses=problems(503))
def create_sweep(body: SweepCreate, request: Request, session: SessionDep, settings: SettingsDep, _: WriteAuthDep) -> SweepPublic:
    if not isinstance(body.base, dict):
        sweep_specs(body.base, {}, settings)  # the 422 for a base that is not a mapping
    # Seeds and the preset become grid keys: the stored grid says what was expanded.
    grid = effective_grid(body.base, body.grid, seeds=body.seeds, preset=body.preset)
    specs = sweep_specs(body.base, grid, settings)

    # A job asking for train.<field> got it from the grid when the grid sets it, else from the base.
    def where(field: str) -> list:
        key = f"train.{field}"
        return ["body", "grid", key] if key in grid else ["body", "base", "train", field]

    warnings = fleet_warnings(session, settings, specs, where=where)
    # One transaction: every job of the sweep is queued, or none is.
    sweep, jobs = crud.create_sweep(session=session, name=body.name, base=body.base, grid=grid, specs=specs, force=body.force)
    for job, created in jobs:
        if created:
            start(request, session, job)
    out = _public(session, sweep)
    out.warnings = warnings
    return out


@router.get("/{sweep_id}", response_model=SweepPublic, responses=problems(404))
def read_sweep(sweep_id: IdParam, session: SessionDep, _: ReadAuthDep) -> SweepPublic:
    sweep = session.get(Sweep, sweep_id) if sweep_id <= MAX_ROW_ID else None
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"sweep {sweep_id} not found")
    return _public(session, sweep)
