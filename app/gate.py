"""The gate: does a DynDS setting hold up on its recipe and hardware over seeds? One decision, from the jobs.

    plan = GatePlan(require="worth-it", min_seeds=3, max_seeds=5, first_seed=0)
    rows = cell_rows(session=session, recipe_hash=h, setting_key=k, seeds=plan.seeds)
    state = gate_state(plan, rows)      # decision "pass" | "fail" | "undecided" | "inconclusive" | "error"
    state.to_submit                     # the planned seeds that need a job now (POST /gate submits them)

``worth-it``: the equal-time gap (DynDS's accuracy minus that of the baseline trained for the same time, pt)
lies above 0, the leaderboard's "beats_equal_time". ``no-worse``: the accuracy delta against the paired baseline
lies above ``-max_acc_drop``. Seeds are planned: ``first_seed``, ``first_seed + 1``, ... up to ``max_seeds``
of them; the first ``min_seeds`` run at once, then one more after each look that did not decide. Each look's
interval is corrected for looking again (dynds_core.sequential: Bonferroni over the planned looks), so the gate
decides wrongly with probability at most 5 %.

A finished job of the same cell (recipe hash, setting key, seed) is reused whoever submitted it, as long as it
ran the comparison the gate needs; repeated runs of one seed are averaged (app.leaderboard.per_seed). Results
from unlike hardware are never pooled: the cell's hardware is the one most of its finished seeds ran on.
Nothing is stored: asking again reads the jobs again, and finds the seeds it submitted before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import Session, col, select

from app.leaderboard.cells import per_seed, untrusted
from app.models import Job
from dynds_core.sequential import ALPHA, SequentialDecision, n_looks, sequential_decision
from dynds_core.stats import mean_ci95

Require = Literal["worth-it", "no-worse"]
REQUIREMENTS: tuple[str, ...] = ("worth-it", "no-worse")
Decision = Literal["pass", "fail", "undecided", "inconclusive", "error"]
SeedStatus = Literal["done", "running", "queued", "failed", "elsewhere", "missing", "not_needed"]
DEFAULT_MAX_ACC_DROP = 0.5  # pt, as the leaderboard's bound
DEFAULT_MIN_SEEDS, DEFAULT_MAX_SEEDS = 3, 5
LIVE = ("queued", "running")
GIVEN_UP = ("failed", "cancelled")


@dataclass(frozen=True)
class GatePlan:
    """What the gate asks (``require``, ``max_acc_drop`` in pt for no-worse) and the seeds it may run."""

    require: Require
    min_seeds: int = DEFAULT_MIN_SEEDS
    max_seeds: int = DEFAULT_MAX_SEEDS
    first_seed: int = 0
    max_acc_drop: float = DEFAULT_MAX_ACC_DROP

    @property
    def metric(self) -> str:
        """The per-job summary figure the gate judges."""
        return "equal_time_gap" if self.require == "worth-it" else "acc_delta"

    @property
    def threshold(self) -> float:
        return 0.0 if self.require == "worth-it" else -self.max_acc_drop

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.max_seeds))


def seed_spec(canonical: dict[str, Any], seed: int, require: str) -> dict[str, Any]:
    """The spec the gate runs for one planned seed: ``canonical`` with ``train.seed`` and the comparison the
    requirement needs switched on (the paired baseline; for worth-it also the equal-time baseline)."""
    spec = {**canonical, "train": {**canonical["train"], "seed": seed}, "baseline": True}
    if require == "worth-it":
        spec["equal_time_baseline"] = True
    return spec


def needed_flags(require: str) -> list[str]:
    """The spec switches a job needs to answer the gate."""
    return ["baseline", "equal_time_baseline"] if require == "worth-it" else ["baseline"]


def cell_rows(*, session: Session, recipe_hash: str, setting_key: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Every job of the cell (recipe hash, setting key) with one of ``seeds``, oldest first, as flat rows."""
    columns = (Job.id, Job.seed, Job.status, Job.hardware_key, Job.acc_delta, Job.equal_time_gap, Job.time_saving, Job.timing_noisy,
               Job.contended, Job.error, Job.spec)  # fmt: skip
    stmt = select(*columns).where(Job.recipe_hash == recipe_hash, Job.setting_key == setting_key, col(Job.seed).in_(seeds))
    names = ("job_id", "seed", "status", "hardware_key", "acc_delta", "equal_time_gap", "time_saving", "timing_noisy", "contended", "error", "spec")
    return [dict(zip(names, row, strict=True)) for row in session.execute(stmt.order_by(col(Job.id))).all()]


