"""Nothing is pooled across hardware: tracks, cells, frontiers and the side-by-side table (app/leaderboard/hardware.py)."""

from app.leaderboard import build_frontier, build_hardware_table, build_leaderboard, resolve_track
from app.leaderboard.keys import UNKNOWN_HARDWARE, recipe_key

TRACK = "resnet20/cifar10/e12-n10000"
GPU = "cuda · NVIDIA H100 80GB HBM3 · x1"
CPU = "cpu · Intel Xeon · 2 threads"


def row(job_id, key, time_saving, acc_delta, gap, *, seed, hardware, recipe="r1", noisy=False, contended=False, schedule="stochastic"):
    return {
        "job_id": job_id,
        "track": TRACK,
        "recipe_hash": recipe,
        "recipe": None,
        "arch": "resnet20",
        "dataset": "cifar10",
        "setting_key": key,
        "setting": {"key": key},
        "schedule_kind": schedule,
        "seed": seed,
        "time_saving": time_saving,
        "acc_delta": acc_delta,
        "equal_time_gap": gap,
        "dynds_acc": None if acc_delta is None else 70.0 + acc_delta,
        "timing_noisy": noisy,
        "contended": contended,
        "hardware_key": hardware,
    }


def three_seeds(start, key, ts, gaps, hardware, **kw):
    return [row(start + i, key, ts, -1.0, gaps[i], seed=i, hardware=hardware, **kw) for i in range(3)]


def rows_on_two_machines():
    # The same setting and seeds: worth it on the GPU (gap > 0 on every seed), a loss on the CPU.
    return three_seeds(1, "s", 0.40, (1.0, 1.2, 1.1), GPU) + three_seeds(10, "s", 0.10, (-3.0, -2.5, -3.5), CPU)


def test_one_recipe_on_two_hardware_keys_is_two_tracks_never_one_cell():
    board = build_leaderboard(rows_on_two_machines(), max_acc_drop=5, min_seeds=3)
    tracks = {t["hardware_key"]: t for t in board["tracks"]}
    assert set(tracks) == {GPU, CPU}
    assert {t["track"] for t in board["tracks"]} == {f"{TRACK} on {GPU}", f"{TRACK} on {CPU}"}
    assert all(t["recipe_label"] == TRACK and t["recipe_hash"] == "r1" for t in board["tracks"])
    (gpu,), (cpu,) = tracks[GPU]["entries"], tracks[CPU]["entries"]
    assert gpu["job_ids"] == [1, 2, 3] and cpu["job_ids"] == [10, 11, 12]
    assert abs(gpu["time_saving_mean"] - 0.40) < 1e-12 and abs(cpu["time_saving_mean"] - 0.10) < 1e-12
    assert gpu["verdict"] == "beats_equal_time" and cpu["verdict"] == "loses_to_equal_time"


def test_rows_without_hardware_are_their_own_unknown_track():
    rows = three_seeds(1, "s", 0.3, (0.0, 0.0, 0.0), GPU) + [row(9, "s", 0.9, 0.0, 0.0, seed=0, hardware=None)]
    board = build_leaderboard(rows, max_acc_drop=5, min_seeds=1)
    assert sorted(t["hardware_key"] for t in board["tracks"]) == sorted([GPU, UNKNOWN_HARDWARE])
    assert recipe_key(rows[-1]) == f"r1@{UNKNOWN_HARDWARE}"


def test_a_track_is_named_by_label_key_or_by_its_recipe_when_that_has_one_hardware():
    rows = rows_on_two_machines()
    assert resolve_track(rows, f"{TRACK} on {GPU}") == f"r1@{GPU}"
    assert resolve_track(rows, f"r1@{CPU}") == f"r1@{CPU}"
    assert resolve_track(rows, "r1") is None and resolve_track(rows, TRACK) is None  # two machines: ambiguous
    only_gpu = [r for r in rows if r["hardware_key"] == GPU]
    assert resolve_track(only_gpu, "r1") == resolve_track(only_gpu, TRACK) == f"r1@{GPU}"
    assert build_leaderboard(rows, min_seeds=1, track=TRACK)["tracks"] == []
    assert [t["hardware_key"] for t in build_leaderboard(rows, min_seeds=1, track=f"{TRACK} on {CPU}")["tracks"]] == [CPU]


def test_contended_jobs_are_left_out_like_noisy_ones():
    rows = three_seeds(1, "clean", 0.3, (0.0, 0.0, 0.0), CPU) + three_seeds(10, "busy", 0.6, (0.0, 0.0, 0.0), CPU, contended=True)
    entries = build_leaderboard(rows, max_acc_drop=5, min_seeds=3)["tracks"][0]["entries"]
    assert [(e["setting_key"], e["rank"]) for e in entries] == [("clean", 1), ("busy", None)]
    assert "contended" in entries[1]["why_unranked"] and entries[1]["n_noisy"] == 3
    included = build_leaderboard(rows, max_acc_drop=5, min_seeds=3, include_noisy=True)["tracks"][0]["entries"]
    assert [e["setting_key"] for e in included] == ["busy", "clean"]


def test_the_side_by_side_table_puts_each_hardware_cell_next_to_the_other():
    rows = rows_on_two_machines() + three_seeds(20, "gpu-only", 0.2, (0.0, 0.1, -0.1), GPU)
    table = build_hardware_table(build_leaderboard(rows, max_acc_drop=5, min_seeds=3))
    (recipe,) = table["recipes"]
    assert recipe["recipe_label"] == TRACK and recipe["hardware_keys"] == sorted([GPU, CPU])
    by_setting = {s["setting_key"]: s for s in recipe["settings"]}
    s = by_setting["s"]
    assert s["by_hardware"][GPU]["verdict"] == "beats_equal_time" and s["by_hardware"][CPU]["verdict"] == "loses_to_equal_time"
    assert s["verdicts_differ"] and s["by_hardware"][GPU]["job_ids"] == [1, 2, 3] and s["by_hardware"][CPU]["n_seeds"] == 3
    assert set(by_setting["gpu-only"]["by_hardware"]) == {GPU} and not by_setting["gpu-only"]["verdicts_differ"]
    assert build_hardware_table(build_leaderboard(rows[:3], min_seeds=1), min_hardware=2)["recipes"] == []


def test_the_frontier_of_one_hardware_ignores_budgets_measured_on_another():
    recipe = {"model": {"arch": "resnet20"}, "data": {"dataset": "cifar10", "train_subset": 10000}, "train": {"epochs": 12}}
    rows = []
    for hw, acc in ((GPU, 70.0), (CPU, 50.0)):
        for seed in range(3):
            r = row(len(rows) + 1, "none", None, None, None, seed=seed, hardware=hw, schedule="none")
            r.update(recipe=recipe, dynds_acc=acc + seed)
            rows.append(r)
    front = build_frontier(rows, track=f"{TRACK} on {GPU}")
    assert front["hardware_key"] == GPU and front["track_key"] == f"r1@{GPU}"
    (point,) = front["baseline"]
    assert point["job_ids"] == [1, 2, 3] and point["acc_mean"] == 71.0
