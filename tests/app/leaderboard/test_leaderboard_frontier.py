"""app/leaderboard/frontier.py: the budget frontier of a track, on constructed rows."""

import math

import pytest

from app.leaderboard import (
    build_frontier,
    frontier_key,
    position,
    recipe_hash,
    recipe_of,
    setting_key,
    track_of,
)
from dynds_core.spec import JobSpec

T2 = 4.303  # Student t, 0.975 quantile, 2 degrees of freedom (three seeds)


BASE = {"model": {"arch": "resnet20"}, "data": {"dataset": "cifar10", "train_subset": 1000}, "train": {"epochs": 12}}


def srow(job_id, *, epochs=12, seed=0, schedule=None, lr=None, **figures):
    data = {**BASE, "train": {"epochs": epochs, "seed": seed, **({"lr": lr} if lr else {})}}
    if schedule is not None:
        data["dynds"] = {"schedule": schedule}
        if schedule["kind"] == "none":
            data["baseline"] = False
    spec = JobSpec.parse(data).canonical()
    r = {
        "job_id": job_id,
        "track": track_of(spec),
        "recipe_hash": recipe_hash(spec),
        "recipe": recipe_of(spec),
        "arch": "resnet20",
        "dataset": "cifar10",
        "seed": seed,
        "setting_key": setting_key(spec["dynds"]),
        "setting": spec["dynds"],
        "schedule_kind": spec["dynds"]["schedule"]["kind"],
        "time_saving": None,
        "acc_delta": None,
        "equal_time_gap": None,
        "dynds_acc": None,
        "baseline_acc": None,
        "equal_time_acc": None,
        "timing_noisy": False,
    }
    r.update(figures)
    return r


# Baseline accuracy per budget (12 epochs = 1.0) for seeds 0, 1, 2: each band is mean +- 2.484 (t(2) / sqrt 3).
CURVE = {3: (50, 51, 52), 6: (60, 61, 62), 9: (70, 71, 72), 12: (72, 73, 74)}


def frontier_rows():
    rows, i = [], 0
    for epochs, accs in CURVE.items():
        for seed, acc in enumerate(accs):
            i += 1
            rows.append(srow(i, epochs=epochs, seed=seed, schedule={"kind": "none"}, dynds_acc=acc, dynds_steps=100 * epochs))
    rows.append(srow(99, epochs=6, seed=0, schedule={"kind": "none"}, lr=0.01, dynds_acc=0.0))  # another frontier: left out
    cells = {  # p: (time saving, DynDS accuracies per seed) -> expected position
        0.2: (0.5, (66, 67, 68)),  # x 0.5, band 58.5..63.5: above
        0.3: (0.375, (65, 66, 67)),  # x 0.625, interpolated band 63.5..68.5 (above 0.5's, below 0.75's): within
        0.4: (0.25, (55, 56, 57)),  # x 0.75, band 68.5..73.5: below
        0.9: (0.9, (40, 41, 42)),  # x 0.1: left of the curve
    }
    for p, (ts, accs) in cells.items():
        for seed, acc in enumerate(accs):
            i += 1
            extra = {}
            if p == 0.4:  # an equal-time run cut to half the steps, at the 6-epoch baseline's accuracy
                extra = {"equal_time_acc": CURVE[6][seed], "equal_time_steps": 600, "baseline_steps": 1200}
            rows.append(
                srow(
                    100 + i,
                    seed=seed,
                    schedule={"kind": "stochastic", "p": p},
                    time_saving=ts,
                    acc_delta=acc - CURVE[12][seed],
                    dynds_acc=acc,
                    baseline_acc=CURVE[12][seed],
                    dynds_steps=1200,
                    **extra,
                )
            )
    return rows


