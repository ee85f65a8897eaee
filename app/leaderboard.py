"""The leaderboard and the budget frontier, as pure functions over summary rows.

    rows = [{"job_id": 1, "track": "resnet20/cifar10/e12-n10000", "recipe_hash": "9f2c...", "recipe": {...},
             "arch": "resnet20", "dataset": "cifar10", "seed": 0,
             "setting_key": "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen", "setting": {...},
             "schedule_kind": "stochastic", "time_saving": 0.31, "acc_delta": -0.2, "equal_time_gap": None,
             "dynds_acc": 70.1, "timing_noisy": False}, ...]
    board = build_leaderboard(rows, max_acc_drop=0.5, min_seeds=3)
    front = build_frontier(rows, track="resnet20/cifar10/e12-n10000")

A track is a recipe: the whole spec but its name, seed, DynDS setting and baseline flags (``recipe_of``).
Only settings trained under the same recipe are comparable. A cell is (recipe, setting); its
statistics go over distinct seeds, repeated runs of one seed averaged first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import defaultdict
from typing import Any

from dynds_core.stats import mean_ci95, mean_std
from dynds_core.verdict import DEFAULT_MIN_SEEDS, judge

def track_of(spec: dict[str, Any]) -> str:
    """``arch/dataset/e{epochs}-n{train_subset or 'all'}`` from a canonical spec."""
    subset = spec["data"].get("train_subset")
    return f"{spec['model']['arch']}/{spec['data']['dataset']}/e{spec['train']['epochs']}-n{subset if subset else 'all'}"


def _num(x: float) -> str:
    return f"{x:g}"


def schedule_label(schedule: dict[str, Any]) -> str:
    kind = schedule["kind"]
    if kind == "stochastic":
        label = f"stochastic p={_num(schedule['p'])}"
        if schedule.get("p_end") is not None:
            label += f"->{_num(schedule['p_end'])}"
    elif kind == "periodic":
        label = f"periodic {schedule['pattern']}" if schedule.get("pattern") else f"periodic every={schedule['every']}"
    elif kind == "phase":
        label = f"phase {_num(schedule['start'])}-{_num(schedule['end'])}"
    elif kind == "adaptive":
        label = f"adaptive p={_num(schedule['p_min'])}-{_num(schedule['p_max'])} w={schedule['window']}"
    else:
        label = kind
    if schedule.get("final_full_fraction"):
        label += f" ff={_num(schedule['final_full_fraction'])}"
    return label


def kernel_label(kernel: dict[str, Any]) -> str:
    mode = kernel["mode"]
    if mode == "none":
        return "kernel none"
    if mode == "resize":
        h, w = kernel["size"]
        label = f"resize {h}x{w} {kernel['scale']}"
    else:
        label = f"{mode} k{kernel['window']}s{kernel['stride']} {kernel['scale']}"
    if kernel.get("pad_side", "alternate") != "alternate":
        label += f" pad-{kernel['pad_side']}"
    return label


def setting_key(dynds: dict[str, Any]) -> str:
    """A readable, unique name for a DynDS setting, e.g. ``stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen``."""
    inp = dynds["input"]
    return " | ".join(
        (schedule_label(dynds["schedule"]), kernel_label(dynds["kernel"]), f"in/{inp['factor']} {inp['mode']}", f"bn {dynds['bn']}")
    )


# ---------------------------------------------------------------- recipes: what makes numbers comparable

# Spec keys that are not part of the recipe: the job's name, the DynDS setting (the cell's other half)
# and which comparison runs were asked for. train.seed is dropped from the train section.
_NOT_RECIPE = ("name", "dynds", "baseline", "equal_time_baseline")


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _hash(obj: Any) -> str:
    return hashlib.sha256(_canon(obj).encode()).hexdigest()[:16]


def recipe_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a canonical spec: model, all of data, all of train but the seed.

    Two jobs with equal recipes trained the same network on the same data the same way (but for
    the seed and the DynDS setting), so their numbers may be pooled and compared. Idempotent:
    ``recipe_of(recipe_of(spec)) == recipe_of(spec)``.
    """
    recipe = {k: copy.deepcopy(v) for k, v in spec.items() if k not in _NOT_RECIPE}
    if isinstance(recipe.get("train"), dict):
        recipe["train"].pop("seed", None)
    return recipe


