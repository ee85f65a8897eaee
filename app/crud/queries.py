"""Read queries: a job, the jobs list, a job's metric points, the summary and frontier rows of the
results pages, and the results version (the results cache's key)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, cast, func, literal, or_, tuple_
from sqlmodel import Session, col, select

from app.leaderboard import frontier_key, recipe_of, resolve_track
from app.leaderboard.keys import HARDWARE_SEP, recipe_key
from app.models import JOB_SORT_COLUMNS, JOBS_COUNT_EXACT_UP_TO, SUMMARY_FIELDS, Job, MetricPoint, ResultsVersion, iso_utc

# order=<column> ascending, order=-<column> descending; every one has a (column, id) index (JOB_SORT_COLUMNS).
JOB_ORDERS = tuple(o for c in ("id", *JOB_SORT_COLUMNS) for o in (c, f"-{c}"))


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
    "stops",
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


class CursorError(ValueError):
    """A GET /jobs cursor that this server did not make for this order (the route answers 422 naming it)."""


def encode_cursor(order: str, value: Any, job_id: int) -> str:
    """The opaque position after a row: its order, its value in the order column and its id."""
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([order, value, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[Any, int]:
    """(value, id) of a cursor made by ``encode_cursor`` under ``order``; CursorError otherwise."""
    try:
        got, value, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        valid = isinstance(job_id, int) and 0 <= job_id < 2**63 and (value is None or isinstance(value, str | int | float | datetime))
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise CursorError("cursor is not one this server gave: pass next_cursor from a page as it came")
    if got != order:
        raise CursorError(f"cursor was made for order={got}, not order={order}: keep the order while paging, or start again without a cursor")
    return value, job_id


# The summary figures a job has only once it succeeded (hardware_key, also a summary column, comes at its start).
SUCCESS_ONLY = ("time_saving", "acc_delta", "equal_time_gap", "verdict")


def _count(session: Session, conds: list) -> tuple[int, bool]:
    """How many jobs match: exact up to JOBS_COUNT_EXACT_UP_TO (a bounded scan), the planner's estimate past it
    on PostgreSQL (counting a million rows on every page is what made deep listings slow). SQLite, for
    small deployments, counts exactly."""
    cap = JOBS_COUNT_EXACT_UP_TO
    postgres = session.get_bind().dialect.name == "postgresql"
    estimate = _planner_rows(session, conds) if postgres else None
    if estimate is not None and estimate > 2 * cap:  # well past the bound: not worth counting even that far
        return estimate, False
    bounded = select(Job.id).where(*conds).limit(cap + 1).subquery()
    n = session.execute(select(func.count()).select_from(bounded)).scalar_one()
    if n <= cap:
        return n, True
    if estimate is None:
        return session.execute(select(func.count()).select_from(Job).where(*conds)).scalar_one(), True
    return max(estimate, cap + 1), False


def _planner_rows(session: Session, conds: list) -> int:
    """PostgreSQL's estimate of the jobs matching ``conds`` (EXPLAIN: statistics, no rows read)."""
    stmt = select(Job.id).where(*conds).compile(dialect=session.get_bind().dialect)
    plan = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(stmt), stmt.params).scalar_one()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def _keyset_rows(session: Session, base: Select, conds: list, order: str, after: tuple[Any, int] | None, limit: int) -> list:
    """Up to ``limit`` rows after ``after`` (value, id) in ``order``, NULLs last both ways: the rows with a
    value (a range scan of the (column, id) index, forwards or backwards), then those without (by id)."""
    name = order.lstrip("-")
    desc = order.startswith("-")
    field, ids = getattr(Job, name), col(Job.id)
    after_value, after_id = after if after is not None else (None, None)
    rows: list = []
    if name == "id":
        if after_id is not None:
            conds = [*conds, ids < after_id if desc else ids > after_id]
        return list(session.execute(base.where(*conds).order_by(ids.desc() if desc else ids).limit(limit)).all())
    if after is None or after_value is not None:
        more = [col(field).is_not(None)]
        if after_value is not None:
            key, at = tuple_(field, Job.id), tuple_(literal(after_value, field.type), literal(after_id))
            more.append(key < at if desc else key > at)
        ordering = [col(field).desc(), ids.desc()] if desc else [col(field).asc(), ids.asc()]
        rows = list(session.execute(base.where(*conds, *more).order_by(*ordering).limit(limit)).all())
    if len(rows) < limit:
        more = [col(field).is_(None)]
        if after is not None and after_value is None:
            more.append(ids < after_id if desc else ids > after_id)
        stmt = base.where(*conds, *more).order_by(ids.desc() if desc else ids.asc()).limit(limit - len(rows))
        rows += session.execute(stmt).all()
    return rows


