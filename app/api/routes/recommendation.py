"""What should I use? The recommendation per track (and hardware key) from the leaderboard's cells
(app/leaderboard/recommendation.py): the setting whose verdict holds with the best gap to the baseline trained
for the same time, or the plain statement that nothing tested beats training the baseline for less time."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from app.api.deps import ReadAuthDep, SessionDep
from app.api.routes.results import ResultsCache, Scope, cached_body, full_leaderboard, results_cache, results_response, track_leaderboard
from app.leaderboard.recommendation import build_recommendations
from dynds_core.verdict import DEFAULT_MIN_SEEDS

router = APIRouter(tags=["results"])


class RecommendationEvidence(BaseModel):
    """The cell an answer rests on: its seeds, intervals (percentage points; time saving as a fraction) and jobs."""

    setting_key: str
    method: str
    schedule_kind: str
    verdict: str
    verdict_sentence: str
    n_seeds: int
    seeds: list[int]
    job_ids: list[int]
    equal_time_gap_mean: float | None
    equal_time_gap_ci95: list[float] | None
    time_saving_mean: float | None
    time_saving_ci95: list[float] | None
    acc_delta_mean: float | None
    acc_delta_ci95: list[float] | None
    link: str  # the dashboard's view of the track


class Recommendation(BaseModel):
    """One track's answer. kind: setting (use evidence's setting), baseline_for_less_time (nothing tested beats
    the baseline trained for the same time), not_enough_evidence (no conclusive verdict yet)."""

    track: str
    track_key: str
    recipe_label: str
    hardware_key: str | None
    kind: Literal["setting", "baseline_for_less_time", "not_enough_evidence"]
    headline: str
    evidence: RecommendationEvidence | None
    n_settings: int
    n_conclusive: int
    verdicts: dict[str, int]


class RecommendationsPublic(BaseModel):
    min_seeds: int
    include_noisy: bool
    recommendations: list[Recommendation]


@router.get("/recommendation", response_model=RecommendationsPublic)
def recommendation(
    request: Request,
    session: SessionDep,
    _: ReadAuthDep,
    track: Annotated[str | None, Query(description="a track label or key, as GET /leaderboard takes it; default: every track")] = None,
    min_seeds: Annotated[int, Query(ge=1, le=100, description="seeds a cell needs to be judged")] = DEFAULT_MIN_SEEDS,
    include_noisy: Annotated[bool, Query(description="count jobs whose timing was noisy or whose hardware was contended")] = False,
) -> Response:
    """Per track (a recipe on one hardware key): what to use, with the evidence one link away. Built from the
    leaderboard as the results cache keeps it (per track), and cached itself until a job of a track it read
    succeeds: at a million jobs a build from every row took 15 s, on every request."""
    body = recommendation_body(results_cache(request), session, track=track, min_seeds=min_seeds, include_noisy=include_noisy)
    return results_response(request, body)


def recommendation_body(cache: ResultsCache | None, session, *, track: str | None, min_seeds: int, include_noisy: bool) -> bytes:
    """GET /recommendation's JSON, cached until a job of a track it read succeeds."""
    params = {"max_acc_drop": 0.5, "min_seeds": min_seeds, "include_noisy": include_noisy}

    def build() -> tuple[bytes, list[Scope] | None]:
        if track is None:
            board, scopes = json.loads(full_leaderboard(cache, session, params)), None
        else:
            body, scope = track_leaderboard(cache, session, track, params)
            board, scopes = json.loads(body), [scope]
        return RecommendationsPublic.model_validate(build_recommendations(board)).model_dump_json().encode(), scopes

    return cached_body(cache, session, ("recommendation", track, min_seeds, include_noisy), build)
