"""The leaderboard's cells (recipe, setting) with their statistics over seeds and verdicts, ranked per track."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from app.leaderboard.keys import HARDWARE_SEP, frontier_key, recipe_key, split_track_key, track_index
from dynds_core.stats import mean_ci95, mean_std
from dynds_core.verdict import DEFAULT_MIN_SEEDS, judge


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return [ci[0], ci[1]] if ci is not None else None


def per_seed(rows: list[dict[str, Any]], field: str) -> list[float]:
    """One value per seed (sorted by seed): the mean of that seed's runs that have ``field``.

    A forced re-run of one seed is the same experiment again, not a new sample: it is averaged into
    its seed before any statistic over seeds.
    """
    by_seed: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        v = r.get(field)
        if v is not None:
            by_seed[r["seed"]].append(v)
    return [math.fsum(vs) / len(vs) for _, vs in sorted(by_seed.items())]


def _stats(values: list[float]) -> tuple[float | None, float | None, list[float] | None]:
    mean, std = mean_std(values)
    _, ci = mean_ci95(values)
    return mean, std, _ci(ci)


def untrusted(row: dict[str, Any]) -> bool:
    """A job whose time figures cannot be trusted: its timing was noisy, or it did not have its hardware to itself."""
    return bool(row.get("timing_noisy") or row.get("contended"))


def _cell(rows: list[dict[str, Any]], *, max_acc_drop: float, min_seeds: int, include_noisy: bool) -> dict[str, Any]:
    """One cell (recipe, hardware, setting): statistics over seeds, the verdict, and whether it may be ranked.

    Noisy and contended jobs are one group here ("noisy": their timing cannot be trusted)."""
    noisy = [r for r in rows if untrusted(r)]
    clean = [r for r in rows if not untrusted(r)]
    # Noisy jobs are left out of the statistics unless asked for; a cell with nothing else shows them
    # (and is not ranked): its only numbers, flagged.
    used = rows if include_noisy or not clean else clean
    noisy_included = any(untrusted(r) for r in used)
    seeds = sorted({r["seed"] for r in used})
    ts_mean, ts_std, ts_ci = _stats(per_seed(used, "time_saving"))
    acc_mean, acc_std, acc_ci = _stats(per_seed(used, "acc_delta"))
    gaps = per_seed(used, "equal_time_gap")
    gap_mean, gap_std, gap_ci = _stats(gaps)
    dacc_mean, _, dacc_ci = _stats(per_seed(used, "dynds_acc"))
    verdict = judge(
        time_saving=ts_mean,
        acc_delta=acc_mean,
        gap_mean=gap_mean,
        gap_ci95=tuple(gap_ci) if gap_ci else None,
        n_seeds=len(gaps) if gaps else len(seeds),
        min_seeds=min_seeds,
        timing_noisy=noisy_included,
    )
    why = []
    if noisy_included and not include_noisy:
        n_contended = sum(1 for r in noisy if r.get("contended"))
        what = "noisy timing" if not n_contended else f"noisy timing or contended hardware ({n_contended} contended)"
        why.append(f"every job of this cell had {what} ({len(noisy)}); include_noisy=true ranks it")
    if len(seeds) < min_seeds:
        why.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}; ranking needs at least {min_seeds} (min_seeds)")
    first = rows[0]
    return {
        "rank": None,
        "ranked": not why,
        "why_unranked": "; ".join(why) if why else None,
        "setting": first.get("setting"),
        "setting_key": first["setting_key"],
        "schedule_kind": first["schedule_kind"],
        "n_seeds": len(seeds),
        "seeds": seeds,
        "n_jobs": len(used),
        "job_ids": sorted(r["job_id"] for r in used),
        "n_noisy": len(noisy),
        "noisy_included": noisy_included,
        "noisy_job_ids": sorted(r["job_id"] for r in noisy),
        "time_saving_mean": ts_mean,
        "time_saving_std": ts_std,
        "time_saving_ci95": ts_ci,
        "acc_delta_mean": acc_mean,
        "acc_delta_std": acc_std,
        "acc_delta_ci95": acc_ci,
        "equal_time_gap_mean": gap_mean,
        "equal_time_gap_std": gap_std,
        "equal_time_gap_ci95": gap_ci,
        "equal_time_n_seeds": len(gaps),
        "dynds_acc_mean": dacc_mean,
        "dynds_acc_ci95": dacc_ci,
        "within_bound": -acc_mean <= max_acc_drop,
        "pareto": False,
        "verdict": verdict.kind,
        "verdict_sentence": verdict.sentence,
    }


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is at least as good as ``b`` on both axes (mean time saving, mean accuracy delta) and better on one."""
    ta, aa, tb, ab = a["time_saving_mean"], a["acc_delta_mean"], b["time_saving_mean"], b["acc_delta_mean"]
    return ta >= tb and aa >= ab and (ta > tb or aa > ab)