def answers(row: dict[str, Any], plan: GatePlan) -> bool:
    """Whether a job can answer the gate for its seed: finished with the figure, or on its way with the runs that give it."""
    if row["status"] == "succeeded":
        return row.get(plan.metric) is not None
    spec = row.get("spec") or {}
    return all(spec.get(flag, flag == "baseline") for flag in needed_flags(plan.require))


@dataclass
class SeedState:
    seed: int
    status: SeedStatus
    job_ids: list[int] = field(default_factory=list)
    value: float | None = None
    hardware_key: str | None = None
    error: str | None = None


@dataclass
class GateState:
    """Where the gate stands: the decision and its reason, the seeds, the looks made, and what to submit."""

    plan: GatePlan
    decision: Decision
    reason: str
    seeds: list[SeedState]
    sequence: SequentialDecision
    hardware_key: str | None
    to_submit: list[int]
    ci95: tuple[float, float] | None
    time_saving_mean: float | None
    noisy_job_ids: list[int]

    @property
    def n_seeds(self) -> int:
        """The finished seeds the looks were made on (the planned order's unbroken prefix)."""
        return self.sequence.last.n_seeds if self.sequence.last else 0


def _cell_hardware(done: list[dict[str, Any]]) -> str | None:
    """The hardware most finished seeds ran on (ties: the lowest seed's)."""
    by_key: dict[str, set[int]] = {}
    for r in done:
        by_key.setdefault(r["hardware_key"] or "unknown", set()).add(r["seed"])
    if not by_key:
        return None
    counts = Counter({k: len(s) for k, s in by_key.items()})
    best = max(counts.values())
    return min((k for k, n in counts.items() if n == best), key=lambda k: min(by_key[k]))


def _pt(x: float) -> str:
    return f"{x:+.2f} pt"


def _interval(ci: tuple[float, float], level: float) -> str:
    return f"{level:.1%} interval {_pt(ci[0])} to {_pt(ci[1])}"


def gate_state(plan: GatePlan, rows: list[dict[str, Any]]) -> GateState:
    """The decision from the cell's jobs (``cell_rows``), pure: which seeds are done, running or missing, the
    looks on the finished seeds in planned order (``dynds_core.sequential``), and what to submit next."""
    mine = [r for r in rows if r["seed"] in set(plan.seeds) and answers(r, plan)]
    done = [r for r in mine if r["status"] == "succeeded"]
    hardware = _cell_hardware(done)
    seeds: list[SeedState] = []
    for seed in plan.seeds:
        own = [r for r in mine if r["seed"] == seed]
        here = [r for r in own if r["status"] == "succeeded" and (r["hardware_key"] or "unknown") == hardware]
        live = [r for r in own if r["status"] in LIVE]
        if here:
            s = SeedState(seed, "done", [r["job_id"] for r in here], per_seed(here, plan.metric)[0], hardware)
        elif live:
            s = SeedState(seed, "running" if any(r["status"] == "running" for r in live) else "queued", [r["job_id"] for r in live])
        elif any(r["status"] == "succeeded" for r in own):
            elsewhere = [r for r in own if r["status"] == "succeeded"]
            s = SeedState(seed, "elsewhere", [r["job_id"] for r in elsewhere], hardware_key=elsewhere[-1]["hardware_key"])
        elif own:  # only failed or cancelled jobs: the newest says why
            s = SeedState(seed, "failed", [own[-1]["job_id"]], error=own[-1]["error"] or own[-1]["status"])
        else:
            s = SeedState(seed, "missing")
        seeds.append(s)
    prefix: list[SeedState] = []
    for s in seeds:
        if s.status != "done":
            break
        prefix.append(s)
    values = [s.value for s in prefix if s.value is not None]
    sequence = sequential_decision(values, threshold=plan.threshold, min_seeds=plan.min_seeds, max_seeds=plan.max_seeds, alpha=ALPHA)
    used = [r for s in prefix for r in done if r["job_id"] in s.job_ids]
    ts = per_seed(used, "time_saving")
    state = GateState(
        plan=plan,
        decision="undecided",
        reason="",
        seeds=seeds,
        sequence=sequence,
        hardware_key=hardware,
        to_submit=[],
        ci95=mean_ci95(values[: sequence.last.n_seeds])[1] if sequence.last else None,
        time_saving_mean=sum(ts) / len(ts) if ts else None,
        noisy_job_ids=sorted(r["job_id"] for r in used if untrusted(r)),
    )
    _decide(state, len(prefix))
    return state


