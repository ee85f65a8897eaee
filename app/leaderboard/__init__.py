"""The leaderboard and the budget frontier, as pure functions over summary rows.

    rows = [{"job_id": 1, "track": "resnet20/cifar10/e12-n10000", "recipe_hash": "9f2c...", "recipe": {...},
             "arch": "resnet20", "dataset": "cifar10", "seed": 0,
             "setting_key": "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen", "setting": {...},
             "schedule_kind": "stochastic", "time_saving": 0.31, "acc_delta": -0.2, "equal_time_gap": None,
             "dynds_acc": 70.1, "timing_noisy": False, "hardware_key": "cpu · Intel Xeon · 2 threads"}, ...]
    board = build_leaderboard(rows, max_acc_drop=0.5, min_seeds=3)
    front = build_frontier(rows, track="resnet20/cifar10/e12-n10000")

A track is a recipe: the whole spec but its name, seed, DynDS setting and baseline flags (``recipe_of``).
Only settings trained under the same recipe are comparable. A cell is (recipe, setting); its
statistics go over distinct seeds, repeated runs of one seed averaged first.

A track is a recipe on one hardware key (what the jobs measured they ran on): nothing is pooled across
hardware. hardware.py puts one recipe's tracks side by side per setting (``build_hardware_table``).

keys.py: recipes, their hashes and track labels; cells.py: cells, ranking, ``build_leaderboard``;
frontier.py: ``build_frontier``; hardware.py: ``build_hardware_table``. Every public name is importable from here.
"""

from app.leaderboard.cells import build_leaderboard, dominates, mark_pareto, per_seed, rank_track
from app.leaderboard.frontier import FRONTIER_FRACTIONS, FRONTIER_GAP, build_frontier, frontier_epochs, position
from app.leaderboard.hardware import build_hardware_table
from app.leaderboard.keys import (
    frontier_key,
    frontier_recipe,
    kernel_label,
    recipe_hash,
    recipe_of,
    resolve_track,
    schedule_label,
    setting_key,
    track_labels,
    track_of,
)

__all__ = [
    "FRONTIER_FRACTIONS",
    "FRONTIER_GAP",
    "build_frontier",
    "build_hardware_table",
    "build_leaderboard",
    "dominates",
    "frontier_epochs",
    "frontier_key",
    "frontier_recipe",
    "kernel_label",
    "mark_pareto",
    "per_seed",
    "position",
    "rank_track",
    "recipe_hash",
    "recipe_of",
    "resolve_track",
    "schedule_label",
    "setting_key",
    "track_labels",
    "track_of",
]
