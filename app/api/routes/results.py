"""Results: the leaderboard of schedule settings per track (recipe), the budget frontier of a track, and an
export of every succeeded job's summary."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

from app import crud
from app.api.deps import ReadAuthDep, SessionDep
from app.leaderboard import build_frontier, build_hardware_table, build_leaderboard
from app.models import column_model
from dynds_core.verdict import DEFAULT_MIN_SEEDS

router = APIRouter(tags=["results"])


Scope = tuple[str, str]  # ("track", <stored track label>) or ("frontier", <frontier key>): crud.results_versions


class ResultsCache:
    """Encoded results pages (leaderboards, frontiers, exports) and the per-track parts of the full leaderboard,
    each valid while the results versions it was built from are unchanged.

    An entry is stored with the versions of the scopes it read (one track, a track and its frontier key, or
    every scope) and served only while they are the same: a job that succeeds in track A leaves the entries
    of track B warm. Bounded by entries and by bytes (an export of 10,000 jobs is ~5 MB); the oldest go first.
    """

    def __init__(self, size: int = 4096, max_bytes: int = 256 * 1024 * 1024):
        self.size = size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[Any, Any, int]] = {}
        self._bytes = 0
        self._builders: dict[tuple, list] = {}  # key -> [its build's lock, threads holding or waiting for it]

    @contextlib.contextmanager
    def building(self, key: tuple) -> Iterator[None]:
        """Held while ``key``'s body is built: a second request for it waits for that build and reads its result
        instead of doing the same work beside it (at a million jobs the first full board takes 15 s of a core,
        and a restarted server's first visitors all ask for it at once)."""
        with self._lock:
            builder = self._builders.setdefault(key, [threading.Lock(), 0])
            builder[1] += 1
        try:
            with builder[0]:
                yield
        finally:
            with self._lock:
                builder[1] -= 1
                if not builder[1]:
                    del self._builders[key]

    def rebuilding(self, key: tuple) -> bool:
        """Whether a request is building ``key``'s body now."""
        with self._lock:
            return key in self._builders

    def entry(self, key: tuple) -> tuple[Any, Any] | None:
        """(version, body) as stored, whatever the version."""
        with self._lock:
            hit = self._entries.get(key)
        return (hit[0], hit[1]) if hit else None

    def get(self, key: tuple, version: Any) -> Any:
        hit = self.entry(key)
        return hit[1] if hit and hit[0] == version else None

    def put(self, key: tuple, version: Any, body: Any, nbytes: int | None = None) -> None:
        nbytes = len(body) if nbytes is None else nbytes
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            while self._entries and (len(self._entries) >= self.size or self._bytes + nbytes > self.max_bytes):
                self._bytes -= self._entries.pop(next(iter(self._entries)))[2]
            self._entries[key] = (version, body, nbytes)
            self._bytes += nbytes

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._entries

    def gzipped(self, body: bytes) -> bytes | None:
        """``body`` gzipped, compressed once per body (an entry keyed by the body's identity, which holds the body
        so the identity stays its own, and counts both); None while another request compresses it."""
        key = ("gzip", id(body))
        hit = self.entry(key)
        if hit is not None and hit[0] is body:
            return hit[1]
        if self.rebuilding(key):
            return None
        with self.building(key):
            hit = self.entry(key)
            if hit is not None and hit[0] is body:
                return hit[1]
            gz = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)  # zlib lets other threads run meanwhile
            self.put(key, body, gz, nbytes=len(gz) + len(body))
            return gz


# Cached bodies past this size go gzipped to a client that accepts it: the whole leaderboard at a million jobs is
# 19.8 MB of JSON and 4.4 MB gzipped, compressed once per build instead of once per request.
GZIP_MIN_BYTES = 32 * 1024
GZIP_LEVEL = 6


