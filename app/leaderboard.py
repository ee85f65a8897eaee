"""The leaderboard: schedule settings ranked per track, as a pure function over summary rows.

    rows = [{"job_id": 1, "track": "resnet20/cifar10/e12-n10000", "arch": "resnet20", "dataset": "cifar10",
             "setting_key": "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen", "setting": {...},
             "schedule_kind": "stochastic", "time_saving": 0.31, "acc_delta": -0.2, "equal_time_gap": None}, ...]
    board = build_leaderboard(rows, max_acc_drop=0.5)

A track is a budget (model, data set, epochs, training-set size): only settings trained under the same
budget are comparable. A setting is a job's ``dynds`` section; seeds of one setting are pooled.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any


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


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    # Spread over seeds: sample standard deviation (n - 1); one seed has no spread (0).
    # Plain floats: statistics.stdev works in exact fractions, 100x slower on a large board.
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _entry(rows: list[dict[str, Any]], max_acc_drop: float) -> dict[str, Any]:
    ts_mean, ts_std = _mean_std([r["time_saving"] for r in rows])
    acc_mean, acc_std = _mean_std([r["acc_delta"] for r in rows])
    gap_mean, gap_std = _mean_std([r["equal_time_gap"] for r in rows if r.get("equal_time_gap") is not None])
    first = rows[0]
    return {
        "rank": 0,
        "setting": first["setting"],
        "setting_key": first["setting_key"],
        "schedule_kind": first["schedule_kind"],
        "n_seeds": len(rows),
        "time_saving_mean": ts_mean,
        "time_saving_std": ts_std,
        "acc_delta_mean": acc_mean,
        "acc_delta_std": acc_std,
        "equal_time_gap_mean": gap_mean,
        "equal_time_gap_std": gap_std,
        "within_bound": -acc_mean <= max_acc_drop,
        "pareto": False,
        "job_ids": sorted(r["job_id"] for r in rows),
    }


def _mark_pareto(entries: list[dict[str, Any]]) -> None:
    # Pareto-optimal: no other setting is strictly better on both time saving and accuracy delta.
    for e in entries:
        e["pareto"] = not any(
            o["time_saving_mean"] > e["time_saving_mean"] and o["acc_delta_mean"] > e["acc_delta_mean"] for o in entries
        )


def rank_track(rows: list[dict[str, Any]], max_acc_drop: float) -> list[dict[str, Any]]:
    """Entries of one track: within the accuracy-drop bound first, each group by mean time saving (desc)."""
    by_setting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_setting[r["setting_key"]].append(r)
    entries = [_entry(group, max_acc_drop) for group in by_setting.values()]
    _mark_pareto(entries)
    # Ties: the smaller accuracy drop first, then the name, so the order is stable.
    entries.sort(key=lambda e: (not e["within_bound"], -e["time_saving_mean"], -e["acc_delta_mean"], e["setting_key"]))
    for i, e in enumerate(entries, 1):
        e["rank"] = i
    return entries


def build_leaderboard(rows: list[dict[str, Any]], *, max_acc_drop: float = 0.5, track: str | None = None) -> dict[str, Any]:
    """Rows without a baseline comparison (time_saving or acc_delta None) do not count."""
    if max_acc_drop < 0:
        raise ValueError(f"max_acc_drop must be >= 0 (percentage points), got {max_acc_drop}")
    tracks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("time_saving") is None or r.get("acc_delta") is None:
            continue
        if track is not None and r["track"] != track:
            continue
        tracks[r["track"]].append(r)
    return {
        "max_acc_drop": max_acc_drop,
        "tracks": [
            {"track": name, "arch": group[0]["arch"], "dataset": group[0]["dataset"], "entries": rank_track(group, max_acc_drop)}
            for name, group in sorted(tracks.items())
        ],
    }
