"""The leaderboard as a pure function over constructed summary rows."""

import pytest

from app.leaderboard import build_leaderboard, setting_key, track_of
from dynds_core.spec import JobSpec

TRACK = "resnet20/cifar10/e12-n10000"


def row(job_id, key, time_saving, acc_delta, gap=None, track=TRACK):
    return {"job_id": job_id, "track": track, "arch": "resnet20", "dataset": "cifar10", "setting_key": key,
            "setting": {"key": key}, "schedule_kind": "stochastic", "time_saving": time_saving, "acc_delta": acc_delta,
            "equal_time_gap": gap}


def test_ranks_within_bound_first_then_by_mean_time_saving():
    rows = [
        row(1, "fast-but-worse", 0.60, -2.0),  # outside a 0.5 bound
        row(2, "good", 0.30, -0.1),
        row(3, "better", 0.40, -0.4),
        row(4, "slow", 0.10, 0.2),
    ]
    entries = build_leaderboard(rows, max_acc_drop=0.5)["tracks"][0]["entries"]
    assert [e["setting_key"] for e in entries] == ["better", "good", "slow", "fast-but-worse"]
    assert [e["rank"] for e in entries] == [1, 2, 3, 4]
    assert [e["within_bound"] for e in entries] == [True, True, True, False]
    # A wider bound lets the fastest setting lead.
    wide = build_leaderboard(rows, max_acc_drop=3.0)["tracks"][0]["entries"]
    assert wide[0]["setting_key"] == "fast-but-worse"


def test_pools_seeds_into_mean_and_sample_std():
    rows = [row(1, "s", 0.30, -0.2, gap=1.0), row(2, "s", 0.34, -0.4, gap=2.0), row(3, "s", 0.32, 0.0, gap=None)]
    (entry,) = build_leaderboard(rows)["tracks"][0]["entries"]
    assert entry["n_seeds"] == 3
    assert entry["time_saving_mean"] == pytest.approx(0.32)
    assert entry["time_saving_std"] == pytest.approx(0.02)
    assert entry["acc_delta_mean"] == pytest.approx(-0.2)
    assert entry["acc_delta_std"] == pytest.approx(0.2)
    # The equal-time gap averages only the seeds where that baseline ran.
    assert entry["equal_time_gap_mean"] == pytest.approx(1.5)
    assert entry["job_ids"] == [1, 2, 3]


def test_pareto_flag():
    rows = [row(1, "a", 0.5, -1.0), row(2, "b", 0.3, -0.1), row(3, "dominated", 0.2, -0.5), row(4, "c", 0.1, 0.3)]
    entries = {e["setting_key"]: e for e in build_leaderboard(rows, max_acc_drop=5)["tracks"][0]["entries"]}
    assert {k for k, e in entries.items() if e["pareto"]} == {"a", "b", "c"}


def test_tracks_are_separate_and_rows_without_baseline_do_not_count():
    rows = [row(1, "a", 0.3, 0.0), row(2, "a", 0.9, 0.0, track="resnet20/cifar10/e1-nall"), row(3, "b", None, None)]
    board = build_leaderboard(rows)
    assert [t["track"] for t in board["tracks"]] == ["resnet20/cifar10/e1-nall", TRACK]
    assert all(e["setting_key"] != "b" for t in board["tracks"] for e in t["entries"])
    only = build_leaderboard(rows, track=TRACK)
    assert [t["track"] for t in only["tracks"]] == [TRACK]


def test_negative_bound_is_refused():
    with pytest.raises(ValueError, match="max_acc_drop"):
        build_leaderboard([], max_acc_drop=-1)


def test_track_and_setting_key_from_a_spec():
    spec = JobSpec.parse({"model": {"arch": "resnet32"}, "data": {"dataset": "cifar10", "train_subset": 5000}, "train": {"epochs": 12}})
    assert track_of(spec.canonical()) == "resnet32/cifar10/e12-n5000"
    assert track_of(JobSpec().canonical()) == "resnet20/synthetic/e2-nall"
    assert setting_key(spec.canonical()["dynds"]) == "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
    periodic = JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "pattern": "RRF"}, "kernel": {"mode": "max", "scale": "none"}}})
    assert setting_key(periodic.canonical()["dynds"]) == "periodic RRF | max k2s1 none | in/2 avg | bn frozen"
