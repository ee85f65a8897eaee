"""What should I use? The recommendation per track from constructed leaderboard cells (app/leaderboard/recommendation.py)."""

from app.leaderboard import build_leaderboard
from app.leaderboard.keys import method_of, setting_key
from app.leaderboard.recommendation import build_recommendations, recommend

TRACK = "resnet20/cifar10/e12-n10000"
CPU = "cpu · Intel Xeon · 2 threads"
GPU = "cuda · NVIDIA H100 80GB HBM3 · x1"


def row(job_id, key, kind, ts, gap, *, seed, hardware=CPU, noisy=False, setting=None):
    return {
        "job_id": job_id, "track": TRACK, "recipe_hash": "r1", "recipe": None, "arch": "resnet20", "dataset": "cifar10",
        "setting_key": key, "setting": setting, "schedule_kind": kind, "seed": seed,
        "time_saving": ts, "acc_delta": -1.0, "equal_time_gap": gap, "dynds_acc": 69.0,
        "timing_noisy": noisy, "contended": False, "hardware_key": hardware,
    }  # fmt: skip


def seeds(start, key, kind, ts, gaps, **kw):
    return [row(start + i, key, kind, ts, g, seed=i, **kw) for i, g in enumerate(gaps)]


def only(board):
    (track,) = board["tracks"]
    return recommend({**track, "min_seeds": board["min_seeds"]})


def test_the_setting_with_the_best_gap_among_those_whose_verdict_holds():
    rows = (
        seeds(1, "stochastic p=0.5", "stochastic", 0.35, (0.4, 0.5, 0.6))  # holds: gap ~0.5
        + seeds(10, "progressive x0.5", "progressive", 0.30, (1.0, 1.2, 1.1))  # holds: the best gap
        + seeds(20, "mixsize x0.5/0.75/1", "mixsize", 0.20, (3.0, -2.0, 4.0))  # larger mean, interval spans 0: a tie
        + seeds(30, "phase 0-0.5", "phase", 0.40, (5.0,))  # larger still, one seed: not conclusive
    )
    rec = only(build_leaderboard(rows, max_acc_drop=5, min_seeds=3))
    assert rec["kind"] == "setting"
    e = rec["evidence"]
    assert e["setting_key"] == "progressive x0.5" and e["method"] == "progressive resizing (Composer)"
    assert e["n_seeds"] == 3 and e["seeds"] == [0, 1, 2] and e["job_ids"] == [10, 11, 12]
    assert e["equal_time_gap_ci95"][0] > 0 and abs(e["equal_time_gap_mean"] - 1.1) < 1e-9
    assert e["link"].startswith("#/leaderboard?track=")
    assert "progressive resizing" in rec["headline"] and "+1.1 pt" in rec["headline"]
    assert rec["n_conclusive"] == 3 and rec["verdicts"]["beats_equal_time"] == 2 and rec["verdicts"]["needs_seeds"] == 1


def test_nothing_beats_the_equal_time_baseline_is_said_plainly_with_the_closest_cell():
    rows = seeds(1, "stochastic p=0.5", "stochastic", 0.37, (-4.8, -5.5, -6.6)) + seeds(10, "mixsize", "mixsize", 0.2, (-0.5, 0.6, -0.1))
    rec = only(build_leaderboard(rows, max_acc_drop=10, min_seeds=3))
    assert rec["kind"] == "baseline_for_less_time"
    assert rec["headline"].startswith("Nothing tested beats training the baseline for less time")
    assert rec["evidence"]["setting_key"] == "mixsize" and rec["evidence"]["verdict"] == "tie"
    assert rec["evidence"]["method"] == "Mix&Match (Hoffer et al. 2019)"


def test_a_holding_cell_with_noisy_timing_is_not_recommended():
    rows = seeds(1, "p", "stochastic", 0.3, (1.0, 1.1, 1.2), noisy=True) + seeds(10, "q", "stochastic", 0.3, (-1.0, -1.1, -1.2))
    rec = only(build_leaderboard(rows, max_acc_drop=10, min_seeds=3, include_noisy=True))
    assert rec["kind"] == "baseline_for_less_time" and rec["evidence"]["setting_key"] == "q"


def test_without_a_conclusive_cell_it_asks_for_seeds_and_equal_time_runs():
    rows = seeds(1, "p", "stochastic", 0.3, (1.0,)) + seeds(10, "q", "stochastic", 0.3, (None, None, None))
    rec = only(build_leaderboard(rows, max_acc_drop=10, min_seeds=3))
    assert rec["kind"] == "not_enough_evidence" and "equal_time_baseline" in rec["headline"]
    assert rec["evidence"]["setting_key"] == "p"


def test_one_recommendation_per_hardware_key():
    rows = seeds(1, "p", "stochastic", 0.3, (1.0, 1.1, 1.2), hardware=GPU) + seeds(10, "p", "stochastic", 0.1, (-3.0, -2.5, -3.5))
    recs = build_recommendations(build_leaderboard(rows, max_acc_drop=10, min_seeds=3))["recommendations"]
    kinds = {r["hardware_key"]: r["kind"] for r in recs}
    assert kinds == {GPU: "setting", CPU: "baseline_for_less_time"}


def test_a_relatives_setting_is_labelled_by_its_method():
    base = {
        "input": {"factor": 2, "mode": "avg"},
        "kernel": {"mode": "avg", "window": 2, "stride": 1, "size": None, "scale": "sum", "pad_side": "alternate"},
        "bn": "frozen",
    }
    prog = {
        **base,
        "schedule": {
            "kind": "progressive",
            "initial_scale": 0.5,
            "delay_fraction": 0.5,
            "finetune_fraction": 0.2,
            "size_increment": 4,
            "final_full_fraction": 0.0,
        },
    }
    mix = {**base, "schedule": {"kind": "mixsize", "scales": [0.5, 0.75, 1.0], "probs": [0.2, 0.3, 0.5], "final_full_fraction": 0.0}}
    stoch = {**base, "schedule": {"kind": "stochastic", "p": 0.5, "p_end": None, "final_full_fraction": 0.0}, "bn_recalibration": None}
    assert setting_key(prog) == "progressive x0.5 delay=0.5 ft=0.2 +4px | kernel full | in avg | bn frozen"
    assert setting_key(mix) == "mixsize x0.5/0.75/1 p=0.2/0.3/0.5 | kernel full | in avg | bn frozen"
    # DynDS's own settings keep their keys (stored jobs key their cells by them); recalibration is named
    assert setting_key(stoch) == "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
    assert setting_key({**stoch, "bn_recalibration": {"batches": 50}}).endswith(" | bn recal 50")
    assert (method_of(prog), method_of(mix), method_of(stoch)) == ("progressive resizing (Composer)", "Mix&Match (Hoffer et al. 2019)", "DynDS")
    assert method_of({**mix, "bn_recalibration": {"batches": 50}}) == "Mix&Match (Hoffer et al. 2019) + FixRes BN recalibration"