def mark_pareto(entries: list[dict[str, Any]]) -> None:
    """Pareto front of one track's ranked cells: those no other ranked cell dominates.

    Ties: cells equal on both axes do not dominate each other, so they are on the front together
    (or off it together). Unranked cells are never on it and do not push others off.
    """
    ranked = [e for e in entries if e["ranked"]]
    for e in entries:
        e["pareto"] = e["ranked"] and not any(dominates(o, e) for o in ranked if o is not e)


def rank_track(
    rows: list[dict[str, Any]], max_acc_drop: float, *, min_seeds: int = DEFAULT_MIN_SEEDS, include_noisy: bool = False
) -> list[dict[str, Any]]:
    """Cells of one track (one recipe): the ranked ones first (within the accuracy-drop bound first,
    each group by mean time saving, desc; ties: the smaller accuracy drop, then the setting key),
    then the unranked ones in the same order with ``rank: None``."""
    by_setting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_setting[r["setting_key"]].append(r)
    entries = [_cell(group, max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy) for group in by_setting.values()]
    mark_pareto(entries)
    entries.sort(key=lambda e: (not e["ranked"], not e["within_bound"], -e["time_saving_mean"], -e["acc_delta_mean"], e["setting_key"]))
    for i, e in enumerate((e for e in entries if e["ranked"]), 1):
        e["rank"] = i
    return entries


def build_leaderboard(
    rows: list[dict[str, Any]],
    *,
    max_acc_drop: float = 0.5,
    track: str | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    include_noisy: bool = False,
) -> dict[str, Any]:
    """Tracks (one per recipe and hardware key) with their cells ranked. ``track``: a label or a key
    (``app.leaderboard.keys.resolve_track``'s forms).

    Rows without a baseline comparison (time_saving or acc_delta None) do not count, but their
    recipes take part in making the labels unique (so a label does not change with the bound).
    """
    if max_acc_drop < 0:
        raise ValueError(f"max_acc_drop must be >= 0 (percentage points), got {max_acc_drop}")
    if min_seeds < 1:
        raise ValueError(f"min_seeds must be >= 1, got {min_seeds}")
    index = track_index(rows)
    recipes, labels = index.recipes, index.labels
    wanted = None if track is None else (index.resolve(track) or "")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("time_saving") is None or r.get("acc_delta") is None:
            continue
        k = recipe_key(r)
        if wanted is not None and k != wanted:
            continue
        groups[k].append(r)
    tracks = []
    for k, group in groups.items():
        recipe = recipes[k]
        tracks.append(
            {
                "track": labels[k],
                "track_key": k,
                "recipe_label": labels[k].rsplit(HARDWARE_SEP, 1)[0],
                "hardware_key": split_track_key(k)[1],
                "recipe_hash": group[0].get("recipe_hash"),
                "frontier_key": frontier_key(recipe) if recipe else None,
                "recipe": recipe,
                "arch": group[0]["arch"],
                "dataset": group[0]["dataset"],
                "entries": rank_track(group, max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy),
            }
        )
    tracks.sort(key=lambda t: t["track"])
    return {"max_acc_drop": max_acc_drop, "min_seeds": min_seeds, "include_noisy": include_noisy, "tracks": tracks}
