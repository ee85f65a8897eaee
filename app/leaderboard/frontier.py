"""The budget frontier of a track: the baseline's accuracy at each budget (a band over seeds) and where each
DynDS cell lands against it."""

from __future__ import annotations

import math
from typing import Any

from app.leaderboard.cells import _ci, build_leaderboard, per_seed
from app.leaderboard.keys import frontier_key, hardware_of, recipe_key, split_track_key, track_index
from dynds_core.stats import mean_ci95
from dynds_core.verdict import DEFAULT_MIN_SEEDS

FRONTIER_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def frontier_epochs(epochs: int) -> list[int]:
    """The baseline budgets of the frontier preset: 25/50/75/100 % of ``epochs``, rounded half up, at least 1, distinct."""
    return sorted({max(1, math.floor(epochs * f + 0.5)) for f in FRONTIER_FRACTIONS})


def _band(points: list[dict[str, Any]], x: float) -> tuple[float, float] | None:
    """The baseline band [ci low, ci high] (the mean where a point has no interval) at ``x``, linearly
    interpolated between the neighbouring points; None outside the points' x range. A point stands for the
    budgets within FRONTIER_GAP of it (they were merged into it, at their mean), so an ``x`` that close
    beyond an end point takes that point's band: a setting's own equal-time runs, merged with others, may
    sit a hair on the other side of it."""
    if not points:
        return None
    eps = 1e-9
    xs = [p["time_fraction"] for p in points]
    if x < xs[0] - FRONTIER_GAP - eps or x > xs[-1] + FRONTIER_GAP + eps:
        return None
    x = min(max(x, xs[0]), xs[-1])

    def lo_hi(p):
        ci = p["acc_ci95"]
        return (ci[0], ci[1]) if ci else (p["acc_mean"], p["acc_mean"])

    for i, p in enumerate(points):
        if abs(xs[i] - x) <= eps:
            return lo_hi(p)
    i = next(i for i in range(len(xs) - 1) if xs[i] <= x <= xs[i + 1])
    (l0, h0), (l1, h1) = lo_hi(points[i]), lo_hi(points[i + 1])
    t = (x - xs[i]) / (xs[i + 1] - xs[i])
    return l0 + t * (l1 - l0), h0 + t * (h1 - h0)


def position(points: list[dict[str, Any]], x: float | None, acc: float | None) -> str:
    """ "above" / "within" / "below" the baseline band at ``x``; "unknown" outside its x range (or without numbers)."""
    if x is None or acc is None:
        return "unknown"
    band = _band(points, x)
    if band is None:
        return "unknown"
    low, high = band
    return "above" if acc > high else "below" if acc < low else "within"


def _ratio(num: Any, den: Any) -> float | None:
    return num / den if num and den else None


FRONTIER_GAP = 0.03  # budgets closer than this (a fraction of the full budget) are one frontier point