def recipe_hash(spec: dict[str, Any]) -> str:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces), first 16 hex digits."""
    return _hash(recipe_of(spec))


def frontier_recipe(spec: dict[str, Any]) -> dict[str, Any]:
    """The recipe without ``train.epochs``: every budget of one recipe lies on one budget frontier."""
    recipe = recipe_of(spec)
    if isinstance(recipe.get("train"), dict):
        recipe["train"].pop("epochs", None)
    return recipe


def frontier_key(spec: dict[str, Any]) -> str:
    """The hash (16 hex) of ``frontier_recipe(spec)``: equal for the budgets of one recipe."""
    return _hash(frontier_recipe(spec))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _value(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, (list, dict)):
        return _canon(v)
    return str(v)


_MISSING = object()


def track_labels(recipes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A unique track label per recipe hash: ``track_of(recipe)``, and where recipes share that label,
    `` · `` plus the train/data (then model) settings in which they differ (at most three), or the
    hash's first 8 hex digits when that does not tell them apart."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for h, recipe in recipes.items():
        by_label[track_of(recipe)].append(h)
    labels: dict[str, str] = {}
    for base, hashes in by_label.items():
        if len(hashes) == 1:
            labels[hashes[0]] = base
            continue
        flat = {h: _flat(recipes[h]) for h in hashes}
        paths = sorted({p for f in flat.values() for p in f}, key=lambda p: ({"train": 0, "data": 1}.get(p.split(".")[0], 2), p))
        differ = [p for p in paths if len({_canon(flat[h].get(p, None)) if p in flat[h] else "\0missing" for h in hashes}) > 1][:3]
        cand = {h: f"{base} · " + ", ".join(f"{p}={_value(flat[h].get(p))}" for p in differ) for h in hashes}
        unique = differ and len(set(cand.values())) == len(hashes)
        for h in hashes:
            labels[h] = cand[h] if unique else f"{base} · {h[:8]}"
    return labels

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


def _cell(rows: list[dict[str, Any]], *, max_acc_drop: float, min_seeds: int, include_noisy: bool) -> dict[str, Any]:
    """One cell (recipe, setting): statistics over seeds, the verdict, and whether it may be ranked."""
    noisy = [r for r in rows if r.get("timing_noisy")]
    clean = [r for r in rows if not r.get("timing_noisy")]
    # Noisy jobs are left out of the statistics unless asked for; a cell with nothing else shows them
    # (and is not ranked): its only numbers, flagged.
    used = rows if include_noisy or not clean else clean
    noisy_included = any(r.get("timing_noisy") for r in used)
    seeds = sorted({r["seed"] for r in used})
    ts_mean, ts_std, ts_ci = _stats(per_seed(used, "time_saving"))
    acc_mean, acc_std, acc_ci = _stats(per_seed(used, "acc_delta"))
    gaps = per_seed(used, "equal_time_gap")
    gap_mean, gap_std, gap_ci = _stats(gaps)
    dacc_mean, _, dacc_ci = _stats(per_seed(used, "dynds_acc"))
    verdict = judge(
        time_saving=ts_mean, acc_delta=acc_mean, gap_mean=gap_mean, gap_ci95=tuple(gap_ci) if gap_ci else None,
        n_seeds=len(gaps) if gaps else len(seeds), min_seeds=min_seeds, timing_noisy=noisy_included,
    )
    why = []
    if noisy_included and not include_noisy:
        why.append(f"every job of this cell had noisy timing ({len(noisy)}); include_noisy=true ranks it")
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


def _key(row: dict[str, Any]) -> str:
    return row.get("recipe_hash") or f"track:{row['track']}"


def _recipes_and_labels(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Recipe (by key) and unique label (by key) of every recipe in ``rows``."""
    recipes: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    for r in rows:
        k = _key(r)
        if k not in bases:
            bases[k] = r["track"]
            recipes[k] = r.get("recipe") or {}
    full = {k: rec for k, rec in recipes.items() if rec.get("model") and rec.get("train") and rec.get("data")}
    labels = track_labels(full)
    for k, base in bases.items():
        if k not in labels:
            labels[k] = base
    # Recipes without a stored recipe dict cannot be told apart by their settings: by their key.
    seen: dict[str, list[str]] = defaultdict(list)
    for k, label in labels.items():
        seen[label].append(k)
    for label, ks in seen.items():
        if len(ks) > 1:
            for k in ks:
                labels[k] = f"{bases[k]} · {k.removeprefix('track:')[:8]}"
    return recipes, labels


def resolve_track(rows: list[dict[str, Any]], track: str) -> str | None:
    """The recipe key that ``track`` (a label or a recipe hash) names among ``rows``; None if none."""
    _, labels = _recipes_and_labels(rows)
    if track in labels:
        return track
    return next((k for k, label in labels.items() if label == track), None)


