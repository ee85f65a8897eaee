"""The leaderboard and the budget frontier as pure functions over constructed summary rows."""

import math
import statistics

import pytest

from app.leaderboard import (
    build_frontier,
    build_leaderboard,
    frontier_epochs,
    frontier_key,
    position,
    recipe_hash,
    recipe_of,
    setting_key,
    track_labels,
    track_of,
)
from dynds_core.spec import JobSpec
from dynds_core.verdict import judge

TRACK = "resnet20/cifar10/e12-n10000"
T2 = 4.303  # Student t, 0.975 quantile, 2 degrees of freedom (three seeds)


def row(job_id, key, time_saving, acc_delta, gap=None, *, seed=None, recipe="r1", track=TRACK, noisy=False, dynds_acc=None):
    return {"job_id": job_id, "track": track, "recipe_hash": recipe, "recipe": None, "arch": "resnet20", "dataset": "cifar10",
            "setting_key": key, "setting": {"key": key}, "schedule_kind": "stochastic", "seed": job_id if seed is None else seed,
            "time_saving": time_saving, "acc_delta": acc_delta, "equal_time_gap": gap, "dynds_acc": dynds_acc, "timing_noisy": noisy}


def seeds3(start, key, ts, acc, gaps=(None, None, None), **kw):
    """Three seeds (0, 1, 2) of one cell with the given per-seed figures (scalars repeat)."""
    ts = ts if isinstance(ts, (list, tuple)) else [ts] * 3
    acc = acc if isinstance(acc, (list, tuple)) else [acc] * 3
    return [row(start + i, key, ts[i], acc[i], gaps[i], seed=i, **kw) for i in range(3)]


def entries_of(board, track=TRACK):
    return next(t for t in board["tracks"] if t["track"] == track)["entries"]


# ---------------------------------------------------------------- recipes


def test_recipe_drops_only_name_seed_dynds_and_baseline_flags():
    spec = JobSpec.parse({"name": "x", "train": {"seed": 7, "lr": 0.05, "num_threads": 2, "pairing": "sequential"},
                          "dynds": {"schedule": {"kind": "periodic"}}, "baseline": False, "equal_time_baseline": True}).canonical()
    recipe = recipe_of(spec)
    assert set(recipe) == set(spec) - {"name", "dynds", "baseline", "equal_time_baseline"}
    assert "seed" not in recipe["train"] and recipe["train"]["lr"] == 0.05
    assert recipe["train"]["pairing"] == "sequential" and recipe["train"]["num_threads"] == 2 and recipe["train"]["device"] == "auto"
    assert recipe["data"] == spec["data"] and recipe["model"] == spec["model"]
    assert spec["train"]["seed"] == 7  # the spec itself is left as it was
    h = recipe_hash(spec)
    assert len(h) == 16 and int(h, 16) >= 0
    same = JobSpec.parse({"name": "y", "train": {"seed": 1, "lr": 0.05, "num_threads": 2, "pairing": "sequential"}}).canonical()
    assert recipe_hash(same) == h  # another name, seed, setting and flags: the same recipe
    for change in ({"train": {"lr": 0.1}}, {"data": {"image_size": 16}}, {"train": {"pairing": "lockstep"}}, {"train": {"epochs": 3}}):
        other = JobSpec.parse({"train": {"seed": 7, "lr": 0.05, "num_threads": 2, "pairing": "sequential"}})
        data = other.canonical()
        for section, values in change.items():
            data[section].update(values)
        assert recipe_hash(data) != h, change
    assert recipe_of(recipe) == recipe  # idempotent


def test_frontier_key_ignores_epochs_only():
    a = JobSpec.parse({"train": {"epochs": 12}}).canonical()
    b = JobSpec.parse({"train": {"epochs": 3, "seed": 4}, "baseline": False, "dynds": {"schedule": {"kind": "none"}}}).canonical()
    c = JobSpec.parse({"train": {"epochs": 12, "lr": 0.01}}).canonical()
    assert frontier_key(a) == frontier_key(b) != frontier_key(c)
    assert recipe_hash(a) != recipe_hash(b)
    assert frontier_epochs(12) == [3, 6, 9, 12] and frontier_epochs(2) == [1, 2] and frontier_epochs(1) == [1] and frontier_epochs(10) == [3, 5, 8, 10]