def build_frontier(
    rows: list[dict[str, Any]],
    *,
    track: str,
    max_acc_drop: float = 0.5,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    include_noisy: bool = False,
) -> dict[str, Any] | None:
    """The budget frontier of a track (a label or a recipe hash); None when no row has that track.

    ``rows``: leaderboard rows (as for ``build_leaderboard``, with ``recipe``) of the track's label and of
    every budget of its frontier key, optionally with ``dynds_steps``, ``baseline_steps``,
    ``equal_time_steps`` (the runs' step counts, from the stored results). The x axis is load-immune:
    a baseline point's x is its steps as a fraction of the full budget's (the track's epochs), a DynDS
    cell's x is 1 - its paired time saving (measured against a baseline that ran beside it).
    """
    index = track_index(rows)
    recipes, labels = index.recipes, index.labels
    k = index.resolve(track)
    if k is None:
        return None
    hardware = split_track_key(k)[1]  # one hardware's frontier: budgets measured elsewhere are other machines
    recipe = recipes[k]
    full_epochs = recipe.get("train", {}).get("epochs")
    fk = frontier_key(recipe) if recipe else None
    board = build_leaderboard(rows, max_acc_drop=max_acc_drop, track=k, min_seeds=min_seeds, include_noisy=include_noisy)
    cells = board["tracks"][0]["entries"] if board["tracks"] else []

    raw: list[tuple[float, str, Any, int, float]] = []  # (x, source, seed, job_id, acc)
    for r in rows:
        rk = recipe_key(r)
        rec = recipes.get(rk) or {}
        if hardware_of(r) != hardware:
            continue
        if fk is None or (r.get("frontier_key") or (frontier_key(rec) if rec else None)) != fk:
            continue
        epochs = rec.get("train", {}).get("epochs")
        if not epochs or not full_epochs:
            continue
        budget = epochs / full_epochs
        if r["schedule_kind"] == "none":
            if r.get("dynds_acc") is not None:
                raw.append((budget, "baseline_only", r["seed"], r["job_id"], r["dynds_acc"]))
        elif r.get("baseline_acc") is not None:
            raw.append((budget, "paired_baseline", r["seed"], r["job_id"], r["baseline_acc"]))
        cut = _ratio(r.get("equal_time_steps"), r.get("baseline_steps") or r.get("dynds_steps"))
        if r.get("equal_time_acc") is not None and cut is not None:
            raw.append((budget * cut, "equal_time", r["seed"], r["job_id"], r["equal_time_acc"]))

    # Budgets within FRONTIER_GAP of their neighbour form one point (at their mean budget): equal-time
    # runs of one setting land at slightly different fractions per seed (0.62, 0.63, 0.64, ...); kept
    # apart, each would be its own one-seed point and the band would collapse to one run's accuracy
    # right where the DynDS points sit. The swept budgets (25/50/75/100 %) stay apart.
    groups: dict[float, list[tuple]] = {}
    cluster: list[tuple] = []
    for item in sorted(raw, key=lambda it: it[0]) + [None]:
        if cluster and (item is None or item[0] - cluster[-1][0] > FRONTIER_GAP):
            groups[round(math.fsum(it[0] for it in cluster) / len(cluster), 4)] = cluster
            cluster = []
        if item is not None:
            cluster.append(item)
    baseline = []
    for x, items in sorted(groups.items()):
        accs = per_seed([{"seed": s, "acc": a} for _, _, s, _, a in items], "acc")
        mean, ci = mean_ci95(accs)
        baseline.append(
            {
                "time_fraction": x,
                "acc_mean": mean,
                "acc_ci95": _ci(ci),
                "n_seeds": len(accs),
                "n_points": len(items),
                "sources": sorted({src for _, src, _, _, _ in items}),
                "job_ids": sorted({j for _, _, _, j, _ in items}),
            }
        )

    dynds = []
    for c in cells:
        ts, ts_ci = c["time_saving_mean"], c["time_saving_ci95"]
        x = 1 - ts if ts is not None else None
        dynds.append(
            {
                "setting_key": c["setting_key"],
                "setting": c["setting"],
                "schedule_kind": c["schedule_kind"],
                "time_fraction": x,
                "time_fraction_ci95": [1 - ts_ci[1], 1 - ts_ci[0]] if ts_ci else None,
                "acc_mean": c["dynds_acc_mean"],
                "acc_ci95": c["dynds_acc_ci95"],
                "position": position(baseline, x, c["dynds_acc_mean"]),
                "n_seeds": c["n_seeds"],
                "job_ids": c["job_ids"],
                "rank": c["rank"],
                "ranked": c["ranked"],
                "verdict": c["verdict"],
                "verdict_sentence": c["verdict_sentence"],
            }
        )
    return {
        "track": labels[k],
        "track_key": k,
        "hardware_key": hardware,
        "recipe_hash": None if k.startswith("track:") else split_track_key(k)[0],
        "frontier_key": fk,
        "recipe": recipe,
        "full_epochs": full_epochs,
        "baseline": baseline,
        "dynds": dynds,
    }
