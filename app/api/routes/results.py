"""Results: the leaderboard of schedule settings per track, and an export of every succeeded job's summary."""

from __future__ import annotations

import csv
import io
import json
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from app import crud
from app.api.deps import ReadAuthDep, SessionDep
from app.leaderboard import build_leaderboard

router = APIRouter(tags=["results"])


class LeaderboardCache:
    """Encoded leaderboards, valid while the set of succeeded jobs is unchanged (one cheap aggregate query)."""

    def __init__(self, size: int = 64):
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[tuple, bytes]] = {}

    def get(self, key: tuple, version: tuple) -> bytes | None:
        with self._lock:
            hit = self._entries.get(key)
        return hit[1] if hit and hit[0] == version else None

    def put(self, key: tuple, version: tuple, body: bytes) -> None:
        with self._lock:
            if len(self._entries) >= self.size and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (version, body)


@router.get(
    "/leaderboard",
    responses={200: {"description": "tracks with ranked settings (see docs/api.md)", "content": {"application/json": {}}}},
)
def leaderboard(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    track: str | None = None,
    max_acc_drop: Annotated[float, Query(ge=0, le=100, description="percentage points")] = 0.5,
) -> Response:
    cache: LeaderboardCache | None = request.app.state.leaderboard_cache
    key = (track, max_acc_drop)
    version = crud.results_version(session=session)
    body = cache.get(key, version) if cache else None
    if body is None:
        rows = crud.summary_rows(session=session, track=track, with_setting=True)
        for r in rows:
            r["job_id"] = r.pop("id")
        body = json.dumps(build_leaderboard(rows, max_acc_drop=max_acc_drop, track=track), separators=(",", ":")).encode()
        if cache:
            cache.put(key, version, body)
    return Response(body, media_type="application/json")


@router.get("/export", responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export(
    session: SessionDep,
    _: ReadAuthDep,
    format: Literal["csv", "json"] = "csv",
    track: str | None = None,
) -> Response:
    rows = crud.summary_rows(session=session, track=track)
    if format == "json":
        return Response(json.dumps(rows), media_type="application/json")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(crud.SUMMARY_ROW_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="dynds-results.csv"'},
    )
