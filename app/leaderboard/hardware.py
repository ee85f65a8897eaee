"""One setting's verdict side by side across hardware: "worth it on H100, not on CPU".

A leaderboard track is a recipe on one hardware key; this table puts a recipe's tracks next to each other,
one row per setting and one column per hardware key, each entry that track's cell (seeds, intervals,
verdict). Nothing is pooled across the columns: an entry is exactly the cell the leaderboard shows.

    table = build_hardware_table(build_leaderboard(rows, min_seeds=3))
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# The fields of a cell each entry of the table carries.
ENTRY_FIELDS = (
    "verdict",
    "verdict_sentence",
    "rank",
    "ranked",
    "why_unranked",
    "n_seeds",
    "time_saving_mean",
    "time_saving_ci95",
    "acc_delta_mean",
    "acc_delta_ci95",
    "equal_time_gap_mean",
    "equal_time_gap_ci95",
    "job_ids",
)


def build_hardware_table(board: dict[str, Any], *, min_hardware: int = 1) -> dict[str, Any]:
    """Per recipe (over ``board``'s tracks): its hardware keys and, per setting, the cell on each of them.

    ``min_hardware``: leave out recipes measured on fewer hardware keys (2: only real side-by-sides).
    Settings come in the order of their best rank on any hardware, unranked ones last.
    """
    by_recipe: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for track in board["tracks"]:
        by_recipe[track.get("recipe_label") or track["track"]].append(track)
    recipes = []
    for label, tracks in sorted(by_recipe.items()):
        hardware = sorted({t["hardware_key"] for t in tracks})
        if len(hardware) < min_hardware:
            continue
        settings: dict[str, dict[str, Any]] = {}
        for t in tracks:
            for cell in t["entries"]:
                row = settings.setdefault(
                    cell["setting_key"], {"setting_key": cell["setting_key"], "schedule_kind": cell["schedule_kind"], "by_hardware": {}}
                )
                row["by_hardware"][t["hardware_key"]] = {"track": t["track"], **{f: cell.get(f) for f in ENTRY_FIELDS}}
        rows = list(settings.values())
        for row in rows:
            verdicts = {e["verdict"] for e in row["by_hardware"].values()}
            row["verdicts_differ"] = len(verdicts) > 1
        rows.sort(key=lambda r: (min((e["rank"] for e in r["by_hardware"].values() if e["rank"] is not None), default=10**9), r["setting_key"]))
        recipes.append({"recipe_label": label, "recipe_hash": tracks[0].get("recipe_hash"), "hardware_keys": hardware, "settings": rows})
    return {"min_seeds": board.get("min_seeds"), "max_acc_drop": board.get("max_acc_drop"), "recipes": recipes}
