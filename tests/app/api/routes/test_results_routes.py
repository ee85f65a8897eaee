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
