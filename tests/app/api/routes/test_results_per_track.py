"""The results cache per track: the full leaderboard joined from per-track parts equals one build over every row
(random data), and a job finishing in one track rebuilds that track only, leaving the others' entries warm."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from app import crud
from app.api.routes.results import ResultsCache, board_body, cached_body, track_parts
from app.leaderboard import build_leaderboard, recipe_of
from app.main import create_app
from dynds_core.spec import JobSpec
from dynds_core.verdict import DEFAULT_MIN_SEEDS

API = "/api/v1"
# Recipes: two share a stored track label (they differ in the learning rate only), so their labels must be made
# unique within it; the others have labels of their own.
RECIPES = (
    {"train": {"epochs": 2}},
    {"train": {"epochs": 2, "lr": 0.05}},
    {"train": {"epochs": 3}},
    {"model": {"arch": "resnet32"}, "train": {"epochs": 2}},
)
HARDWARE = ("cpu:a", "cpu:b")
SETTINGS = ({"kind": "stochastic", "p": 0.5}, {"kind": "stochastic", "p": 0.8}, {"kind": "periodic", "every": 2})

row_data = st.tuples(
    st.sampled_from(range(len(RECIPES))),
    st.sampled_from(range(len(SETTINGS))),
    st.integers(0, 3),  # seed
    st.sampled_from(HARDWARE),
    st.one_of(st.none(), st.floats(-0.5, 0.9)),  # time saving (None: no baseline)
    st.floats(-3, 1),  # accuracy delta
    st.one_of(st.none(), st.floats(-1, 2)),  # gap to equal time
    st.booleans(),  # timing noisy
)


def summary_row(job_id: int, recipe: int, setting: int, seed: int, hw: str, ts, ad, gap, noisy) -> dict:
    """A leaderboard row as crud.summary_rows gives it (with ``job_id``), for a real spec."""
    data = json.loads(json.dumps(RECIPES[recipe]))
    data.setdefault("train", {})["seed"] = seed
    data["dynds"] = {"schedule": SETTINGS[setting]}
    spec = JobSpec.parse(data)
    cols = crud.job_columns(spec)
    row = {c: None for c in crud.SUMMARY_ROW_COLUMNS}
    row.update({k: cols[k] for k in ("name", "track", "recipe_hash", "arch", "dataset", "schedule_kind", "setting_key", "seed") if k in cols})
    row.update(
        job_id=job_id, seed=seed, hardware_key=hw, time_saving=ts, acc_delta=None if ts is None else ad, equal_time_gap=gap,
        dynds_acc=70 + ad, baseline_acc=70.0, timing_noisy=noisy, contended=False, setting=cols["setting"], recipe=recipe_of(spec.canonical()),
    )  # fmt: skip
    row.pop("id", None)
    return row


@settings(max_examples=40, deadline=None)
@given(st.lists(row_data, min_size=1, max_size=30), st.sampled_from((0.5, 2.0)), st.sampled_from((1, 2)), st.booleans())
def test_the_board_joined_from_tracks_equals_one_build_over_all_rows(data, max_acc_drop, min_seeds, include_noisy):
    rows = [summary_row(i + 1, *d) for i, d in enumerate(data)]
    params = {"max_acc_drop": max_acc_drop, "min_seeds": min_seeds, "include_noisy": include_noisy}
    full = build_leaderboard(rows, **params)
    parts = []
    for base in {r["track"] for r in rows}:
        parts += track_parts(build_leaderboard([r for r in rows if r["track"] == base], **params))
    assert json.loads(board_body(params, parts)) == json.loads(json.dumps(full))


def test_a_finish_in_one_track_leaves_the_other_tracks_cached(client, app, finished_job, session, result_for, monkeypatch):
    def seeded(arch, p, seed):  # two architectures: two tracks and two frontiers (budgets of one recipe share one)
        return {"model": {"arch": arch}, "train": {"seed": seed}, "dynds": {"schedule": {"kind": "stochastic", "p": p}}}

    for seed in range(2):
        finished_job(seeded("resnet20", 0.5, seed), time_saving=0.3, acc_delta=-0.1, equal_time_gap=0.5)
        finished_job(seeded("resnet32", 0.5, seed), time_saving=0.4, acc_delta=-0.2, equal_time_gap=0.5)
    board = client.get(f"{API}/leaderboard", params={"min_seeds": 1}).json()
    label_a, label_b = sorted(t["track"] for t in board["tracks"])
    base_a, base_b = (label.split(" on ")[0] for label in (label_a, label_b))
    assert base_a.startswith("resnet20/") and base_b.startswith("resnet32/")
    client.get(f"{API}/leaderboard", params={"track": label_b, "min_seeds": 1})
    client.get(f"{API}/frontier", params={"track": label_b, "min_seeds": 1})

    built: list = []
    real_rows, real_frontier = crud.summary_rows, crud.frontier_rows
    monkeypatch.setattr(crud, "summary_rows", lambda **kw: built.append(kw.get("base") or kw.get("track")) or real_rows(**kw))
    monkeypatch.setattr(crud, "frontier_rows", lambda **kw: built.append(("frontier", kw["track"])) or real_frontier(**kw))
    running, _ = crud.submit_job(session=session, spec=JobSpec.parse(seeded("resnet20", 0.8, 0)))
    crud.claim_job(session=session, job_id=running.id, worker="w")
    assert crud.finish_job(session=session, job_id=running.id, result=result_for(JobSpec.parse(seeded("resnet20", 0.8, 0)), time_saving=0.5))

    after = client.get(f"{API}/leaderboard", params={"min_seeds": 1}).json()
    assert built == [base_a]  # the full board read track A's rows again, and only those
    assert client.get(f"{API}/leaderboard", params={"track": label_b, "min_seeds": 1}).status_code == 200
    assert client.get(f"{API}/frontier", params={"track": label_b, "min_seeds": 1}).status_code == 200
    assert built == [base_a]  # B's board and frontier: still served from the cache
    only_a = client.get(f"{API}/leaderboard", params={"track": label_a, "min_seeds": 1}).json()
    assert len(built) == 2 and running.id in {i for e in only_a["tracks"][0]["entries"] for i in e["job_ids"]}

    # Whatever was served from the cache is what a build from scratch gives now.
    app.state.leaderboard_cache = None
    assert client.get(f"{API}/leaderboard", params={"min_seeds": 1}).json() == after
    assert running.id in {i for t in after["tracks"] for e in t["entries"] for i in e["job_ids"]}


def _warm_keys(cache) -> set:
    return {k for k in (("tracks",), ("recommendation", None, DEFAULT_MIN_SEEDS, False)) if k in cache}


@pytest.mark.parametrize("warm", [True, False])
def test_the_server_warms_the_tracks_list_and_the_recommendation_at_start_up(settings, dispatcher, finished_job, monkeypatch, warm):
    # At a million jobs the first build of these took 15 s, which the first visitor waited for.
    for seed in range(2):
        finished_job({"train": {"seed": seed}, "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}}}, time_saving=0.3, acc_delta=-0.1)
    app = create_app(settings.model_copy(update={"leaderboard_warm": warm}), dispatcher=dispatcher)
    cache = app.state.leaderboard_cache
    with TestClient(app) as client:
        deadline = time.monotonic() + 20
        while warm and len(_warm_keys(cache)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_warm_keys(cache)) == (2 if warm else 0)
        built: list = []
        real_rows = crud.summary_rows
        monkeypatch.setattr(crud, "summary_rows", lambda **kw: built.append(kw) or real_rows(**kw))
        tracks = client.get(f"{API}/leaderboard/tracks").json()["tracks"]
        recommendation = client.get(f"{API}/recommendation").json()["recommendations"]
        assert len(tracks) == 1 and tracks[0]["n_jobs"] == 2 and len(recommendation) == 1
        assert (built == []) == warm  # warmed: both served without reading a row


def test_requests_for_a_body_being_built_wait_for_that_build(engine):
    # A restarted server's first visitors all ask for the same board: one build, the others read its result.
    cache = ResultsCache()
    calls: list[int] = []

    def build():
        calls.append(1)
        time.sleep(0.3)
        return b'{"built":true}', None

    def request(_):
        with Session(engine) as session:
            return cached_body(cache, session, ("tracks",), build)

    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(request, range(4)))
    assert bodies == [b'{"built":true}'] * 4 and len(calls) == 1
    assert not cache._builders  # no lock kept once nobody waits
    assert request(None) and cached_body(None, None, ("tracks",), build) == b'{"built":true}' and len(calls) == 2  # no cache: built each time


def test_while_one_request_rebuilds_a_changed_body_the_others_get_the_previous_one(engine):
    # Under a fleet's finishes every read finds its track changed: one request rebuilds, the rest do not queue behind it.
    cache = ResultsCache()
    key = ("tracks",)
    cache.put(key, (None, {("track", "gone"): -1}), b'{"old":true}')  # built before a change: stale now
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_build():
        calls.append(1)
        started.set()
        release.wait(10)
        return b'{"new":true}', None

    def request(build):
        with Session(engine) as session:
            return cached_body(cache, session, key, build)

    with ThreadPoolExecutor(1) as pool:
        rebuilt = pool.submit(request, slow_build)
        assert started.wait(10)
        assert request(lambda: pytest.fail("a second build while one runs")) == b'{"old":true}'  # at once, no wait
        release.set()
        assert rebuilt.result(10) == b'{"new":true}'
    assert request(lambda: pytest.fail("rebuilt although unchanged")) == b'{"new":true}' and len(calls) == 1
