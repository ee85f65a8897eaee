"""DynDS's relatives through the service: a sweep over methods (DynDS, progressive resizing, Mix&Match, FixRes
BatchNorm recalibration) run by the embedded executor ends in one leaderboard, each setting labelled by its
method, with a recommendation for the track."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_helpers import tiny_spec, wait_until

from app.main import create_app
from worker.embedded import EmbeddedExecutor

API = "/api/v1"
METHODS = [
    {"kind": "stochastic"},
    {"kind": "progressive"},
    {"kind": "mixsize"},
]


@pytest.fixture
def served(settings):
    executor = EmbeddedExecutor(settings, idle_poll_s=0.5)
    with TestClient(create_app(settings, dispatcher=executor)) as client:
        yield client


@pytest.mark.slow  # four tiny jobs, each with its equal-time run: ~20 s alone, more on a loaded machine
def test_a_sweep_over_methods_ends_in_one_labelled_leaderboard_with_a_recommendation(served):
    client = served
    meta = client.get(f"{API}/meta").json()
    assert {"progressive", "mixsize"} <= set(meta["choices"]["schedule_kind"])
    assert meta["schedule_defaults"]["progressive"]["initial_scale"] == 0.5

    base = {**tiny_spec(), "equal_time_baseline": True}
    base["dynds"] = {"bn_recalibration": None}
    r = client.post(f"{API}/sweeps", json={"name": "relatives", "base": base, "grid": {"dynds.schedule": METHODS}})
    assert r.status_code == 201, r.text
    # FixRes on top of Mix&Match: one more setting of the same track
    fixres = {**base, "dynds": {"schedule": {"kind": "mixsize"}, "bn_recalibration": {"batches": 2}}}
    r2 = client.post(f"{API}/jobs", json={"spec": fixres})
    assert r2.status_code == 201, r2.text
    ids = [j["id"] for j in r.json()["jobs"]] + [r2.json()["id"]]

    def done():
        jobs = [client.get(f"{API}/jobs/{i}").json() for i in ids]
        return all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) and jobs

    jobs = wait_until(done, 240, "the sweep's jobs to finish")
    assert [j["status"] for j in jobs] == ["succeeded"] * 4, [j.get("error") for j in jobs]
    by_kind = {j["result"]["spec"]["dynds"]["schedule"]["kind"]: j["result"] for j in jobs[:3]}
    assert by_kind["progressive"]["dynds"]["steps_by_size"] and by_kind["stochastic"]["dynds"]["steps_by_size"] is None
    assert jobs[3]["result"]["dynds"]["bn_recalibration_s"] > 0

    board = client.get(f"{API}/leaderboard", params={"min_seeds": 1, "max_acc_drop": 100}).json()
    (track,) = board["tracks"]  # one recipe on one machine: one track for every method
    keys = sorted(e["setting_key"] for e in track["entries"])
    assert len(keys) == 4
    assert [k.split(" ")[0] for k in keys] == ["mixsize", "mixsize", "progressive", "stochastic"]
    assert any(k.startswith("progressive x0.5 delay=0.5 ft=0.2 +4px | kernel full") for k in keys)
    assert any(k.endswith("| bn recal 2") for k in keys)
    assert all(e["verdict"] != "no_equal_time" for e in track["entries"])

    rec = client.get(f"{API}/recommendation", params={"min_seeds": 1}).json()
    (one,) = rec["recommendations"]
    assert one["track_key"] == track["track_key"] and one["n_settings"] == 4
    assert one["kind"] in ("setting", "baseline_for_less_time", "not_enough_evidence") and one["headline"]
    assert one["evidence"] is not None and one["evidence"]["job_ids"]
