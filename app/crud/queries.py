"""Read queries: a job, the jobs list, a job's metric points, the summary and frontier rows of the
results pages, and the results version (the results cache's key)."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Text, cast, func
from sqlmodel import Session, col, select

from app.leaderboard import frontier_key, recipe_of, resolve_track
from app.leaderboard.keys import HARDWARE_SEP, recipe_key
from app.models import SUMMARY_FIELDS, Job, MetricPoint, iso_utc

JOB_ORDERS = ("created_at", "-created_at", "id", "-id", "finished_at", "-finished_at", "name", "-name")


def get_job(*, session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def _job_filters(*, status=None, arch=None, dataset=None, schedule_kind=None, track=None, hardware_key=None, q=None) -> list:
    conds = []
    pairs = (
        (Job.status, status),
        (Job.arch, arch),
        (Job.dataset, dataset),
        (Job.schedule_kind, schedule_kind),
        (Job.track, track),
        (Job.hardware_key, hardware_key),
    )
    for column, value in pairs:
        if value is not None:
            conds.append(column == value)
    if q:
        conds.append(col(Job.name).ilike(f"%{q}%"))
    return conds


LIST_SCALARS = (
    "id",
    "name",
    "status",
    "spec_hash",
    "arch",
    "dataset",
    "schedule_kind",
    "track",
    "recipe_hash",
    "attempt",
    "attempts",
    "retry_of",
    "sweep_id",
    "created_at",
    "started_at",
    "finished_at",
    "cancel_requested",
    "error",
    "heartbeat_at",
    "hardware_key",
)
LIST_RAW_JSON = ("spec", "progress", "reproducibility", "hardware")


def list_jobs_json(*, session: Session, limit: int = 50, offset: int = 0, order: str = "-created_at", **filters) -> tuple[str, int]:
    """A page of jobs under the filters (status, arch, dataset, schedule_kind, track, hardware_key; ``q``: in the name) as a
    ready JSON array of list items (JobListItem's shape), stored JSON spliced in unparsed, and the total count.

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
        head = dict(zip(LIST_SCALARS, row[:n_scalar], strict=True))
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            head[key] = iso_utc(head[key])
        head["deduplicated"] = False
        head["result"] = None
        head["summary"] = dict(zip(SUMMARY_FIELDS, row[n_scalar : n_scalar + n_summary], strict=True)) if head["status"] == "succeeded" else None
        raw = row[n_scalar + n_summary :]
        tail = ",".join(f'"{name}":{text if text is not None else "null"}' for name, text in zip(LIST_RAW_JSON, raw, strict=True))
        items.append(json.dumps(head, separators=(",", ":"))[:-1] + "," + tail + "}")
    return "[" + ",".join(items) + "]", count


def metrics_after(*, session: Session, job_id: int, after: int = 0, limit: int = 1000, kind: str | None = None) -> list[MetricPoint]:
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
        (
            i,
            f'{{"id":{i},"run":{dumps(run)},"kind":{dumps(k)},"step":{dumps(step)},"epoch":{dumps(epoch)},'
            f'"train_time_s":{dumps(t)},"values":{values}}}',
        )
        for i, run, k, step, epoch, t, values in rows
    ]


def metrics_json_after(*, session: Session, job_id: int, after: int = 0, limit: int = 1000, kind: str | None = None) -> tuple[str, int]:
    """``metrics_json_rows`` as a ready JSON array, and the last id (``after`` when there is none)."""
    rows = metrics_json_rows(session=session, job_id=job_id, after=after, limit=limit, kind=kind)
    return "[" + ",".join(js for _, js in rows) + "]", rows[-1][0] if rows else after


SUMMARY_ROW_COLUMNS = (
    "id",
    "name",
    "track",
    "recipe_hash",
    "arch",
    "dataset",
    "schedule_kind",
    "setting_key",
    "seed",
    *SUMMARY_FIELDS,  # the summary columns, in the model's order (hardware_key among them)
)
_RECIPE_HASH = re.compile(r"[0-9a-f]{16}")


def _track_base(session: Session, track: str) -> str:
    """The stored track label (``track_of``) under which ``track`` (a label, with its `` · `` suffix and
    its `` on <hardware>``, a track key ``<recipe hash>@<hardware>``, or a recipe hash) lies: what the SQL
    filter can select on."""
    part = track.partition("@")[0]
    if _RECIPE_HASH.fullmatch(part):
        stored = session.execute(select(Job.track).where(Job.recipe_hash == part).limit(1)).scalar()
        if stored is not None:
            return stored
    return track.split(HARDWARE_SEP)[0].split(" · ")[0]


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
    rows = _with_recipes(session, [dict(zip(SUMMARY_ROW_COLUMNS, t, strict=True)) for t in tuples])
    key = resolve_track(rows, track)
    return [t for t, r in zip(tuples, rows, strict=True) if key is not None and recipe_key(r) == key]


def summary_rows(*, session: Session, track: str | None = None, with_setting: bool = False) -> list[dict[str, Any]]:
    """One flat row per succeeded job, from the summary columns only (no result JSON is read), each with
    its ``recipe``. With ``track`` (a label or a recipe hash): the jobs under that track's stored label,
    every recipe sharing it included (so labels are made unique over the same recipes as the full board)."""
    conds = [] if track is None else [Job.track == _track_base(session, track)]
    rows = _with_recipes(session, [dict(zip(SUMMARY_ROW_COLUMNS, row, strict=True)) for row in _summary_tuples(session, conds)])
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
    recipe = next((r["recipe"] for r in rows if recipe_key(r) == key and r.get("recipe")), None)
    if recipe is None:
        return rows
    fk = frontier_key(recipe)
    seen = {r["id"] for r in rows}
    more = [dict(zip(SUMMARY_ROW_COLUMNS, t, strict=True)) for t in _summary_tuples(session, [Job.frontier_key == fk]) if t[0] not in seen]
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
