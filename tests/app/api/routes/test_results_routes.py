"""GET /leaderboard and GET /export over jobs finished with constructed results."""

import csv
import io

import pytest

from app.leaderboard import recipe_hash
from dynds_core.spec import JobSpec
from tests.app.conftest import CPU_KEY

API = "/api/v1"
TRACK = "resnet20/synthetic/e2-nall"


def sched(p):
    return {"dynds": {"schedule": {"kind": "stochastic", "p": p}}}


def seeded(p, seed):
    return {**sched(p), "train": {"seed": seed}}


def test_leaderboard_ranks_settings_over_seeds(client, finished_job, session):
    a = [finished_job(seeded(0.5, s), time_saving=ts, acc_delta=ad, equal_time_gap=1.0) for s, ts, ad in ((0, 0.30, -0.2), (1, 0.34, -0.4))]
    b = finished_job(seeded(0.8, 0), time_saving=0.55, acc_delta=-1.5)
    c = finished_job(seeded(0.2, 0), time_saving=0.12, acc_delta=0.1)
    finished_job(seeded(0.9, 0), time_saving=0.7, acc_delta=-0.1, baseline=False)  # no baseline: not ranked
    other_track = finished_job({"train": {"epochs": 3}}, time_saving=0.9, acc_delta=0.0)

    board = client.get(f"{API}/leaderboard", params={"max_acc_drop": 0.5, "min_seeds": 1}).json()
    assert board["max_acc_drop"] == 0.5 and board["min_seeds"] == 1 and board["include_noisy"] is False
    tracks = {t["recipe_label"]: t for t in board["tracks"]}
    assert {t["track"] for t in board["tracks"]} == {f"{TRACK} on {CPU_KEY}", f"resnet20/synthetic/e3-nall on {CPU_KEY}"}
    assert set(tracks) == {TRACK, "resnet20/synthetic/e3-nall"}
    assert tracks[TRACK]["recipe_hash"] == recipe_hash(JobSpec().canonical()) and tracks[TRACK]["recipe"]["train"]["epochs"] == 2
    assert "seed" not in tracks[TRACK]["recipe"]["train"] and "dynds" not in tracks[TRACK]["recipe"]
    entries = tracks[TRACK]["entries"]
    assert [e["job_ids"] for e in entries] == [sorted(a), [c], [b]]
    top = entries[0]
    assert top["rank"] == 1 and top["n_seeds"] == 2 and top["within_bound"] and top["schedule_kind"] == "stochastic"
    assert top["seeds"] == [0, 1] and top["n_jobs"] == 2 and top["n_noisy"] == 0 and top["ranked"]
    assert abs(top["time_saving_mean"] - 0.32) < 1e-9 and top["equal_time_gap_mean"] == 1.0
    assert top["equal_time_gap_ci95"] == [1.0, 1.0] and top["verdict"] == "beats_equal_time"
    assert top["setting"]["schedule"]["p"] == 0.5 and top["setting_key"].startswith("stochastic p=0.5")
    assert [e["pareto"] for e in entries] == [True, True, True]
    assert not entries[2]["within_bound"]
    assert tracks["resnet20/synthetic/e3-nall"]["entries"][0]["job_ids"] == [other_track]

    # The default min_seeds (3): nothing here has enough seeds; listed, not ranked.
    default = client.get(f"{API}/leaderboard").json()
    assert board["tracks"] != default["tracks"] and default["min_seeds"] == 3
    assert all(e["rank"] is None and not e["ranked"] and "min_seeds" in e["why_unranked"] for t in default["tracks"] for e in t["entries"])
    assert {e["verdict"] for t in default["tracks"] for e in t["entries"]} == {"needs_seeds", "no_equal_time"}

    # A looser bound changes the order; a new result changes the (cached) answer.
    assert client.get(f"{API}/leaderboard", params={"max_acc_drop": 2, "min_seeds": 1}).json()["tracks"][0]["entries"][0]["job_ids"] == [b]
    only = client.get(f"{API}/leaderboard", params={"track": TRACK, "min_seeds": 1}).json()
    assert [t["recipe_label"] for t in only["tracks"]] == [TRACK] and only["tracks"][0]["hardware_key"] == CPU_KEY
    by_hash = client.get(f"{API}/leaderboard", params={"track": tracks[TRACK]["recipe_hash"], "min_seeds": 1}).json()
    assert by_hash == only
    d = finished_job(seeded(0.6, 0), time_saving=0.5, acc_delta=0.0)
    assert client.get(f"{API}/leaderboard", params={"track": TRACK, "min_seeds": 1}).json()["tracks"][0]["entries"][0]["job_ids"] == [d]
    assert client.get(f"{API}/leaderboard", params={"max_acc_drop": -1}).status_code == 422
    assert client.get(f"{API}/leaderboard", params={"min_seeds": 0}).status_code == 422
    assert client.get(f"{API}/leaderboard", params={"min_seeds": 101}).status_code == 422


