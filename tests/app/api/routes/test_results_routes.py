"""GET /leaderboard and GET /export over jobs finished with constructed results."""

import csv
import io

API = "/api/v1"
TRACK = "resnet20/synthetic/e2-nall"


def sched(p):
    return {"dynds": {"schedule": {"kind": "stochastic", "p": p}}}


def seeded(p, seed):
    return {**sched(p), "train": {"seed": seed}}


def test_leaderboard_ranks_settings_over_seeds(client, finished_job, session):
    a = [finished_job(seeded(0.5, s), time_saving=ts, acc_delta=ad, equal_time_gap=1.0)
         for s, ts, ad in ((0, 0.30, -0.2), (1, 0.34, -0.4))]
    b = finished_job(seeded(0.8, 0), time_saving=0.55, acc_delta=-1.5)
    c = finished_job(seeded(0.2, 0), time_saving=0.12, acc_delta=0.1)
    finished_job(seeded(0.9, 0), time_saving=0.7, acc_delta=-0.1, baseline=False)  # no baseline: not ranked
    other_track = finished_job({"train": {"epochs": 3}}, time_saving=0.9, acc_delta=0.0)

    board = client.get(f"{API}/leaderboard", params={"max_acc_drop": 0.5}).json()
    assert board["max_acc_drop"] == 0.5
    tracks = {t["track"]: t for t in board["tracks"]}
    assert set(tracks) == {TRACK, "resnet20/synthetic/e3-nall"}
    entries = tracks[TRACK]["entries"]
    assert [e["job_ids"] for e in entries] == [sorted(a), [c], [b]]
    top = entries[0]
    assert top["rank"] == 1 and top["n_seeds"] == 2 and top["within_bound"] and top["schedule_kind"] == "stochastic"
    assert abs(top["time_saving_mean"] - 0.32) < 1e-9 and top["equal_time_gap_mean"] == 1.0
    assert top["setting"]["schedule"]["p"] == 0.5 and top["setting_key"].startswith("stochastic p=0.5")
    assert [e["pareto"] for e in entries] == [True, True, True]
    assert not entries[2]["within_bound"]
    assert tracks["resnet20/synthetic/e3-nall"]["entries"][0]["job_ids"] == [other_track]

    # A looser bound changes the order; a new result changes the (cached) answer.
    assert client.get(f"{API}/leaderboard", params={"max_acc_drop": 2}).json()["tracks"][0]["entries"][0]["job_ids"] == [b]
    only = client.get(f"{API}/leaderboard", params={"track": TRACK}).json()
    assert [t["track"] for t in only["tracks"]] == [TRACK]
    d = finished_job(seeded(0.6, 0), time_saving=0.5, acc_delta=0.0)
    assert client.get(f"{API}/leaderboard", params={"track": TRACK}).json()["tracks"][0]["entries"][0]["job_ids"] == [d]
    assert client.get(f"{API}/leaderboard", params={"max_acc_drop": -1}).status_code == 422


def test_export_csv_and_json(client, finished_job):
    j1 = finished_job({"name": "first", **seeded(0.5, 3)}, time_saving=0.25, acc_delta=-0.5)
    client.post(f"{API}/jobs", json={"spec": {"train": {"seed": 9}}})  # queued: not exported
    rows = client.get(f"{API}/export", params={"format": "json"}).json()
    assert len(rows) == 1
    (row,) = rows
    assert row["id"] == j1 and row["name"] == "first" and row["seed"] == 3 and row["track"] == TRACK
    assert row["time_saving"] == 0.25 and row["acc_delta"] == -0.5 and row["baseline_acc"] == 70.0
    r = client.get(f"{API}/export", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    (csv_row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert csv_row["id"] == str(j1) and float(csv_row["time_saving"]) == 0.25 and csv_row["setting_key"] == row["setting_key"]
    assert client.get(f"{API}/export", params={"format": "json", "track": "nope"}).json() == []
    assert client.get(f"{API}/export", params={"format": "xml"}).status_code == 422


def test_export_is_cached_until_a_job_succeeds(client, app, finished_job, session, result_for, monkeypatch):
    from app import crud
    from dynds_core.spec import JobSpec

    cache = app.state.leaderboard_cache
    j1 = finished_job(seeded(0.5, 0), time_saving=0.25)
    first = client.get(f"{API}/export", params={"format": "json"})
    assert [r["id"] for r in first.json()] == [j1]
    assert ("export", "json", None) in cache and ("export", "csv", None) not in cache
    builds = []
    real = crud.summary_tuples
    monkeypatch.setattr(crud, "summary_tuples", lambda **kw: builds.append(kw) or real(**kw))
    # Served from the cache: the very same bytes, without reading the rows again.
    assert client.get(f"{API}/export", params={"format": "json"}).content == first.content and builds == []
    # Jobs that are only queued or running change nothing the export shows: still cached.
    crud.create_job(session=session, spec=JobSpec.parse(seeded(0.3, 0)))
    running, _ = crud.create_job(session=session, spec=JobSpec.parse(seeded(0.4, 0)))
    crud.claim_job(session=session, job_id=running.id, worker="w")
    assert client.get(f"{API}/export", params={"format": "json"}).content == first.content and builds == []
    csv_before = client.get(f"{API}/export", params={"format": "csv", "track": TRACK}).text
    assert len(builds) == 1 and len(list(csv.DictReader(io.StringIO(csv_before)))) == 1

    # The running job succeeds: every cached export is stale and must not be served.
    assert crud.finish_job(session=session, job_id=running.id, result=result_for(JobSpec.parse(seeded(0.4, 0)), time_saving=0.4))
    rows = client.get(f"{API}/export", params={"format": "json"}).json()
    assert [r["id"] for r in rows] == [j1, running.id] and rows[1]["time_saving"] == 0.4
    csv_rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/export", params={"format": "csv", "track": TRACK}).text)))
    assert [int(r["id"]) for r in csv_rows] == [j1, running.id] and len(builds) == 3


def test_results_cache_is_bounded_by_entries_and_bytes():
    from app.api.routes.results import ResultsCache

    cache = ResultsCache(size=3, max_bytes=100)
    for i in range(4):
        cache.put(("k", i), (1, None), b"x" * 10)
    assert ("k", 0) not in cache and all(("k", i) in cache for i in (1, 2, 3))  # oldest first out
    assert cache.get(("k", 3), (1, None)) == b"x" * 10 and cache.get(("k", 3), (2, None)) is None  # other version: a miss
    cache.put(("big",), (1, None), b"y" * 90)  # 90 + 30 > 100: older entries make room
    assert ("big",) in cache and ("k", 1) not in cache and ("k", 2) not in cache
    cache.put(("huge",), (1, None), b"z" * 101)  # larger than the whole cache: not stored
    assert ("huge",) not in cache and ("big",) in cache