def results_response(request: Request, body: bytes, media_type: str = "application/json", headers: dict[str, str] | None = None) -> Response:
    """A results body as a response: gzipped from the results cache when it is large and the client accepts gzip."""
    headers = dict(headers or {})
    cache = results_cache(request)
    if cache is None or len(body) < GZIP_MIN_BYTES:
        return Response(body, media_type=media_type, headers=headers)
    headers["Vary"] = "Accept-Encoding"
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        gz = cache.gzipped(body)
        if gz is not None:
            return Response(gz, media_type=media_type, headers=headers | {"Content-Encoding": "gzip"})
    return Response(body, media_type=media_type, headers=headers)


def results_cache(request: Request) -> ResultsCache | None:
    """The app's results cache (None when DYNDS_LEADERBOARD_CACHE is off)."""
    return request.app.state.leaderboard_cache


def cached_body(cache: ResultsCache | None, session, key: tuple, build: Callable[[], tuple[bytes, list[Scope] | None]]) -> bytes:
    """The cached body for ``key`` while the scopes it was built from are unchanged, else ``build()`` (and cache it).

    ``build`` returns the body and the scopes it read (None: all of them). Versions are read before the
    rows: a job succeeding in between makes the stored body newer than its versions (rebuilt once more at
    the next request), never older. While one request rebuilds a body whose scopes changed, the others get
    the previous body at once instead of queueing behind it: under a fleet's finishes nearly every read
    finds its track changed (10,000 jobs at 16 a second: the leaderboard's p50 621 ms, p99 3.0 s), and a
    board one rebuild old is what a dashboard polling it would have shown a moment earlier. A body never
    built yet is waited for.
    """
    if cache is None:
        return build()[0]
    body = _fresh(cache, session, key, or_while_rebuilding=True)
    if body is not None:
        return body
    with cache.building(key):
        body = _fresh(cache, session, key)  # built meanwhile by the request this one waited for
        if body is not None:
            return body
        snapshot = crud.results_versions(session=session)
        body, scopes = build()
        versions = snapshot if scopes is None else {s: snapshot.get(s, 0) for s in scopes}
        cache.put(key, (scopes, versions), body)
    return body


def _fresh(cache: ResultsCache, session, key: tuple, *, or_while_rebuilding: bool = False) -> bytes | None:
    """``key``'s cached body if the scopes it was built from are unchanged, else None. ``or_while_rebuilding``:
    also the previous body while another request rebuilds it (then the versions are not read at all)."""
    hit = cache.entry(key)
    if hit is None:
        return None
    (scopes, versions), body = hit
    if or_while_rebuilding and cache.rebuilding(key):
        return body
    return body if crud.results_versions(session=session, scopes=scopes) == versions else None


def board_body(params: dict[str, Any], tracks: list[tuple[str, bytes]]) -> bytes:
    """The full leaderboard's JSON from its tracks' encoded parts, ordered by label as build_leaderboard orders them."""
    head = _json(params)[:-1]
    return head + b',"tracks":[' + b",".join(part for _, part in sorted(tracks, key=lambda t: t[0])) + b"]}"


def track_parts(board: dict[str, Any]) -> list[tuple[str, bytes]]:
    """A leaderboard's tracks, each as (label, its JSON): the unit board_body joins."""
    return [(t["track"], _json(t)) for t in board["tracks"]]


def full_leaderboard(cache: ResultsCache | None, session, params: dict[str, Any]) -> bytes:
    """Every track's leaderboard, maintained per stored track label: on a change, only the labels whose
    version moved are read and ranked again (labels are unique within a stored label, so the parts join
    into what one build over all rows gives)."""
    if cache is None:
        return _json(build_leaderboard(_rows(session), **params))

    def build() -> tuple[bytes, None]:
        tracks: list[tuple[str, bytes]] = []
        for (scope, base), version in crud.results_versions(session=session).items():
            if scope == "track":
                tracks += leaderboard_part(cache, session, base, version, params)
        return board_body(params, tracks), None

    return cached_body(cache, session, ("leaderboard", None, *params.values()), build)


