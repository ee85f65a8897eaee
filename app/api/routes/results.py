"""Results: the leaderboard of schedule settings per track (recipe), the budget frontier of a track, and an
export of every succeeded job's summary."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from app import crud
from app.api.deps import ReadAuthDep, SessionDep
from app.leaderboard import build_frontier, build_hardware_table, build_leaderboard
from dynds_core.verdict import DEFAULT_MIN_SEEDS

router = APIRouter(tags=["results"])


class ResultsCache:
    """Encoded results pages (leaderboards, exports), each valid while the set of succeeded jobs is unchanged.

    An entry is stored with the ``crud.results_version`` it was built under and served only while the
    version is the same (one cheap aggregate query per request), so a job that succeeds invalidates
    every entry at once. Bounded by entries and by bytes (an export of 10,000 jobs is ~5 MB);
    the oldest entries go first.
    """

    def __init__(self, size: int = 64, max_bytes: int = 256 * 1024 * 1024):
        self.size = size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[tuple, bytes]] = {}
        self._bytes = 0

    def get(self, key: tuple, version: tuple) -> bytes | None:
        with self._lock:
            hit = self._entries.get(key)
        return hit[1] if hit and hit[0] == version else None

    def put(self, key: tuple, version: tuple, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            while self._entries and (len(self._entries) >= self.size or self._bytes + len(body) > self.max_bytes):
                self._bytes -= len(self._entries.pop(next(iter(self._entries)))[1])
            self._entries[key] = (version, body)
            self._bytes += len(body)

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._entries


def cached_body(request: Request, session, key: tuple, build: Callable[[], bytes]) -> bytes:
    """The cached body for ``key`` if no job has succeeded since it was built, else ``build()`` (and cache it).

    The version is read before the rows: a job succeeding in between makes the stored body newer than
    its version (rebuilt once more at the next request), never older.
    """
    cache: ResultsCache | None = request.app.state.leaderboard_cache
    version = crud.results_version(session=session)
    body = cache.get(key, version) if cache else None
    if body is None:
        body = build()
        if cache:
            cache.put(key, version, body)
    return body


TrackQuery = Annotated[
    str | None,
    Query(description="a track label (as the leaderboard names it), a track key (<recipe hash>@<hardware key>), or a one-hardware recipe"),
]
MaxAccDrop = Annotated[float, Query(ge=0, le=100, description="percentage points")]
MinSeeds = Annotated[int, Query(ge=1, le=100, description="seeds a cell needs to be ranked and judged")]
IncludeNoisy = Annotated[bool, Query(description="count jobs whose timing was noisy or whose hardware was contended (left out by default)")]


class LeaderboardCell(BaseModel):
    """One schedule setting of a track over its seeds (app.leaderboard.cells; docs/api.md explains each field)."""

    rank: int | None
    ranked: bool
    why_unranked: str | None
    setting: dict[str, Any] | None
    setting_key: str
    schedule_kind: str
    n_seeds: int
    seeds: list[int]
    n_jobs: int
    job_ids: list[int]
    n_noisy: int
    noisy_included: bool
    noisy_job_ids: list[int]
    time_saving_mean: float | None
    time_saving_std: float | None
    time_saving_ci95: list[float] | None
    acc_delta_mean: float | None
    acc_delta_std: float | None
    acc_delta_ci95: list[float] | None
    equal_time_gap_mean: float | None
    equal_time_gap_std: float | None
    equal_time_gap_ci95: list[float] | None
    equal_time_n_seeds: int
    dynds_acc_mean: float | None
    dynds_acc_ci95: list[float] | None
    within_bound: bool
    pareto: bool
    verdict: str
    verdict_sentence: str


class LeaderboardTrack(BaseModel):
    """One track (a recipe on one hardware key) and its cells, ranked ones first."""

    track: str
    track_key: str
    recipe_label: str
    hardware_key: str
    recipe_hash: str | None
    frontier_key: str | None
    recipe: dict[str, Any] | None
    arch: str
    dataset: str
    entries: list[LeaderboardCell]


class LeaderboardPublic(BaseModel):
    """GET /leaderboard. The route serves cached bytes; this model is the schema they follow (for the OpenAPI)."""

    max_acc_drop: float
    min_seeds: int
    include_noisy: bool
    tracks: list[LeaderboardTrack]


def _rows(session, **kw) -> list[dict]:
    rows = crud.summary_rows(session=session, with_setting=True, **kw)
    for r in rows:
        r["job_id"] = r.pop("id")
    return rows


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@router.get(
    "/leaderboard",
    responses={200: {"description": "tracks (one per recipe) with ranked cells (see docs/api.md)", "model": LeaderboardPublic}},
)
def leaderboard(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    track: TrackQuery = None,
    max_acc_drop: MaxAccDrop = 0.5,
    min_seeds: MinSeeds = DEFAULT_MIN_SEEDS,
    include_noisy: IncludeNoisy = False,
) -> Response:
    def build() -> bytes:
        rows = _rows(session, track=track)
        return _json(build_leaderboard(rows, max_acc_drop=max_acc_drop, track=track, min_seeds=min_seeds, include_noisy=include_noisy))

    key = (track, max_acc_drop, min_seeds, include_noisy)
    return Response(cached_body(request, session, key, build), media_type="application/json")


@router.get(
    "/leaderboard/hardware",
    responses={200: {"description": "per recipe, each setting's cell on each hardware key (see docs/api.md)", "content": {"application/json": {}}}},
)
def leaderboard_by_hardware(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    max_acc_drop: MaxAccDrop = 0.5,
    min_seeds: MinSeeds = DEFAULT_MIN_SEEDS,
    include_noisy: IncludeNoisy = False,
    min_hardware: Annotated[int, Query(ge=1, le=100, description="only recipes measured on at least this many hardware keys")] = 1,
) -> Response:
    """One setting's verdict side by side across hardware classes, never pooled: each entry is one track's cell."""

    def build() -> bytes:
        board = build_leaderboard(_rows(session), max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy)
        return _json(build_hardware_table(board, min_hardware=min_hardware))

    key = ("hardware", max_acc_drop, min_seeds, include_noisy, min_hardware)
    return Response(cached_body(request, session, key, build), media_type="application/json")


@router.get(
    "/frontier",
    responses={
        200: {"description": "the track's budget frontier (see docs/api.md)", "content": {"application/json": {}}},
        404: {"description": "no succeeded job has this track"},
    },
)
def frontier(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    track: Annotated[str, Query(description="a track label or a recipe hash")],
    max_acc_drop: MaxAccDrop = 0.5,
    min_seeds: MinSeeds = DEFAULT_MIN_SEEDS,
    include_noisy: IncludeNoisy = False,
) -> Response:
    """The baseline's accuracy against its budget (a band over seeds) and the track's DynDS cells on the same axes."""

    def build() -> bytes:
        rows = crud.frontier_rows(session=session, track=track)
        if rows is None:
            return b""
        for r in rows:
            r["job_id"] = r.pop("id")
        front = build_frontier(rows, track=track, max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy)
        return _json(front) if front is not None else b""

    body = cached_body(request, session, ("frontier", track, max_acc_drop, min_seeds, include_noisy), build)
    if not body:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no succeeded job has track {track!r} (a track label or a recipe hash)")
    return Response(body, media_type="application/json")


def export_json(rows: list[tuple]) -> bytes:
    columns = crud.SUMMARY_ROW_COLUMNS
    return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], separators=(",", ":")).encode()


def export_csv(rows: list[tuple]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(crud.SUMMARY_ROW_COLUMNS)
    writer.writerows(rows)  # None is written as an empty field
    return out.getvalue().encode()


EXPORT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


# operation_id: `export` is a reserved word in TypeScript (a generated client would call it `_export`)
@router.get("/export", operation_id="export_results", responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    format: Literal["csv", "json"] = "csv",
    track: TrackQuery = None,
) -> Response:
    """Every succeeded job's summary row; served from the results cache until the next job succeeds."""
    encode = export_json if format == "json" else export_csv
    body = cached_body(request, session, ("export", format, track), lambda: encode(crud.summary_tuples(session=session, track=track)))
    headers = {"Content-Disposition": 'attachment; filename="dynds-results.csv"'} if format == "csv" else None
    return Response(body, media_type=EXPORT_TYPES[format], headers=headers)