def _decide(state: GateState, n_done: int) -> None:
    plan, seq, last = state.plan, state.sequence, state.sequence.last
    looks = n_looks(plan.min_seeds, plan.max_seeds)
    where = f" on {state.hardware_key}" if state.hardware_key else ""
    if last is not None and seq.outcome in ("pass", "fail", "inconclusive"):
        state.decision = seq.outcome
        look = f"{_interval(last.ci, seq.level)} at look {len(seq.looks)} of {looks}, {last.n_seeds} seeds{where}"
        if plan.require == "worth-it":
            better = f"DynDS is {_pt(last.mean)} against the baseline trained for the same time ({look})"
            state.reason = {
                "pass": f"Worth it: {better}; the interval lies above 0.",
                "fail": f"Not worth it: {better}; the interval lies below 0: the equal-time baseline is better.",
                "inconclusive": f"Inconclusive: {better}; the interval still spans 0 after {plan.max_seeds} seeds (max_seeds).",
            }[seq.outcome]
        else:
            delta = f"the accuracy delta against the baseline is {_pt(last.mean)} ({look})"
            bound = f"-{plan.max_acc_drop:g} pt"
            state.reason = {
                "pass": f"No worse: {delta}; the interval lies above {bound} (max_acc_drop).",
                "fail": f"Worse: {delta}; the interval lies below {bound}: accuracy drops by more than max_acc_drop.",
                "inconclusive": f"Inconclusive: {delta}; the interval still spans {bound} after {plan.max_seeds} seeds (max_seeds).",
            }[seq.outcome]
        for s in state.seeds:
            if s.status == "missing":
                s.status = "not_needed"
        return
    # Undecided: the seeds the next look needs must exist.
    wanted = min(plan.max_seeds, max(plan.min_seeds, n_done + 1))
    needed = state.seeds[:wanted]
    for s in state.seeds[wanted:]:
        if s.status == "missing":
            s.status = "not_needed"
    failed = [s for s in needed if s.status == "failed"]
    if failed:
        s = failed[0]
        state.decision = "error"
        state.reason = (
            f"Error: job {s.job_ids[0]} (seed {s.seed}) ended without a result ({s.error}); the gate cannot decide without "
            f"that seed: retry the job (POST /jobs/{s.job_ids[0]}/retry) or fix the spec, then ask again."
        )
        return
    elsewhere = [s for s in needed if s.status == "elsewhere"]
    if elsewhere:
        s = elsewhere[0]
        state.decision = "error"
        state.reason = (
            f"Error: seed {s.seed} ran on {s.hardware_key} (job {s.job_ids[-1]}), the cell's other seeds on {state.hardware_key}: "
            "results from unlike hardware are never pooled; pin train.hardware to one of them and ask again."
        )
        return
    state.to_submit = [s.seed for s in needed if s.status == "missing"]
    pending = [s for s in needed if s.status != "done"]
    waiting = ", ".join(f"seed {s.seed} ({s.status}{f', job {s.job_ids[-1]}' if s.job_ids else ''})" for s in pending)
    so_far = ""
    if last is not None:
        so_far = f"{_interval(last.ci, seq.level)} over {last.n_seeds} seeds spans {plan.threshold:+g} pt; "
    state.reason = f"Undecided: {so_far}waiting for {waiting}; look {len(seq.looks) + 1} of {looks} comes at {wanted} seeds."