def test_labels_are_unique_where_recipes_share_one():
    def rec(data):
        return recipe_of(JobSpec.parse(data).canonical())

    a, b, c = rec({"train": {"lr": 0.1}}), rec({"train": {"lr": 0.05}}), rec({"data": {"image_size": 16}, "train": {"lr": 0.1}})
    alone = rec({"train": {"epochs": 3}})
    labels = track_labels({"a": a, "b": b, "c": c, "z": alone})
    assert labels["z"] == "resnet20/synthetic/e3-nall"
    assert len({labels["a"], labels["b"], labels["c"]}) == 3
    assert all(labels[k].startswith("resnet20/synthetic/e2-nall · ") for k in "abc")
    assert "train.lr=0.05" in labels["b"] and "data.image_size=16" in labels["c"]
    # Other differing keys are named too; rows without a stored recipe fall back to the hash (see below).
    assert track_labels({"h1": {"x": 1, **a}, "h2": {"x": 2, **a}}) == {"h1": "resnet20/synthetic/e2-nall · x=1", "h2": "resnet20/synthetic/e2-nall · x=2"}


def test_track_and_setting_key_from_a_spec():
    spec = JobSpec.parse({"model": {"arch": "resnet32"}, "data": {"dataset": "cifar10", "train_subset": 5000}, "train": {"epochs": 12}})
    assert track_of(spec.canonical()) == "resnet32/cifar10/e12-n5000"
    assert track_of(JobSpec().canonical()) == "resnet20/synthetic/e2-nall"
    assert setting_key(spec.canonical()["dynds"]) == "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
    periodic = JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "pattern": "RRF"}, "kernel": {"mode": "max", "scale": "none"}}})
    assert setting_key(periodic.canonical()["dynds"]) == "periodic RRF | max k2s1 none | in/2 avg | bn frozen"


# ---------------------------------------------------------------- cells: pooling, seeds, statistics


def test_ranks_within_bound_first_then_by_mean_time_saving():
    rows = [row(1, "fast-but-worse", 0.60, -2.0), row(2, "good", 0.30, -0.1), row(3, "better", 0.40, -0.4), row(4, "slow", 0.10, 0.2)]
    entries = entries_of(build_leaderboard(rows, max_acc_drop=0.5, min_seeds=1))
    assert [e["setting_key"] for e in entries] == ["better", "good", "slow", "fast-but-worse"]
    assert [e["rank"] for e in entries] == [1, 2, 3, 4]
    assert [e["within_bound"] for e in entries] == [True, True, True, False]
    wide = entries_of(build_leaderboard(rows, max_acc_drop=3.0, min_seeds=1))
    assert wide[0]["setting_key"] == "fast-but-worse"


def test_ties_in_time_saving_go_to_the_smaller_accuracy_drop_then_the_name():
    rows = [row(1, "b", 0.3, -0.4), row(2, "c", 0.3, -0.1), row(3, "a", 0.3, -0.4)]
    assert [e["setting_key"] for e in entries_of(build_leaderboard(rows, min_seeds=1))] == ["c", "a", "b"]


def test_different_recipes_never_pool():
    rows = [row(1, "s", 0.3, 0.0, recipe="lr-0.1"), row(2, "s", 0.5, 0.0, recipe="lr-0.05"), row(3, "s", 0.7, 0.0, recipe="img-16")]
    board = build_leaderboard(rows, min_seeds=1)
    assert sorted(t["recipe_hash"] for t in board["tracks"]) == ["img-16", "lr-0.05", "lr-0.1"]
    assert all(len(t["entries"]) == 1 and t["entries"][0]["n_jobs"] == 1 for t in board["tracks"])
    # One label shared by three recipes (no stored recipe to name the difference): made unique by the hash.
    assert sorted(t["track"] for t in board["tracks"]) == [f"{TRACK} · img-16", f"{TRACK} · lr-0.05", f"{TRACK} · lr-0.1"]
    only = build_leaderboard(rows, min_seeds=1, track="lr-0.05")
    assert [t["recipe_hash"] for t in only["tracks"]] == ["lr-0.05"] and only["tracks"][0]["entries"][0]["job_ids"] == [2]
    label = only["tracks"][0]["track"]
    assert [t["recipe_hash"] for t in build_leaderboard(rows, min_seeds=1, track=label)["tracks"]] == ["lr-0.05"]
    assert build_leaderboard(rows, min_seeds=1, track=TRACK)["tracks"] == []  # the shared label names no single recipe