def _offset_rows(session: Session, base: Select, conds: list, order: str, offset: int, limit: int) -> list:
    """The legacy OFFSET page in the same order as the keyset pages (NULLs last): slow for deep pages, as
    every skipped row is read."""
    name = order.lstrip("-")
    desc = order.startswith("-")
    field, ids = getattr(Job, name), col(Job.id)
    if name == "id":
        stmt = base.where(*conds).order_by(ids.desc() if desc else ids).offset(offset).limit(limit)
        return list(session.execute(stmt).all())
    present = [*conds, col(field).is_not(None)]
    ordering = [col(field).desc(), ids.desc()] if desc else [col(field).asc(), ids.asc()]
    rows = list(session.execute(base.where(*present).order_by(*ordering).offset(offset).limit(limit)).all())
    if len(rows) < limit:
        if rows:
            skip = 0
        else:  # the page starts among the rows without a value: how many rows with one come before it
            skipped = select(Job.id).where(*present).limit(offset).subquery()
            skip = offset - session.execute(select(func.count()).select_from(skipped)).scalar_one()
        stmt = base.where(*conds, col(field).is_(None)).order_by(ids.desc() if desc else ids.asc())
        rows += session.execute(stmt.offset(skip).limit(limit - len(rows))).all()
    return rows


@functools.cache
def _list_select() -> Select:
    """SELECT of a list item's columns, built once: coercing its 45 columns was a quarter of a page's CPU."""
    return select(*[getattr(Job, c) for c in LIST_SCALARS + SUMMARY_FIELDS], *[cast(getattr(Job, c), Text) for c in LIST_RAW_JSON])


