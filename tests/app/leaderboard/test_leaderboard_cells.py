"""app/leaderboard/cells.py: cells over seeds, their statistics and verdicts, ranking, the Pareto front, on constructed rows."""

import math
import statistics

import pytest

from app.leaderboard import (
    build_leaderboard,
)
from dynds_core.verdict import judge

TRACK = "resnet20/cifar10/e12-n10000"
T2 = 4.303  # Student t, 0.975 quantile, 2 degrees of freedom (three seeds)


def row(job_id, key, time_saving, acc_delta, gap=None, *, seed=None, recipe="r1", track=TRACK, noisy=False, dynds_acc=None):
    return {
        "job_id": job_id,
        "track": track,
        "recipe_hash": recipe,
        "recipe": None,
        "arch": "resnet20",
        "dataset": "cifar10",
        "setting_key": key,
        "setting": {"key": key},
        "schedule_kind": "stochastic",
        "seed": job_id if seed is None else seed,
        "time_saving": time_saving,
        "acc_delta": acc_delta,
        "equal_time_gap": gap,
        "dynds_acc": dynds_acc,
        "timing_noisy": noisy,
    }


def seeds3(start, key, ts, acc, gaps=(None, None, None), **kw):
    """Three seeds (0, 1, 2) of one cell with the given per-seed figures (scalars repeat)."""
    ts = ts if isinstance(ts, (list, tuple)) else [ts] * 3
    acc = acc if isinstance(acc, (list, tuple)) else [acc] * 3
    return [row(start + i, key, ts[i], acc[i], gaps[i], seed=i, **kw) for i in range(3)]


def entries_of(board, track=TRACK):
    return next(t for t in board["tracks"] if t["recipe_label"] == track)["entries"]


# ---------------------------------------------------------------- recipes

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
    assert sorted(t["recipe_label"] for t in board["tracks"]) == [f"{TRACK} · img-16", f"{TRACK} · lr-0.05", f"{TRACK} · lr-0.1"]
    only = build_leaderboard(rows, min_seeds=1, track="lr-0.05")
    assert [t["recipe_hash"] for t in only["tracks"]] == ["lr-0.05"] and only["tracks"][0]["entries"][0]["job_ids"] == [2]
    label = only["tracks"][0]["recipe_label"]
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
    expected = judge(
        time_saving=e["time_saving_mean"], acc_delta=e["acc_delta_mean"], gap_mean=e["equal_time_gap_mean"], gap_ci95=gap_ci, n_seeds=n, min_seeds=3
    )
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
    assert [t["recipe_label"] for t in board["tracks"]] == ["resnet20/cifar10/e1-nall", TRACK]
    assert all(e["setting_key"] != "b" for t in board["tracks"] for e in t["entries"])
    assert [t["recipe_label"] for t in build_leaderboard(rows, track=TRACK)["tracks"]] == [TRACK]
    assert [t["recipe_label"] for t in build_leaderboard(rows, track="r2")["tracks"]] == ["resnet20/cifar10/e1-nall"]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_acc_drop"):
        build_leaderboard([], max_acc_drop=-1)
    with pytest.raises(ValueError, match="min_seeds"):
        build_leaderboard([], min_seeds=0)