def test_a_rerun_of_one_seed_counts_once_and_is_averaged_first():
    rows = [row(1, "s", 0.30, -1.0, seed=0), row(2, "s", 0.40, -3.0, seed=0), row(3, "s", 0.31, -2.0, seed=1), row(4, "s", 0.32, -2.0, seed=2)]
    (e,) = entries_of(build_leaderboard(rows, max_acc_drop=5))
    assert e["n_seeds"] == 3 and e["n_jobs"] == 4 and e["seeds"] == [0, 1, 2] and e["job_ids"] == [1, 2, 3, 4]
    per_seed = [0.35, 0.31, 0.32]  # seed 0: (0.30 + 0.40) / 2
    assert e["time_saving_mean"] == pytest.approx(statistics.mean(per_seed))  # not the mean of four jobs (0.3325)
    assert e["time_saving_std"] == pytest.approx(statistics.stdev(per_seed))
    half = T2 * statistics.stdev(per_seed) / math.sqrt(3)
    assert e["time_saving_ci95"] == pytest.approx([statistics.mean(per_seed) - half, statistics.mean(per_seed) + half])
    assert e["acc_delta_mean"] == pytest.approx(-2.0) and e["acc_delta_ci95"] == pytest.approx([-2.0, -2.0])


def test_ci95_over_three_seeds_by_hand():
    rows = seeds3(1, "s", [0.2, 0.3, 0.4], [-1.0, -2.0, -3.0], gaps=(1.0, 2.0, 3.0))
    (e,) = entries_of(build_leaderboard(rows, max_acc_drop=5))
    # values 1, 2, 3: mean 2, sample std 1, half width t(2) * 1 / sqrt(3) = 4.303 / 1.732 = 2.4843
    assert e["equal_time_gap_mean"] == pytest.approx(2.0)
    assert e["equal_time_gap_ci95"] == pytest.approx([2 - 2.48434, 2 + 2.48434], abs=1e-4)
    assert e["acc_delta_ci95"] == pytest.approx([-2 - 2.48434, -2 + 2.48434], abs=1e-4)
    assert e["time_saving_ci95"] == pytest.approx([0.3 - 0.248434, 0.3 + 0.248434], abs=1e-5)
    assert e["equal_time_gap_std"] == pytest.approx(1.0) and e["equal_time_n_seeds"] == 3
    # One seed: no interval.
    (one,) = entries_of(build_leaderboard([row(9, "s", 0.3, 0.0, 1.0)], min_seeds=1))
    assert one["time_saving_ci95"] is None and one["equal_time_gap_ci95"] is None and one["time_saving_std"] == 0.0


def test_the_gap_is_averaged_over_the_seeds_where_the_equal_time_run_ran():
    rows = [row(1, "s", 0.30, -0.2, 1.0, seed=0), row(2, "s", 0.34, -0.4, 2.0, seed=1), row(3, "s", 0.32, 0.0, None, seed=2)]
    (e,) = entries_of(build_leaderboard(rows))
    assert e["equal_time_gap_mean"] == pytest.approx(1.5) and e["equal_time_n_seeds"] == 2 and e["n_seeds"] == 3


# ---------------------------------------------------------------- verdicts, ranking, noise, Pareto


@pytest.mark.parametrize(
    "gaps,n,kind",
    [
        ((1.0, 1.1, 1.2), 3, "beats_equal_time"),
        ((-1.0, -1.1, -1.2), 3, "loses_to_equal_time"),
        ((1.0, 2.0, 3.0), 3, "tie"),  # interval -0.48 .. 4.48 spans zero
        ((1.0, 1.1, 1.2), 2, "needs_seeds"),
        ((None, None, None), 3, "no_equal_time"),
    ],
)
def test_every_verdict_kind(gaps, n, kind):
    rows = seeds3(1, "s", 0.3, -0.2, gaps=gaps)[:n]
    (e,) = entries_of(build_leaderboard(rows, min_seeds=3))
    assert e["verdict"] == kind
    gap_ci = tuple(e["equal_time_gap_ci95"]) if e["equal_time_gap_ci95"] else None
    expected = judge(time_saving=e["time_saving_mean"], acc_delta=e["acc_delta_mean"], gap_mean=e["equal_time_gap_mean"],
                     gap_ci95=gap_ci, n_seeds=n, min_seeds=3)
    assert e["verdict_sentence"] == expected.sentence


