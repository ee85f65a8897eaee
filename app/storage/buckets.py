"""A run's step points, bounded: every step of a short run; for a long one, buckets that keep the mean,
min and max of each value, so a spike still shows as a max.

    bucket_points(points, total_steps=450_000, max_points=2_000)   # <= 2,000 points, as stored
    b = StepBuckets(total_steps=450_000, max_points=2_000)         # the same, one step at a time
    done = b.add(point)        # the points of the buckets it finished: [] or [point]
    part = b.cut()             # the open bucket as it stands (a checkpoint, the run's end)

The buckets lie on a grid fixed by the run's step count (known when it starts, the equal-time run's
included): the first ``max_points // 4`` steps one by one (the early, fast-moving part of a curve), then
the rest in buckets of one width, so at most ``max_points`` points whatever the step count. A fixed grid
keeps the stored series append-only: a point once written never changes, which the event stream's and
GET /metrics' cursors (point ids) rely on, and a resumed run continues the same grid.

A checkpoint cuts the open bucket (``cuts``): the steps it covers are stored before the checkpoint file
exists, and a run resumed from it starts a bucket at its step. So the stored series of a resumed run is
the one of the run uninterrupted, and each checkpoint adds at most one point per run to the bound.

A bucket's point is the step point of its last step (step, epoch, train time) with its values summarised:
each number as its mean with ``<name>_min`` and ``<name>_max`` (NaN and inf left out of all three and
counted in ``<name>_nonfinite``), each text value (the batch type) as itself when all agree, else "mixed"
with ``<name>_counts``; ``n`` the steps it holds, ``first_step`` its first. A bucket of one step is
that step's point, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["StepBuckets", "bucket_end", "bucket_points", "grid", "summarize"]


def grid(total_steps: int, max_points: int | None) -> tuple[int, int]:
    """(head, width): steps below ``head`` are kept one by one, the rest in buckets of ``width`` steps."""
    if max_points is not None and max_points < 4:
        raise ValueError(f"max_points must be at least 4 (or None: every step): {max_points}")
    if max_points is None or total_steps <= max_points:
        return max(total_steps, 0), 1
    head = max_points // 4
    return head, math.ceil((total_steps - head) / (max_points - head))


def bucket_end(step: int, head: int, width: int) -> int:
    """The last step of the grid bucket holding ``step`` (the run's last step may come before it)."""
    if step < head or width == 1:
        return step
    return head + ((step - head) // width + 1) * width - 1


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Summary:
    """The running summary of one bucket: sums, extremes and counts in the order the steps came."""

    def __init__(self, point: dict[str, Any]):
        self.first = point
        self.last = point
        self.n = 0
        self.sums: dict[str, float] = {}
        self.mins: dict[str, float] = {}
        self.maxs: dict[str, float] = {}
        self.finite: dict[str, int] = {}
        self.texts: dict[str, dict[Any, int]] = {}
        self.keys: dict[str, None] = {}  # the values' names in the order first seen
        self.add(point)

    def add(self, point: dict[str, Any]) -> None:
        self.last = point
        self.n += 1
        for key, v in (point.get("values") or {}).items():
            self.keys.setdefault(key)
            if _is_number(v):
                self.finite.setdefault(key, 0)
                if math.isfinite(v):
                    if key in self.sums:
                        self.sums[key] += v
                        self.mins[key] = min(self.mins[key], v)
                        self.maxs[key] = max(self.maxs[key], v)
                    else:
                        self.sums[key], self.mins[key], self.maxs[key] = float(v), v, v
                    self.finite[key] += 1
            else:
                counts = self.texts.setdefault(key, {})
                counts[v] = counts.get(v, 0) + 1

    def point(self) -> dict[str, Any]:
        if self.n == 1:
            return self.first
        values: dict[str, Any] = {}
        for key in self.keys:
            if key in self.finite:
                k = self.finite[key]
                values[key] = self.sums[key] / k if k else None
                values[f"{key}_min"] = self.mins.get(key)
                values[f"{key}_max"] = self.maxs.get(key)
                if k < self.n:
                    values[f"{key}_nonfinite"] = self.n - k
            if key in self.texts:
                counts = self.texts[key]
                if len(counts) == 1 and key not in self.finite:
                    values[key] = next(iter(counts))
                else:
                    values.setdefault(key, "mixed")
                    values[f"{key}_counts"] = {str(v): c for v, c in counts.items()}
        values["n"] = self.n
        values["first_step"] = self.first["step"]
        last = self.last
        return {"run": last["run"], "kind": "step", "step": last["step"], "epoch": last["epoch"], "train_time_s": last["train_time_s"]} | {
            "values": values
        }


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """One point for consecutive step points of a run (see the module docstring)."""
    if not points:
        raise ValueError("summarize needs at least one point")
    s = _Summary(points[0])
    for p in points[1:]:
        s.add(p)
    return s.point()


def bucket_points(points: Iterable[dict[str, Any]], *, total_steps: int, max_points: int | None, cuts: Iterable[int] = ()) -> list[dict[str, Any]]:
    """A run's step points (in step order) as stored: grouped by the grid of ``grid(total_steps, max_points)``
    and cut before each step in ``cuts`` (the steps checkpoints resumed from), one point per group."""
    head, width = grid(total_steps, max_points)
    cut_at = set(cuts)
    out: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    end = -1
    for p in points:
        step = p["step"]
        if group and (step > end or step in cut_at):
            out.append(summarize(group))
            group = []
        if not group:
            end = bucket_end(step, head, width)
        group.append(p)
    if group:
        out.append(summarize(group))
    return out


class StepBuckets:
    """``bucket_points`` one step at a time for one run, holding only the open bucket's summary."""

    def __init__(self, *, total_steps: int, max_points: int | None):
        self.head, self.width = grid(total_steps, max_points)
        self.total_steps = total_steps
        self._open: _Summary | None = None
        self._end = -1

    def add(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Take the next step's point; returns the points of the buckets it completes (usually none or one)."""
        step = point["step"]
        done = []
        if self._open is not None and step > self._end:  # a step missing (never in training): close what is open
            done.append(self._open.point())
            self._open = None
        if self._open is None:
            self._open, self._end = _Summary(point), bucket_end(step, self.head, self.width)
        else:
            self._open.add(point)
        if step >= self._end or step >= self.total_steps - 1:
            done.append(self._open.point())
            self._open = None
        return done

    def cut(self) -> dict[str, Any] | None:
        """The open bucket's point (None when none is open); the next step starts a new bucket."""
        if self._open is None:
            return None
        point, self._open = self._open.point(), None
        return point

    @property
    def open_steps(self) -> int:
        return self._open.n if self._open is not None else 0