def list_jobs_json(
    *, session: Session, limit: int = 50, offset: int = 0, order: str = "-created_at", cursor: str | None = None, **filters
) -> tuple[str, int, bool, str | None]:
    """A page of jobs under the filters (status, arch, dataset, schedule_kind, track, hardware_key; ``q``: in the name) as a
    ready JSON array of list items (JobListItem's shape), stored JSON spliced in unparsed; the count of matching jobs,
    whether it is exact (``_count``), and the cursor of the next page (None on the last).

    ``cursor`` (from a previous page): keyset pagination on (order column, id), an index range scan at any
    depth, stable while jobs are added; ``offset`` otherwise. NULLs sort last both ways.
    GET /jobs is the most requested page; building ORM objects and re-encoding every spec was most of its cost.
    """
    if order not in JOB_ORDERS:
        raise ValueError(f"order must be one of {', '.join(JOB_ORDERS)}, got {order!r}")
    after = decode_cursor(cursor, order) if cursor else None
    conds = _job_filters(**filters)
    name = order.lstrip("-")
    # Only succeeded jobs have figures: under another state they all lack one, and the order is the nulls' (by
    # id). Said outright, not left to a scan of the figure's whole index that finds nothing.
    by = order if name not in SUCCESS_ONLY or filters.get("status") in (None, "succeeded") else order.replace(name, "id")
    if after is None and offset:
        rows = _offset_rows(session, _list_select(), conds, by, offset, limit + 1)
    else:
        rows = _keyset_rows(session, _list_select(), conds, by, after, limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        key = LIST_SCALARS.index("id")
        value = None if by.lstrip("-") == "id" else _row_value(last, name)
        next_cursor = encode_cursor(order, value, last[key])
    count, exact = _count(session, conds)
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
    return "[" + ",".join(items) + "]", count, exact, next_cursor


def _row_value(row, name: str) -> Any:
    """The value of column ``name`` in a list row (LIST_SCALARS, then SUMMARY_FIELDS)."""
    if name in LIST_SCALARS:
        return row[LIST_SCALARS.index(name)]
    return row[len(LIST_SCALARS) + SUMMARY_FIELDS.index(name)]


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


def track_base(*, session: Session, track: str) -> str:
    """The stored track label (Job.track) the jobs of ``track`` (a label, a track key or a recipe hash) carry:
    the scope of their results version."""
    return _track_base(session, track)


def summary_rows(*, session: Session, track: str | None = None, base: str | None = None, with_setting: bool = False) -> list[dict[str, Any]]:
    """One flat row per succeeded job, from the summary columns only (no result JSON is read), each with
    its ``recipe``. With ``track`` (a label or a recipe hash): the jobs under that track's stored label,
    every recipe sharing it included (so labels are made unique over the same recipes as the full board).
    With ``base``: the jobs whose stored label (Job.track) is exactly that."""
    if base is None and track is not None:
        base = _track_base(session, track)
    conds = [] if base is None else [Job.track == base]
    rows = _with_recipes(session, [dict(zip(SUMMARY_ROW_COLUMNS, row, strict=True)) for row in _summary_tuples(session, conds)])
    if with_setting and rows:
        # Equal setting_keys mean equal settings: parse one stored setting per key (of these rows' first
        # jobs, by primary key), not one per job, and never group the whole table.
        first_ids: dict[str, int] = {}
        for r in rows:
            first_ids.setdefault(r["setting_key"], r["id"])
        settings = dict(session.execute(select(Job.setting_key, Job.setting).where(col(Job.id).in_(list(first_ids.values())))).all())
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
    base = _track_base(session, track)
    rows = summary_rows(session=session, base=base, with_setting=True)
    key = resolve_track(rows, track)
    if key is None:
        return None
    recipe = next((r["recipe"] for r in rows if recipe_key(r) == key and r.get("recipe")), None)
    if recipe is None:
        return rows
    fk = frontier_key(recipe)
    # The other budgets of the recipe: the jobs under this label are in ``rows`` already.
    other_budgets = [Job.frontier_key == fk, or_(Job.track != base, col(Job.track).is_(None))]
    more = [dict(zip(SUMMARY_ROW_COLUMNS, t, strict=True)) for t in _summary_tuples(session, other_budgets)]
    rows += _with_recipes(session, more)
    results = dict(session.execute(select(Job.id, Job.result).where(Job.status == "succeeded", Job.frontier_key == fk)).all())
    for row in rows:
        if row["id"] in results:
            res = results[row["id"]]
            row["frontier_key"] = fk
            row.update({f"{run}_steps": _steps(res, run) for run in ("dynds", "baseline", "equal_time")})
    return rows


def results_versions(*, session: Session, scopes: list[tuple[str, str]] | None = None) -> dict[tuple[str, str], int]:
    """The results version of each (scope, key) in ``scopes`` (every one stored when None): ``("track", <Job.track>)``
    or ``("frontier", <frontier key>)``, bumped by the database whenever a succeeded job of it is written,
    changed or deleted (migration 0009). A scope with no succeeded job ever is absent (version 0)."""
    stmt = select(ResultsVersion.scope, ResultsVersion.key, ResultsVersion.version)
    if scopes is not None:
        if not scopes:
            return {}
        stmt = stmt.where(col(ResultsVersion.key).in_({k for _, k in scopes}))
    found = {(scope, key): v for scope, key, v in session.execute(stmt).all()}
    return found if scopes is None else {s: found.get(s, 0) for s in scopes}


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