def test_other_lr_or_image_size_never_pools(client, finished_job):
    same = finished_job(seeded(0.5, 0), time_saving=0.3, acc_delta=0.0)
    lr = finished_job({**seeded(0.5, 0), "train": {"seed": 0, "lr": 0.01}}, time_saving=0.5, acc_delta=0.0)
    img = finished_job({**seeded(0.5, 0), "data": {"image_size": 16}}, time_saving=0.7, acc_delta=0.0)
    board = client.get(f"{API}/leaderboard", params={"min_seeds": 1}).json()
    assert len(board["tracks"]) == 3  # one label, three recipes: three tracks
    assert sorted(t["entries"][0]["job_ids"] for t in board["tracks"]) == [[same], [lr], [img]]
    labels = {t["entries"][0]["job_ids"][0]: t["track"] for t in board["tracks"]}
    assert len(set(labels.values())) == 3 and all(label.startswith(TRACK + " · ") for label in labels.values())
    assert "train.lr=0.01" in labels[lr] and "data.image_size=16" in labels[img]
    for t in board["tracks"]:
        for key in (t["track"], t["recipe_hash"]):
            got = client.get(f"{API}/leaderboard", params={"track": key, "min_seeds": 1}).json()["tracks"]
            assert [x["recipe_hash"] for x in got] == [t["recipe_hash"]] and got[0]["track"] == t["track"]
            assert [r["id"] for r in client.get(f"{API}/export", params={"format": "json", "track": key}).json()] == t["entries"][0]["job_ids"]
    assert client.get(f"{API}/leaderboard", params={"track": TRACK}).json()["tracks"] == []


def test_a_forced_rerun_of_one_seed_counts_as_one_seed(client, finished_job):
    ids = [
        finished_job(seeded(0.5, 0), time_saving=0.2, acc_delta=-1.0),  # finished_job forces: same spec again
        finished_job(seeded(0.5, 0), time_saving=0.4, acc_delta=-3.0),
        finished_job(seeded(0.5, 1), time_saving=0.5, acc_delta=-2.0),
    ]
    (e,) = client.get(f"{API}/leaderboard", params={"min_seeds": 1, "max_acc_drop": 5}).json()["tracks"][0]["entries"]
    assert e["n_seeds"] == 2 and e["n_jobs"] == 3 and e["seeds"] == [0, 1] and e["job_ids"] == ids
    assert abs(e["time_saving_mean"] - 0.4) < 1e-9  # seed 0 averaged first: (0.3 + 0.5) / 2, not (0.2 + 0.4 + 0.5) / 3
    assert abs(e["acc_delta_mean"] + 2.0) < 1e-9


def test_noisy_jobs_are_counted_but_not_ranked_unless_included(client, finished_job):
    clean = [finished_job(seeded(0.5, s), time_saving=0.3, acc_delta=0.0) for s in range(3)]
    noisy = [finished_job(seeded(0.7, s), time_saving=0.6, acc_delta=0.0, timing_noisy=True) for s in range(3)]
    entries = client.get(f"{API}/leaderboard").json()["tracks"][0]["entries"]
    assert [(e["job_ids"], e["rank"], e["n_noisy"]) for e in entries] == [(clean, 1, 0), (noisy, None, 3)]
    assert "noisy" in entries[1]["why_unranked"]
    included = client.get(f"{API}/leaderboard", params={"include_noisy": True}).json()["tracks"][0]["entries"]
    assert [(e["job_ids"], e["rank"]) for e in included] == [(noisy, 1), (clean, 2)]
    job = client.get(f"{API}/jobs/{noisy[0]}").json()
    assert job["summary"]["timing_noisy"] is True and job["recipe_hash"] == recipe_hash(JobSpec.parse(seeded(0.7, 0)).canonical())


def frontier_spec(epochs, seed, p=None):
    data = {"data": {"train_subset": 100}, "train": {"epochs": epochs, "seed": seed}}
    if p is None:
        return {**data, "dynds": {"schedule": {"kind": "none"}}, "baseline": False}
    return {**data, "dynds": {"schedule": {"kind": "stochastic", "p": p}}}