def test_cells_below_min_seeds_are_listed_unranked_after_the_ranked():
    rows = seeds3(1, "three", 0.3, -0.1) + seeds3(10, "two-fast", 0.6, -0.1)[:2]
    entries = entries_of(build_leaderboard(rows))
    assert [(e["setting_key"], e["rank"], e["ranked"]) for e in entries] == [("three", 1, True), ("two-fast", None, False)]
    assert "2 seeds" in entries[1]["why_unranked"] and "min_seeds" in entries[1]["why_unranked"] and entries[0]["why_unranked"] is None
    assert entries[1]["verdict"] in ("needs_seeds", "no_equal_time") and not entries[1]["pareto"]
    relaxed = entries_of(build_leaderboard(rows, min_seeds=2))
    assert [(e["setting_key"], e["rank"]) for e in relaxed] == [("two-fast", 1), ("three", 2)]


def test_noisy_jobs_are_left_out_unless_included():
    rows = seeds3(1, "clean", 0.3, -0.1) + seeds3(10, "noisy", 0.6, -0.1, noisy=True)
    mixed = seeds3(20, "mixed", 0.2, -0.1) + [row(30, "mixed", 0.9, -0.1, seed=3, noisy=True)]
    board = build_leaderboard(rows + mixed)
    entries = {e["setting_key"]: e for e in entries_of(board)}
    assert [e["setting_key"] for e in entries_of(board)] == ["clean", "mixed", "noisy"]
    noisy = entries["noisy"]
    assert noisy["rank"] is None and not noisy["ranked"] and "noisy" in noisy["why_unranked"] and "include_noisy" in noisy["why_unranked"]
    assert noisy["n_noisy"] == 3 and noisy["noisy_included"] and "noisy" in noisy["verdict_sentence"]
    # A cell with clean jobs: the noisy one is counted, not averaged in.
    m = entries["mixed"]
    assert m["ranked"] and m["n_noisy"] == 1 and m["n_seeds"] == 3 and m["job_ids"] == [20, 21, 22] and m["noisy_job_ids"] == [30]
    assert m["time_saving_mean"] == pytest.approx(0.2) and not m["noisy_included"]
    both = {e["setting_key"]: e for e in entries_of(build_leaderboard(rows + mixed, include_noisy=True))}
    assert both["noisy"]["rank"] == 1 and both["noisy"]["ranked"] and both["noisy"]["why_unranked"] is None
    assert both["mixed"]["n_seeds"] == 4 and both["mixed"]["time_saving_mean"] == pytest.approx(0.375)


def test_pareto_front_per_track_with_ties():
    a = seeds3(1, "tie-1", 0.3, -0.1) + seeds3(4, "tie-2", 0.3, -0.1)  # equal on both axes: both on the front
    a += seeds3(7, "same-saving-worse-acc", 0.3, -0.5)  # dominated by the ties (equal saving, lower accuracy)
    a += seeds3(10, "fast", 0.5, -1.0) + seeds3(13, "dominated", 0.2, -0.5)
    a += seeds3(16, "unranked-dominator", 0.9, 1.0)[:2]  # not ranked: pushes nobody off
    other = seeds3(30, "elsewhere", 0.99, 5.0, recipe="r2", track="resnet20/cifar10/e1-nall")  # another track: never compared
    board = build_leaderboard(a + other, max_acc_drop=5)
    front = {e["setting_key"] for e in entries_of(board) if e["pareto"]}
    assert front == {"tie-1", "tie-2", "fast"}
    assert entries_of(board, "resnet20/cifar10/e1-nall")[0]["pareto"]


