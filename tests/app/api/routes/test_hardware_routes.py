"""Hardware identity through the API: on every job, in dedup answers, the jobs filter, the export, and the
leaderboard's tracks and side-by-side table (nothing pooled across hardware)."""

import csv
import io

from app.models import JobSummary
from tests.app.conftest import CPU_KEY, TEST_HARDWARE

API = "/api/v1"
GPU_KEY = TEST_HARDWARE["cuda"].key


def seeded(p, seed, **train):
    return {"dynds": {"schedule": {"kind": "stochastic", "p": p}}, "train": {"seed": seed, **train}}


def test_every_job_says_what_it_ran_on_and_the_list_filters_by_it(client, finished_job):
    cpu = finished_job(seeded(0.5, 0), hardware="cpu")
    gpu = finished_job(seeded(0.5, 1), hardware="cuda")
    job = client.get(f"{API}/jobs/{cpu}").json()
    assert job["hardware_key"] == CPU_KEY and job["summary"]["hardware_key"] == CPU_KEY
    assert job["hardware"]["device"] == "cpu" and job["hardware"]["model"] == "Test CPU" and job["hardware"]["threads"] == 1
    assert job["summary"]["contended"] is False
    listed = client.get(f"{API}/jobs", params={"hardware_key": GPU_KEY}).json()
    assert [j["id"] for j in listed["data"]] == [gpu] and listed["count"] == 1
    assert listed["data"][0]["hardware"]["device"] == "cuda" and listed["data"][0]["hardware_key"] == GPU_KEY
    # The summary as the OpenAPI types it (JobSummary forbids unknown keys), on the job and in the list,
    # which is encoded apart from the model (crud.list_jobs_json).
    for summary in (job["summary"], listed["data"][0]["summary"]):
        assert JobSummary.model_validate(summary).model_dump() == summary
    assert client.get(f"{API}/jobs", params={"hardware_key": "nowhere"}).json()["count"] == 0


def test_dedup_says_where_the_earlier_result_was_measured_and_a_pin_runs_anew(client, finished_job, session):
    from app.fleet.registry import register_worker
    from dynds_core.hardware import hardware_queues

    # A live worker of the test CPU, so that a job pinned to cpu is served (app/fleet refuses it otherwise here).
    cpu = TEST_HARDWARE["cpu"]
    register_worker(session=session, host="h", name="w", kind="embedded", pid=1, hardware=cpu, queues=[*hardware_queues(cpu), "dynds"])
    done = finished_job(seeded(0.5, 0))
    again = client.post(f"{API}/jobs", json={"spec": seeded(0.5, 0)})
    assert again.status_code == 200 and again.json()["deduplicated"] and again.json()["id"] == done
    assert again.json()["hardware_key"] == CPU_KEY
    pinned = client.post(f"{API}/jobs", json={"spec": seeded(0.5, 0, hardware="cpu")})
    assert pinned.status_code == 201 and not pinned.json()["deduplicated"] and pinned.json()["id"] != done
    assert pinned.json()["spec"]["train"]["hardware"] == "cpu"


def test_a_pin_that_contradicts_the_device_is_refused_naming_the_key(client):
    r = client.post(f"{API}/jobs", json={"spec": {"train": {"device": "cpu", "hardware": "cuda.nvidia-h100-80gb-hbm3"}}})
    assert r.status_code == 422, r.text
    assert "train.hardware" in r.text and "train.device" in r.text


def test_leaderboard_tracks_per_hardware_and_the_side_by_side_table(client, finished_job):
    for s, gap in enumerate((1.0, 1.5, 1.2)):
        finished_job(seeded(0.5, s), time_saving=0.4, acc_delta=-1.0, equal_time_gap=gap, hardware="cuda")
    for s, gap in enumerate((-3.0, -2.0, -2.5)):
        finished_job(seeded(0.5, s), time_saving=0.1, acc_delta=-1.0, equal_time_gap=gap, hardware="cpu")
    board = client.get(f"{API}/leaderboard", params={"max_acc_drop": 5}).json()
    assert sorted(t["hardware_key"] for t in board["tracks"]) == sorted([CPU_KEY, GPU_KEY])
    assert all(t["entries"][0]["n_seeds"] == 3 and len(t["entries"]) == 1 for t in board["tracks"])
    table = client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5, "min_hardware": 2}).json()
    (recipe,) = table["recipes"]
    (setting,) = recipe["settings"]
    assert setting["verdicts_differ"]
    assert setting["by_hardware"][GPU_KEY]["verdict"] == "beats_equal_time"
    assert setting["by_hardware"][CPU_KEY]["verdict"] == "loses_to_equal_time"
    gpu_track = next(t for t in board["tracks"] if t["hardware_key"] == GPU_KEY)
    one = client.get(f"{API}/leaderboard", params={"track": gpu_track["track_key"], "max_acc_drop": 5}).json()
    assert [t["track"] for t in one["tracks"]] == [gpu_track["track"]]
    # A recipe hash alone names no single track once two machines measured it.
    assert client.get(f"{API}/leaderboard", params={"track": gpu_track["recipe_hash"]}).json()["tracks"] == []
    assert client.get(f"{API}/leaderboard/hardware", params={"min_hardware": 0}).status_code == 422