def test_frontier_endpoint(client, finished_job):
    # Baseline-only runs at 2 and 4 of 4 epochs (50 %, 100 %), three seeds each.
    for epochs, accs in ((2, (60.0, 61.0, 62.0)), (4, (70.0, 71.0, 72.0))):
        for seed, acc in enumerate(accs):
            finished_job(frontier_spec(epochs, seed), baseline=False, acc_delta=acc - 70.0, steps=25 * epochs)
    above = [finished_job(frontier_spec(4, s, 0.3), time_saving=0.5, acc_delta=0.0, baseline_acc=71.0 + s) for s in range(3)]
    # Their equal-time runs: half the steps (x 0.5) at 61 + seed (the 2-epoch baseline's accuracies).
    below = [
        finished_job(
            frontier_spec(4, s, 0.6), time_saving=0.5, acc_delta=-20.0, baseline_acc=71.0 + s, equal_time_gap=-10.0, steps=100, equal_time_steps=50
        )
        for s in range(3)
    ]
    track = "resnet20/synthetic/e4-n100"
    r = client.get(f"{API}/frontier", params={"track": track})
    assert r.status_code == 200, r.text
    front = r.json()
    assert front["track"] == f"{track} on {CPU_KEY}" and front["full_epochs"] == 4 and front["recipe"]["train"]["epochs"] == 4
    assert [p["time_fraction"] for p in front["baseline"]] == [0.5, 1.0]
    half, full = front["baseline"]
    assert half["sources"] == ["baseline_only", "equal_time"] and half["n_seeds"] == 3
    assert (
        full["sources"] == ["baseline_only", "paired_baseline"] and abs(full["acc_mean"] - (71 + 2 / 3)) < 1e-9
    )  # per seed: 70 + 71 + 71 over 3, ...
    points = {tuple(p["job_ids"]): p for p in front["dynds"]}
    assert points[tuple(above)]["position"] == "above" and points[tuple(above)]["time_fraction"] == 0.5
    assert points[tuple(below)]["position"] == "below"
    assert client.get(f"{API}/frontier", params={"track": front["recipe_hash"]}).json() == front
    assert client.get(f"{API}/frontier", params={"track": "nope/none"}).status_code == 404
    assert client.get(f"{API}/frontier").status_code == 422