def test_frontier_positions_above_within_below_and_unknown():
    rows = frontier_rows()
    track = srow(0)["track"]
    front = build_frontier(rows, track=track)
    assert (
        front["track"] == f"{track} on unknown"
        and front["hardware_key"] == "unknown"
        and front["full_epochs"] == 12
        and front["recipe_hash"] == srow(0)["recipe_hash"]
    )
    assert front["frontier_key"] == frontier_key(JobSpec.parse(BASE).canonical())
    xs = [p["time_fraction"] for p in front["baseline"]]
    assert xs == [0.25, 0.5, 0.75, 1.0]
    by_x = {p["time_fraction"]: p for p in front["baseline"]}
    half = T2 / math.sqrt(3)
    assert by_x[0.25]["acc_mean"] == pytest.approx(51) and by_x[0.25]["acc_ci95"] == pytest.approx([51 - half, 51 + half], abs=1e-3)
    assert by_x[0.25]["n_seeds"] == 3 and by_x[0.25]["sources"] == ["baseline_only"]
    assert by_x[0.5]["sources"] == ["baseline_only", "equal_time"] and by_x[0.5]["acc_mean"] == pytest.approx(61)
    assert by_x[1.0]["sources"] == ["baseline_only", "paired_baseline"] and by_x[1.0]["n_seeds"] == 3
    assert 99 not in by_x[0.5]["job_ids"]
    points = {p["setting_key"].split(" |")[0]: p for p in front["dynds"]}
    assert {k: p["position"] for k, p in points.items()} == {
        "stochastic p=0.2": "above",
        "stochastic p=0.3": "within",
        "stochastic p=0.4": "below",
        "stochastic p=0.9": "unknown",
    }
    p = points["stochastic p=0.3"]
    assert p["time_fraction"] == pytest.approx(0.625) and p["time_fraction_ci95"] == pytest.approx([0.625, 0.625])
    assert p["acc_mean"] == pytest.approx(66) and p["n_seeds"] == 3 and p["verdict"] == "no_equal_time"
    assert build_frontier(rows, track=front["recipe_hash"]) == front
    assert build_frontier(rows, track="nope") is None


def test_band_position_uses_the_mean_where_a_point_has_no_interval():
    pts = [{"time_fraction": 0.5, "acc_mean": 60.0, "acc_ci95": None}, {"time_fraction": 1.0, "acc_mean": 70.0, "acc_ci95": [69.0, 71.0]}]
    assert position(pts, 0.5, 60.0) == "within" and position(pts, 0.5, 60.1) == "above" and position(pts, 0.5, 59.9) == "below"
    # At 0.75: band (60 + 69) / 2 .. (60 + 71) / 2 = 64.5 .. 65.5
    assert position(pts, 0.75, 64.4) == "below" and position(pts, 0.75, 65.0) == "within" and position(pts, 0.75, 65.6) == "above"
    assert position(pts, 1.04, 70.0) == "unknown" and position([], 0.5, 1.0) == "unknown" and position(pts, 0.5, None) == "unknown"
    # Within FRONTIER_GAP beyond an end point (budgets that close were merged into it): that point's band.
    assert position(pts, 0.497, 60.0) == "within" and position(pts, 0.497, 60.1) == "above" and position(pts, 0.47, 60.0) == "within"
    assert position(pts, 1.02, 71.5) == "above" and position(pts, 0.46, 60.0) == "unknown"


def test_equal_time_runs_of_one_setting_across_seeds_form_one_frontier_point():
    """Their budgets differ a little per seed (0.62, 0.63, 0.64): one point with a band over 3 seeds, not
    three one-seed points; the swept budgets stay apart."""
    rows = frontier_rows()
    for seed, (cut, acc) in enumerate(((62, 66.0), (63, 67.0), (64, 68.0))):
        rows.append(
            srow(
                200 + seed,
                seed=seed,
                schedule={"kind": "stochastic", "p": 0.5},
                time_saving=0.37,
                acc_delta=-5.0,
                equal_time_gap=-1.0,
                dynds_acc=67.0,
                baseline_acc=73.0,
                equal_time_acc=acc,
                equal_time_steps=cut * 12,
                baseline_steps=100 * 12,
                dynds_steps=100 * 12,
            )
        )
    front = build_frontier(rows, track=rows[-1]["recipe_hash"], min_seeds=3)  # the 12-epoch recipe
    near = [p for p in front["baseline"] if 0.6 < p["time_fraction"] < 0.7]
    assert len(near) == 1 and near[0]["time_fraction"] == pytest.approx(0.63)
    assert near[0]["n_seeds"] == 3 and near[0]["acc_mean"] == pytest.approx(67.0) and near[0]["acc_ci95"] is not None
    assert [p["time_fraction"] for p in front["baseline"] if p not in near] == [0.25, 0.5, 0.75, 1.0]