def test_tracks_are_separate_and_rows_without_baseline_do_not_count():
    rows = [row(1, "a", 0.3, 0.0), row(2, "a", 0.9, 0.0, recipe="r2", track="resnet20/cifar10/e1-nall"), row(3, "b", None, None)]
    board = build_leaderboard(rows, min_seeds=1)
    assert [t["track"] for t in board["tracks"]] == ["resnet20/cifar10/e1-nall", TRACK]
    assert all(e["setting_key"] != "b" for t in board["tracks"] for e in t["entries"])
    assert [t["track"] for t in build_leaderboard(rows, track=TRACK)["tracks"]] == [TRACK]
    assert [t["track"] for t in build_leaderboard(rows, track="r2")["tracks"]] == ["resnet20/cifar10/e1-nall"]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_acc_drop"):
        build_leaderboard([], max_acc_drop=-1)
    with pytest.raises(ValueError, match="min_seeds"):
        build_leaderboard([], min_seeds=0)


# ---------------------------------------------------------------- the budget frontier

BASE = {"model": {"arch": "resnet20"}, "data": {"dataset": "cifar10", "train_subset": 1000}, "train": {"epochs": 12}}


def srow(job_id, *, epochs=12, seed=0, schedule=None, lr=None, **figures):
    data = {**BASE, "train": {"epochs": epochs, "seed": seed, **({"lr": lr} if lr else {})}}
    if schedule is not None:
        data["dynds"] = {"schedule": schedule}
        if schedule["kind"] == "none":
            data["baseline"] = False
    spec = JobSpec.parse(data).canonical()
    r = {"job_id": job_id, "track": track_of(spec), "recipe_hash": recipe_hash(spec), "recipe": recipe_of(spec),
         "arch": "resnet20", "dataset": "cifar10", "seed": seed, "setting_key": setting_key(spec["dynds"]), "setting": spec["dynds"],
         "schedule_kind": spec["dynds"]["schedule"]["kind"], "time_saving": None, "acc_delta": None, "equal_time_gap": None,
         "dynds_acc": None, "baseline_acc": None, "equal_time_acc": None, "timing_noisy": False}
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
            rows.append(srow(100 + i, seed=seed, schedule={"kind": "stochastic", "p": p}, time_saving=ts, acc_delta=acc - CURVE[12][seed],
                             dynds_acc=acc, baseline_acc=CURVE[12][seed], dynds_steps=1200, **extra))
    return rows


def test_frontier_positions_above_within_below_and_unknown():
    rows = frontier_rows()
    track = srow(0)["track"]
    front = build_frontier(rows, track=track)
    assert front["track"] == track and front["full_epochs"] == 12 and front["recipe_hash"] == srow(0)["recipe_hash"]
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
        "stochastic p=0.2": "above", "stochastic p=0.3": "within", "stochastic p=0.4": "below", "stochastic p=0.9": "unknown",
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
    assert position(pts, 1.01, 70.0) == "unknown" and position([], 0.5, 1.0) == "unknown" and position(pts, 0.5, None) == "unknown"


def test_equal_time_runs_of_one_setting_across_seeds_form_one_frontier_point():
    """Their budgets differ a little per seed (0.62, 0.63, 0.64): one point with a band over 3 seeds, not
    three one-seed points; the swept budgets stay apart."""
    rows = frontier_rows()
    for seed, (cut, acc) in enumerate(((62, 66.0), (63, 67.0), (64, 68.0))):
        rows.append(srow(200 + seed, seed=seed, schedule={"kind": "stochastic", "p": 0.5}, time_saving=0.37, acc_delta=-5.0,
                         equal_time_gap=-1.0, dynds_acc=67.0, baseline_acc=73.0, equal_time_acc=acc,
                         equal_time_steps=cut * 12, baseline_steps=100 * 12, dynds_steps=100 * 12))
    front = build_frontier(rows, track=rows[-1]["recipe_hash"], min_seeds=3)  # the 12-epoch recipe
    near = [p for p in front["baseline"] if 0.6 < p["time_fraction"] < 0.7]
    assert len(near) == 1 and near[0]["time_fraction"] == pytest.approx(0.63)
    assert near[0]["n_seeds"] == 3 and near[0]["acc_mean"] == pytest.approx(67.0) and near[0]["acc_ci95"] is not None
    assert [p["time_fraction"] for p in front["baseline"] if p not in near] == [0.25, 0.5, 0.75, 1.0]