def test_export_csv_and_json(client, finished_job):
    from app.api.routes.results import ExportRow

    j1 = finished_job({"name": "first", **seeded(0.5, 3)}, time_saving=0.25, acc_delta=-0.5)
    client.post(f"{API}/jobs", json={"spec": {"train": {"seed": 9}}})  # queued: not exported
    rows = client.get(f"{API}/export", params={"format": "json"}).json()
    assert len(rows) == 1
    (row,) = rows
    assert row["id"] == j1 and row["name"] == "first" and row["seed"] == 3 and row["track"] == TRACK
    assert row["time_saving"] == 0.25 and row["acc_delta"] == -0.5 and row["baseline_acc"] == 70.0
    assert row["recipe_hash"] == recipe_hash(JobSpec.parse(seeded(0.5, 3)).canonical())
    assert row["timing_noisy"] is False and row["verdict"] is None and row["time_saving_interleaved"] is None
    # The OpenAPI's row type is what is sent: every column, none unknown (ExportRow forbids extras).
    assert ExportRow.model_validate(row).model_dump() == row
    r = client.get(f"{API}/export", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].split(",") == list(ExportRow.model_fields)
    (csv_row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert csv_row["id"] == str(j1) and float(csv_row["time_saving"]) == 0.25 and csv_row["setting_key"] == row["setting_key"]
    assert client.get(f"{API}/export", params={"format": "json", "track": "nope"}).json() == []
    assert client.get(f"{API}/export", params={"format": "xml"}).status_code == 422


def test_export_gives_the_columns_asked_for_in_their_order(client, app, finished_job):
    from app.api.routes.results import ExportRow

    j1 = finished_job(seeded(0.5, 1), time_saving=0.25, acc_delta=-0.5)
    j2 = finished_job(seeded(0.5, 2), time_saving=0.3, acc_delta=-0.1)
    full = client.get(f"{API}/export", params={"format": "json"}).json()
    rows = client.get(f"{API}/export", params={"format": "json", "columns": "time_saving, id,hardware_key,id"}).json()
    assert [list(r) for r in rows] == [["time_saving", "id", "hardware_key"]] * 2  # a repeat is dropped
    assert rows == [{"time_saving": r["time_saving"], "id": r["id"], "hardware_key": r["hardware_key"]} for r in full]
    assert [r["id"] for r in rows] == [j1, j2]
    # The OpenAPI's row requires no column, so a client generated from it reads such rows too.
    assert ExportRow.model_validate(rows[0]).model_dump(exclude_unset=True) == rows[0]
    assert not app.openapi()["components"]["schemas"]["ExportRow"].get("required")
    csv_text = client.get(f"{API}/export", params={"format": "csv", "track": TRACK, "columns": "id,acc_delta"}).text
    assert csv_text.splitlines() == ["id,acc_delta", f"{j1},-0.5", f"{j2},-0.1"]
    # The full export is still every column (a cached narrow body is never served for it).
    assert client.get(f"{API}/export", params={"format": "json"}).json() == full


@pytest.mark.parametrize("columns", ["id,nope,also_not", ",", "result"])
def test_export_refuses_an_unknown_column_naming_it(client, finished_job, columns):
    finished_job(seeded(0.5, 1))
    r = client.get(f"{API}/export", params={"format": "json", "columns": columns})
    assert r.status_code == 422
    (err,) = r.json()["errors"]
    assert err["loc"] == ["query", "columns"]
    for bad in {"nope", "also_not", "result"} & set(columns.split(",")):
        assert repr(bad) in err["msg"]
    assert "time_saving" in err["msg"]  # what to choose from


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
    crud.submit_job(session=session, spec=JobSpec.parse(seeded(0.3, 0)))
    running, _ = crud.submit_job(session=session, spec=JobSpec.parse(seeded(0.4, 0)))
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


def test_large_results_go_gzipped_compressed_once_per_body(client, app, finished_job, session, result_for, monkeypatch):
    """A results body past GZIP_MIN_BYTES goes gzipped to a client that accepts gzip: the same JSON, compressed once
    while the body is unchanged and again when a job's success changes it; never to a client that does not ask."""
    import gzip

    from app import crud
    from app.api.routes import results
    from dynds_core.spec import JobSpec

    monkeypatch.setattr(results, "GZIP_MIN_BYTES", 100)  # a few jobs' export is past it
    compressed = []
    real = gzip.compress
    monkeypatch.setattr(results.gzip, "compress", lambda data, **kw: compressed.append(len(data)) or real(data, **kw))
    j1 = finished_job(seeded(0.5, 0), time_saving=0.25)
    finished_job(seeded(0.5, 1), time_saving=0.3)
    plain = client.get(f"{API}/export", params={"format": "json"}, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding" and compressed == []
    for _ in range(3):
        r = client.get(f"{API}/export", params={"format": "json"}, headers={"Accept-Encoding": "gzip, deflate"})
        assert r.headers["content-encoding"] == "gzip" and r.json() == plain.json()  # httpx decompressed it
    assert compressed == [len(plain.content)]  # once for three requests
    board = client.get(f"{API}/leaderboard", headers={"Accept-Encoding": "gzip"})
    assert board.headers["content-encoding"] == "gzip" and board.json()["tracks"][0]["track"].startswith(TRACK)
    # A job succeeds: a new body, compressed anew, with the new job in it.
    running, _ = crud.submit_job(session=session, spec=JobSpec.parse(seeded(0.4, 0)))
    crud.claim_job(session=session, job_id=running.id, worker="w")
    crud.finish_job(session=session, job_id=running.id, result=result_for(JobSpec.parse(seeded(0.4, 0)), time_saving=0.4))
    rows = client.get(f"{API}/export", params={"format": "json"}, headers={"Accept-Encoding": "gzip"}).json()
    assert [r["id"] for r in rows][0] == j1 and rows[-1]["id"] == running.id and len(compressed) == 3
    # Small bodies (the default threshold) and a server without the results cache: never compressed.
    monkeypatch.setattr(results, "GZIP_MIN_BYTES", 32 * 1024)
    assert "content-encoding" not in client.get(f"{API}/export", params={"format": "json"}, headers={"Accept-Encoding": "gzip"}).headers
    monkeypatch.setattr(results, "GZIP_MIN_BYTES", 100)
    monkeypatch.setattr(app.state, "leaderboard_cache", None)
    assert "content-encoding" not in client.get(f"{API}/export", params={"format": "json"}, headers={"Accept-Encoding": "gzip"}).headers


def test_a_gzipped_body_is_held_with_its_source_and_counted_in_the_cache_bytes():
    from app.api.routes.results import ResultsCache

    cache = ResultsCache(size=10, max_bytes=10_000)
    body = b'{"a":' + b"1" * 4000 + b"}"
    gz = cache.gzipped(body)
    assert gz is not None and len(gz) < 100 and cache.gzipped(body) is gz
    assert cache._bytes == len(gz) + len(body)  # an old body kept alive by its gzip entry is counted
    other = body[:1] + body[1:]  # equal bytes, another body: compressed on its own (identity is the key)
    assert cache.gzipped(other) is not gz and cache._bytes == 2 * (len(gz) + len(body))


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
