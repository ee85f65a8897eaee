"""The gate: one call that decides whether a setting holds up over seeds, submitting the seeds it still needs.

POST /gate with a spec and a requirement answers where the decision stands (app/gate.py): "pass", "fail",
"undecided" (seeds queued or running: ask again), "inconclusive" (max_seeds reached) or "error" (a seed's job
failed). Asking again submits nothing twice: the seeds' jobs are found by their cell and seed, and a new one is
made only for a planned seed that has none (through the ordinary, deduplicated submission).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app import crud
from app.api.deps import SessionDep, SettingsDep, WriteAuthDep
from app.api.errors import problems
from app.api.routes.jobs import fleet_warnings, start
from app.api.spec_policy import parse_spec_request
from app.gate import DEFAULT_MAX_ACC_DROP, DEFAULT_MAX_SEEDS, DEFAULT_MIN_SEEDS, GatePlan, GateState, cell_rows, gate_state, needed_flags, seed_spec
from app.leaderboard import recipe_hash, setting_key
from app.models import SpecBody
from dynds_core.sequential import ALPHA, n_looks

router = APIRouter(prefix="/gate", tags=["gate"])


class GateRequest(BaseModel):
    """POST /gate: the spec (as POST /jobs takes it) and what must hold over its seeds."""

    model_config = ConfigDict(extra="forbid")
    spec: SpecBody
    require: Literal["worth-it", "no-worse"] = Field(
        description="worth-it: the equal-time gap's interval lies above 0; no-worse: the accuracy delta's interval lies above -max_acc_drop"
    )
    max_acc_drop: float | None = Field(
        default=None, ge=0, le=100, description=f"no-worse only: the accuracy drop allowed, in pt (default {DEFAULT_MAX_ACC_DROP})"
    )
    min_seeds: int = Field(default=DEFAULT_MIN_SEEDS, ge=2, le=50, description="seeds of the first look (the first look's seeds run at once)")
    max_seeds: int | None = Field(
        default=None,
        ge=2,
        le=50,
        description="the most seeds the gate runs, one more after each look that did not decide (default: 5, or min_seeds if larger)",
    )

    @field_validator("max_acc_drop")
    @classmethod
    def _only_for_no_worse(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("require") == "worth-it":
            raise ValueError("max_acc_drop applies to require: no-worse (worth-it compares with the equal-time baseline, at 0)")
        return value

    @field_validator("max_seeds")
    @classmethod
    def _at_least_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_seeds")
        if value is not None and low is not None and value < low:
            raise ValueError(f"max_seeds must be >= min_seeds ({low})")
        return value


class GateSeed(BaseModel):
    """One planned seed: ``done`` (its figure is ``value``), ``queued``/``running``, ``failed`` (its newest job ended
    without a result), ``elsewhere`` (finished on other hardware than the cell's), ``missing`` or ``not_needed``."""

    seed: int
    status: Literal["done", "running", "queued", "failed", "elsewhere", "missing", "not_needed"]
    job_ids: list[int]
    value: float | None
    hardware_key: str | None


class GateLook(BaseModel):
    """One look at the first ``n_seeds`` finished seeds: mean and corrected interval (pt), and what it decided."""

    n_seeds: int
    mean: float
    ci: list[float]
    outcome: Literal["pass", "fail"] | None


class GatePublic(BaseModel):
    """Where the decision stands (docs/api.md, "Gate"). ``ci`` is the last look's interval at ``level`` (95 % over
    all the planned looks together); ``ci95`` the plain 95 % interval of the same seeds, as the leaderboard shows it."""

    decision: Literal["pass", "fail", "undecided", "inconclusive", "error"]
    reason: str
    require: Literal["worth-it", "no-worse"]
    metric: Literal["equal_time_gap", "acc_delta"]
    threshold: float
    max_acc_drop: float | None
    min_seeds: int
    max_seeds: int
    alpha: float
    level: float
    looks_planned: int
    looks: list[GateLook]
    n_seeds: int
    mean: float | None
    ci: list[float] | None
    ci95: list[float] | None
    time_saving_mean: float | None
    recipe_hash: str
    setting_key: str
    hardware_key: str | None
    seeds: list[GateSeed]
    submitted_job_ids: list[int]
    noisy_job_ids: list[int]
    notes: list[str]
    warnings: list[str]


def _public(state: GateState, *, h: str, key: str, submitted: list[int], notes: list[str], warnings: list[str]) -> GatePublic:
    plan, last = state.plan, state.sequence.last
    return GatePublic(
        decision=state.decision,
        reason=state.reason,
        require=plan.require,
        metric=plan.metric,  # type: ignore[arg-type]
        threshold=plan.threshold,
        max_acc_drop=plan.max_acc_drop if plan.require == "no-worse" else None,
        min_seeds=plan.min_seeds,
        max_seeds=plan.max_seeds,
        alpha=ALPHA,
        level=state.sequence.level,
        looks_planned=n_looks(plan.min_seeds, plan.max_seeds),
        looks=[GateLook(n_seeds=lk.n_seeds, mean=lk.mean, ci=list(lk.ci), outcome=lk.outcome) for lk in state.sequence.looks],
        n_seeds=state.n_seeds,
        mean=last.mean if last else None,
        ci=list(last.ci) if last else None,
        ci95=list(state.ci95) if state.ci95 else None,
        time_saving_mean=state.time_saving_mean,
        recipe_hash=h,
        setting_key=key,
        hardware_key=state.hardware_key,
        seeds=[GateSeed(seed=s.seed, status=s.status, job_ids=s.job_ids, value=s.value, hardware_key=s.hardware_key) for s in state.seeds],
        submitted_job_ids=submitted,
        noisy_job_ids=state.noisy_job_ids,
        notes=notes,
        warnings=warnings,
    )


@router.post("", response_model=GatePublic, responses=problems(503))
def gate(body: GateRequest, request: Request, session: SessionDep, settings: SettingsDep, _: WriteAuthDep) -> GatePublic:
    """Decide, over seeds, whether the spec's DynDS setting is worth it (or no worse); submit the seeds still needed.

    Poll it until ``decision`` is not "undecided": each call is idempotent (no seed is submitted twice)."""
    spec = parse_spec_request(body.spec, settings)
    plan = GatePlan(
        require=body.require,
        min_seeds=body.min_seeds,
        max_seeds=body.max_seeds if body.max_seeds is not None else max(DEFAULT_MAX_SEEDS, body.min_seeds),
        first_seed=spec.train.seed,
        max_acc_drop=body.max_acc_drop if body.max_acc_drop is not None else DEFAULT_MAX_ACC_DROP,
    )
    if plan.seeds[-1] > 2**31 - 1:
        raise RequestValidationError([{"loc": ["body", "max_seeds"], "type": "value_error", "msg": "train.seed + max_seeds passes the largest seed"}])
    canonical = spec.canonical()
    notes = [f"{flag} set to true: {body.require} needs it" for flag in needed_flags(body.require) if not canonical.get(flag)]
    h, key = recipe_hash(canonical), setting_key(canonical["dynds"])

    def state() -> GateState:
        return gate_state(plan, cell_rows(session=session, recipe_hash=h, setting_key=key, seeds=plan.seeds))

    now = state()
    submitted: list[int] = []
    warnings: list[str] = []
    if now.to_submit:
        specs = [parse_spec_request(seed_spec(canonical, seed, body.require), settings) for seed in now.to_submit]
        warnings = fleet_warnings(session, settings, specs, where=lambda field: ["body", "spec", "train", field])
        for seed_job_spec in specs:
            job, outcome = crud.submit_job(session=session, spec=seed_job_spec)
            if outcome == "created" and job.id is not None:
                start(request, session, job)
                submitted.append(job.id)
        now = state()
    return _public(now, h=h, key=key, submitted=submitted, notes=notes, warnings=warnings)