def test_the_side_by_side_table_of_one_track_reads_that_recipe_only(client, finished_job, monkeypatch):
    """With ``track``, the table is built from that recipe's rows on every hardware key, not from every track's
    board (15 s cold at a million jobs); it is the full table's entry for that recipe."""
    from app.api.routes import results

    for recipe in ({}, {"epochs": 3}):  # two recipes (two track labels), each measured on both machines
        for s in range(3):
            for hw, gap in (("cuda", 1.0 + s / 10), ("cpu", -2.0 - s / 10)):
                finished_job(seeded(0.5, s, **recipe), time_saving=0.4, acc_delta=-1.0, equal_time_gap=gap, hardware=hw)
    full = client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5, "min_hardware": 2}).json()
    assert len(full["recipes"]) == 2
    tracks = client.get(f"{API}/leaderboard/tracks").json()["tracks"]
    boards, reads = [], []
    real, real_rows = results.full_leaderboard, results._rows
    monkeypatch.setattr(results, "full_leaderboard", lambda *a, **kw: boards.append(a) or real(*a, **kw))
    monkeypatch.setattr(results, "_rows", lambda *a, **kw: reads.append(kw) or real_rows(*a, **kw))
    for t in tracks:
        one = client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5, "min_hardware": 2, "track": t["track_key"]}).json()
        (recipe,) = one["recipes"]
        assert recipe["recipe_hash"] == t["recipe_hash"] and recipe == next(r for r in full["recipes"] if r["recipe_hash"] == t["recipe_hash"])
    assert boards == [] and reads == []  # each recipe's part of the full board, kept when that was built
    # Nothing in the track: no recipe, and the parameters as the full table states them.
    empty = client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5, "min_hardware": 2, "track": "no/such/track"}).json()
    assert empty == {**{k: full[k] for k in full if k != "recipes"}, "recipes": []}
    reads.clear()
    # A job of the recipe succeeds: its table is rebuilt with it.
    finished_job(seeded(0.5, 3), time_saving=0.4, acc_delta=-1.0, equal_time_gap=1.0, hardware="cuda")
    gpu = next(t for t in tracks if t["hardware_key"] == GPU_KEY and "e3" not in t["track"])
    (recipe,) = client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5, "min_hardware": 2, "track": gpu["track_key"]}).json()["recipes"]
    assert recipe["settings"][0]["by_hardware"][GPU_KEY]["n_seeds"] == 4
    assert len(reads) == 1  # that recipe's rows only, read again


def test_the_tracks_list_names_each_track_and_hardware_key_without_cells(client, finished_job):
    for s in range(2):
        finished_job(seeded(0.5, s), hardware="cpu")
    finished_job(seeded(0.25, 0), hardware="cpu")
    listed = client.get(f"{API}/leaderboard/tracks").json()["tracks"]
    assert [(t["hardware_key"], t["n_settings"], t["n_jobs"]) for t in listed] == [(CPU_KEY, 2, 3)]
    board = client.get(f"{API}/leaderboard", params={"include_noisy": True}).json()
    assert {k: listed[0][k] for k in ("track", "track_key", "recipe_hash", "frontier_key")} == {
        k: board["tracks"][0][k] for k in ("track", "track_key", "recipe_hash", "frontier_key")
    }
    assert "entries" not in listed[0]
    # A job that succeeds on other hardware adds its track at once (the cached list is per results version).
    finished_job(seeded(0.5, 0), hardware="cuda")
    listed = client.get(f"{API}/leaderboard/tracks").json()["tracks"]
    assert sorted(t["hardware_key"] for t in listed) == sorted([CPU_KEY, GPU_KEY])


def test_the_hardware_table_and_the_frontier_follow_their_openapi_schemas(client, finished_job):
    """The routes serve cached bytes, so FastAPI does not check them against their documented models: a field
    added, renamed or dropped in app/leaderboard must fail here, not in a client generated from the schema."""
    from app.api.routes.results import FrontierPublic, HardwareTablePublic, TracksPublic

    for s, gap in enumerate((1.0, 1.5, 1.2)):
        finished_job(seeded(0.5, s), time_saving=0.4, acc_delta=-1.0, equal_time_gap=gap, hardware="cuda")
        finished_job(seeded(0.5, s), time_saving=0.1, acc_delta=-1.0, equal_time_gap=-gap, hardware="cpu")
    table = HardwareTablePublic.model_validate(client.get(f"{API}/leaderboard/hardware", params={"max_acc_drop": 5}).json())
    assert {h for r in table.recipes for st in r.settings for h in st.by_hardware} == {CPU_KEY, GPU_KEY}
    tracks = TracksPublic.model_validate(client.get(f"{API}/leaderboard/tracks").json()).tracks
    gpu = next(t for t in tracks if t.hardware_key == GPU_KEY)
    front = FrontierPublic.model_validate(client.get(f"{API}/frontier", params={"track": gpu.track_key}).json())
    assert front.hardware_key == GPU_KEY and front.baseline and front.dynds
    schema = client.get("/openapi.json").json()["paths"]
    for path, model in (("/leaderboard/hardware", "HardwareTablePublic"), ("/frontier", "FrontierPublic"), ("/leaderboard/tracks", "TracksPublic")):
        assert schema[API + path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}


def test_contended_jobs_are_exported_and_left_out_of_rankings(client, finished_job):
    clean = [finished_job(seeded(0.5, s), time_saving=0.3, acc_delta=0.0) for s in range(3)]
    busy = [finished_job(seeded(0.7, s), time_saving=0.6, acc_delta=0.0, contended=True) for s in range(3)]
    entries = client.get(f"{API}/leaderboard").json()["tracks"][0]["entries"]
    assert [(e["job_ids"], e["rank"]) for e in entries] == [(clean, 1), (busy, None)]
    assert "contended" in entries[1]["why_unranked"]
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/export", params={"format": "csv"}).text)))
    assert {r["hardware_key"] for r in rows} == {CPU_KEY}
    assert [r["contended"] for r in rows if int(r["id"]) in busy] == ["True"] * 3