def leaderboard_part(cache: ResultsCache | None, session, base: str, version: int, params: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The tracks under one stored label (one recipe's, on every hardware key), as ``track_parts``, kept while
    the label's results ``version`` holds: the unit the full board joins and a track's hardware table reads."""
    part_key = ("leaderboard-part", base, *params.values())
    part = cache.get(part_key, version) if cache is not None else None
    if part is None:
        part = track_parts(build_leaderboard(_rows(session, base=base), **params))
        if cache is not None:
            cache.put(part_key, version, part, nbytes=sum(len(b) for _, b in part))
    return part


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


class TrackFields(BaseModel):
    """What names a track (a recipe on one hardware key): shared by the leaderboard's tracks and the tracks list."""

    track: str
    track_key: str
    recipe_label: str
    hardware_key: str
    recipe_hash: str | None
    frontier_key: str | None
    arch: str
    dataset: str


class LeaderboardTrack(TrackFields):
    """One track and its cells, ranked ones first."""

    recipe: dict[str, Any] | None
    entries: list[LeaderboardCell]


class LeaderboardPublic(BaseModel):
    """GET /leaderboard. The route serves cached bytes; this model is the schema they follow (for the OpenAPI)."""

    max_acc_drop: float
    min_seeds: int
    include_noisy: bool
    tracks: list[LeaderboardTrack]


class HardwareEntry(BaseModel):
    """One setting's cell on one hardware key: exactly that track's leaderboard cell (its fields as there)."""

    model_config = ConfigDict(extra="forbid")
    track: str
    verdict: str
    verdict_sentence: str
    rank: int | None
    ranked: bool
    why_unranked: str | None
    n_seeds: int
    time_saving_mean: float | None
    time_saving_ci95: list[float] | None
    acc_delta_mean: float | None
    acc_delta_ci95: list[float] | None
    equal_time_gap_mean: float | None
    equal_time_gap_ci95: list[float] | None
    job_ids: list[int]


class HardwareSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    setting_key: str
    schedule_kind: str
    by_hardware: dict[str, HardwareEntry]  # by hardware key
    verdicts_differ: bool


class HardwareRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipe_label: str
    recipe_hash: str | None
    hardware_keys: list[str]
    settings: list[HardwareSetting]


class HardwareTablePublic(BaseModel):
    """GET /leaderboard/hardware (app.leaderboard.hardware): per recipe, each setting's cell per hardware key."""

    model_config = ConfigDict(extra="forbid")
    min_seeds: int
    max_acc_drop: float
    recipes: list[HardwareRecipe]


class FrontierBaselinePoint(BaseModel):
    """The baseline at one budget: its accuracy over seeds (docs/api.md explains each field)."""

    model_config = ConfigDict(extra="forbid")
    time_fraction: float
    acc_mean: float | None
    acc_ci95: list[float] | None
    n_seeds: int
    n_points: int
    sources: list[Literal["baseline_only", "paired_baseline", "equal_time"]]
    job_ids: list[int]


class FrontierCell(BaseModel):
    """A setting's cell placed on the frontier's axes, with where it lies against the baseline's band."""

    model_config = ConfigDict(extra="forbid")
    setting_key: str
    setting: dict[str, Any] | None
    schedule_kind: str
    time_fraction: float | None
    time_fraction_ci95: list[float] | None
    acc_mean: float | None
    acc_ci95: list[float] | None
    position: Literal["above", "within", "below", "unknown"]
    n_seeds: int
    job_ids: list[int]
    rank: int | None
    ranked: bool
    verdict: str
    verdict_sentence: str


class FrontierPublic(BaseModel):
    """GET /frontier (app.leaderboard.frontier). The route serves cached bytes; this is their schema."""

    model_config = ConfigDict(extra="forbid")
    track: str
    track_key: str
    hardware_key: str
    recipe_hash: str | None
    frontier_key: str | None
    recipe: dict[str, Any] | None
    full_epochs: int | None
    baseline: list[FrontierBaselinePoint]
    dynds: list[FrontierCell]


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
    params = {"max_acc_drop": max_acc_drop, "min_seeds": min_seeds, "include_noisy": include_noisy}
    cache = results_cache(request)
    body = full_leaderboard(cache, session, params) if track is None else track_leaderboard(cache, session, track, params)[0]
    return results_response(request, body)


def track_leaderboard(cache: ResultsCache | None, session, track: str, params: dict[str, Any]) -> tuple[bytes, Scope]:
    """One track's leaderboard (its JSON, cached until a job of it succeeds) and the scope it was built from."""
    base = crud.track_base(session=session, track=track)

    def build() -> tuple[bytes, list[Scope]]:
        rows = _rows(session, base=base)
        return _json(build_leaderboard(rows, track=track, **params)), [("track", base)]

    return cached_body(cache, session, ("leaderboard", track, *params.values()), build), ("track", base)


class TrackSummary(TrackFields):
    """A track without its cells: what a page needs to list tracks or hardware keys."""

    n_settings: int
    n_jobs: int


class TracksPublic(BaseModel):
    """GET /leaderboard/tracks: every track with a succeeded job, ordered by label."""

    tracks: list[TrackSummary]


TRACK_FIELDS = tuple(TrackFields.model_fields)


@router.get("/leaderboard/tracks", response_model=TracksPublic)
def leaderboard_tracks(request: Request, session: SessionDep, _: ReadAuthDep) -> Response:
    """The tracks and the hardware keys results were measured on, without the cells: a few kilobytes where the
    full leaderboard of a large deployment is megabytes (the jobs page's hardware filter, the track pickers)."""
    return results_response(request, tracks_body(results_cache(request), session))


def tracks_body(cache: ResultsCache | None, session) -> bytes:
    """GET /leaderboard/tracks's JSON, from the full board as the cache keeps it per track (every job counted)."""
    params = {"max_acc_drop": 0.5, "min_seeds": DEFAULT_MIN_SEEDS, "include_noisy": True}

    def build() -> tuple[bytes, None]:
        board = json.loads(full_leaderboard(cache, session, params))
        tracks = [
            {**{f: t.get(f) for f in TRACK_FIELDS}, "n_settings": len(t["entries"]), "n_jobs": sum(e["n_jobs"] for e in t["entries"])}
            for t in board["tracks"]
        ]
        return _json({"tracks": tracks}), None

    return cached_body(cache, session, ("tracks",), build)


@router.get(
    "/leaderboard/hardware",
    responses={200: {"description": "per recipe, each setting's cell on each hardware key (see docs/api.md)", "model": HardwareTablePublic}},
)
def leaderboard_by_hardware(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    max_acc_drop: MaxAccDrop = 0.5,
    min_seeds: MinSeeds = DEFAULT_MIN_SEEDS,
    include_noisy: IncludeNoisy = False,
    min_hardware: Annotated[int, Query(ge=1, le=100, description="only recipes measured on at least this many hardware keys")] = 1,
    track: Annotated[
        str | None,
        Query(description="only the recipe of this track (a label, a track key or a recipe hash) and any recipe sharing its label"),
    ] = None,
) -> Response:
    """One setting's verdict side by side across hardware classes, never pooled: each entry is one track's cell."""
    params = {"max_acc_drop": max_acc_drop, "min_seeds": min_seeds, "include_noisy": include_noisy}

    def build() -> tuple[bytes, list[Scope] | None]:
        if track is None:
            # From the full board as kept per track: a change reads that track's rows only, not every row again.
            board, scopes = json.loads(full_leaderboard(cache, session, params)), None
        else:
            # One stored label's part of the board (its recipe on every hardware key; kept by the full board's
            # builds): a track's page at a million jobs reads 15,000 rows at most, not the whole board (15 s cold).
            base = crud.track_base(session=session, track=track)
            version = crud.results_versions(session=session, scopes=[("track", base)])[("track", base)]
            part = leaderboard_part(cache, session, base, version, params)
            board, scopes = {**params, "tracks": [json.loads(b) for _, b in part]}, [("track", base)]  # as board_body joins it
        return _json(build_hardware_table(board, min_hardware=min_hardware)), scopes

    cache = results_cache(request)
    key = ("hardware", max_acc_drop, min_seeds, include_noisy, min_hardware) + ((track,) if track is not None else ())
    return results_response(request, cached_body(cache, session, key, build))


@router.get(
    "/frontier",
    responses={
        200: {"description": "the track's budget frontier (see docs/api.md)", "model": FrontierPublic},
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

    def build() -> tuple[bytes, list[Scope]]:
        base = crud.track_base(session=session, track=track)
        rows = crud.frontier_rows(session=session, track=track)
        if rows is None:
            return b"", [("track", base)]
        for r in rows:
            r["job_id"] = r.pop("id")
        scopes = [("track", base), *{("frontier", r["frontier_key"]) for r in rows if r.get("frontier_key")}]
        front = build_frontier(rows, track=track, max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy)
        return (_json(front) if front is not None else b""), scopes

    body = cached_body(results_cache(request), session, ("frontier", track, max_acc_drop, min_seeds, include_noisy), build)
    if not body:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no succeeded job has track {track!r} (a track label or a recipe hash)")
    return results_response(request, body)


def export_json(rows: list[tuple], columns: tuple[str, ...] = crud.SUMMARY_ROW_COLUMNS) -> bytes:
    return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], separators=(",", ":")).encode()


def export_csv(rows: list[tuple], columns: tuple[str, ...] = crud.SUMMARY_ROW_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)  # None is written as an empty field
    return out.getvalue().encode()


def export_columns(columns: str | None) -> tuple[str, ...]:
    """The export's columns from ``columns`` (comma-separated, in the order asked; none: all of them); a 422 that
    names the unknown ones otherwise."""
    if columns is None:
        return crud.SUMMARY_ROW_COLUMNS
    asked = tuple(dict.fromkeys(c.strip() for c in columns.split(",") if c.strip()))
    unknown = [c for c in asked if c not in crud.SUMMARY_ROW_COLUMNS]
    if unknown or not asked:
        msg = f"unknown column {', '.join(map(repr, unknown))}" if unknown else "no column named"
        choices = ", ".join(crud.SUMMARY_ROW_COLUMNS)
        raise RequestValidationError([{"loc": ["query", "columns"], "type": "value_error", "input": columns, "msg": f"{msg}; choose from {choices}"}])
    return asked


EXPORT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
ExportRow = column_model(
    "ExportRow",
    crud.SUMMARY_ROW_COLUMNS,
    "One succeeded job in GET /export (format=json; format=csv has the same columns, in this order, an empty field for null): "
    "its identity, track and setting, and its summary (JobSummary). Every column unless the request chose some (`columns`).",
    partial=True,
    id=int,
)


# operation_id: `export` is a reserved word in TypeScript (a generated client would call it `_export`)
@router.get(
    "/export",
    operation_id="export_results",
    responses={
        200: {
            "model": list[ExportRow],
            "content": {"text/csv": {"schema": {"type": "string", "description": "the same rows as CSV, a header line first"}}},
        }
    },
)
def export(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    format: Literal["csv", "json"] = "csv",
    track: TrackQuery = None,
    columns: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="comma-separated column names, in the order wanted (default: all): the compare page asks "
            "for the 14 it reads, 62 % of the bytes",
        ),
    ] = None,
) -> Response:
    """Every succeeded job's summary row; served from the results cache until the next job succeeds."""
    cols = export_columns(columns)
    encode = export_json if format == "json" else export_csv
    scopes = None if track is None else [("track", crud.track_base(session=session, track=track))]

    def build() -> tuple[bytes, list[Scope] | None]:
        rows = crud.summary_tuples(session=session, track=track)
        if cols != crud.SUMMARY_ROW_COLUMNS:
            at = [crud.SUMMARY_ROW_COLUMNS.index(c) for c in cols]
            rows = [tuple(row[i] for i in at) for row in rows]
        return encode(rows, cols), scopes

    key = ("export", format, track) if columns is None else ("export", format, track, cols)
    body = cached_body(results_cache(request), session, key, build)
    headers = {"Content-Disposition": 'attachment; filename="dynds-results.csv"'} if format == "csv" else None
    return results_response(request, body, EXPORT_TYPES[format], headers)