def build_leaderboard(
    rows: list[dict[str, Any]],
    *,
    max_acc_drop: float = 0.5,
    track: str | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    include_noisy: bool = False,
) -> dict[str, Any]:
    """Tracks (one per recipe) with their cells ranked. ``track``: a label or a recipe hash.

    Rows without a baseline comparison (time_saving or acc_delta None) do not count, but their
    recipes take part in making the labels unique (so a label does not change with the bound).
    """
    if max_acc_drop < 0:
        raise ValueError(f"max_acc_drop must be >= 0 (percentage points), got {max_acc_drop}")
    if min_seeds < 1:
        raise ValueError(f"min_seeds must be >= 1, got {min_seeds}")
    recipes, labels = _recipes_and_labels(rows)
    wanted = None if track is None else (track if track in labels else next((k for k, v in labels.items() if v == track), ""))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("time_saving") is None or r.get("acc_delta") is None:
            continue
        k = _key(r)
        if wanted is not None and k != wanted:
            continue
        groups[k].append(r)
    tracks = []
    for k, group in groups.items():
        recipe = recipes[k]
        tracks.append({
            "track": labels[k],
            "recipe_hash": group[0].get("recipe_hash"),
            "frontier_key": frontier_key(recipe) if recipe else None,
            "recipe": recipe,
            "arch": group[0]["arch"],
            "dataset": group[0]["dataset"],
            "entries": rank_track(group, max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy),
        })
    tracks.sort(key=lambda t: t["track"])
    return {"max_acc_drop": max_acc_drop, "min_seeds": min_seeds, "include_noisy": include_noisy, "tracks": tracks}


# ---------------------------------------------------------------- the budget frontier

FRONTIER_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def frontier_epochs(epochs: int) -> list[int]:
    """The baseline budgets of the frontier preset: 25/50/75/100 % of ``epochs``, rounded half up, at least 1, distinct."""
    return sorted({max(1, math.floor(epochs * f + 0.5)) for f in FRONTIER_FRACTIONS})


def _band(points: list[dict[str, Any]], x: float) -> tuple[float, float] | None:
    """The baseline band [ci low, ci high] (the mean where a point has no interval) at ``x``, linearly
    interpolated between the neighbouring points; None outside the points' x range."""
    if not points:
        return None
    eps = 1e-9
    xs = [p["time_fraction"] for p in points]
    if x < xs[0] - eps or x > xs[-1] + eps:
        return None

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
    """"above" / "within" / "below" the baseline band at ``x``; "unknown" outside its x range (or without numbers)."""
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
    recipes, labels = _recipes_and_labels(rows)
    k = track if track in labels else next((key for key, v in labels.items() if v == track), None)
    if k is None:
        return None
    recipe = recipes[k]
    full_epochs = recipe.get("train", {}).get("epochs")
    fk = frontier_key(recipe) if recipe else None
    board = build_leaderboard(rows, max_acc_drop=max_acc_drop, track=k, min_seeds=min_seeds, include_noisy=include_noisy)
    cells = board["tracks"][0]["entries"] if board["tracks"] else []

    raw: list[tuple[float, str, Any, int, float]] = []  # (x, source, seed, job_id, acc)
    for r in rows:
        rk = _key(r)
        rec = recipes.get(rk) or {}
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
        baseline.append({
            "time_fraction": x, "acc_mean": mean, "acc_ci95": _ci(ci), "n_seeds": len(accs), "n_points": len(items),
            "sources": sorted({src for _, src, _, _, _ in items}), "job_ids": sorted({j for _, _, _, j, _ in items}),
        })

    dynds = []
    for c in cells:
        ts, ts_ci = c["time_saving_mean"], c["time_saving_ci95"]
        x = 1 - ts if ts is not None else None
        dynds.append({
            "setting_key": c["setting_key"], "setting": c["setting"], "schedule_kind": c["schedule_kind"],
            "time_fraction": x, "time_fraction_ci95": [1 - ts_ci[1], 1 - ts_ci[0]] if ts_ci else None,
            "acc_mean": c["dynds_acc_mean"], "acc_ci95": c["dynds_acc_ci95"],
            "position": position(baseline, x, c["dynds_acc_mean"]),
            "n_seeds": c["n_seeds"], "job_ids": c["job_ids"], "rank": c["rank"], "ranked": c["ranked"],
            "verdict": c["verdict"], "verdict_sentence": c["verdict_sentence"],
        })
    return {
        "track": labels[k], "recipe_hash": None if k.startswith("track:") else k, "frontier_key": fk,
        "recipe": recipe, "full_epochs": full_epochs, "baseline": baseline, "dynds": dynds,
    }
