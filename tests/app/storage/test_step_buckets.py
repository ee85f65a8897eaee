"""Bounded step points (app/storage/buckets.py) on constructed series: the bound, exact means, spikes kept
as maxima, the text values counted, checkpoint cuts, and the streaming form equal to the pure function."""

from __future__ import annotations

import math

import pytest

from app.storage.buckets import StepBuckets, bucket_end, bucket_points, grid, summarize


def step_point(step: int, loss: float = 1.0, *, run: str = "dynds", batch_type: str = "full", steps_per_epoch: int = 1000) -> dict:
    values = {"loss": loss, "acc": 50.0, "lr": 0.1, "batch_type": batch_type, "step_time_s": 0.25}
    return {"run": run, "kind": "step", "step": step, "epoch": step // steps_per_epoch, "train_time_s": 0.25 * (step + 1), "values": values}


def series(n: int, loss=lambda s: 1.0, batch_type=lambda s: "full") -> list[dict]:
    return [step_point(s, loss(s), batch_type=batch_type(s)) for s in range(n)]


def streamed(points: list[dict], *, total_steps: int, max_points: int | None, cuts=()) -> list[dict]:
    b = StepBuckets(total_steps=total_steps, max_points=max_points)
    out = []
    for p in points:
        if p["step"] in cuts:
            out.extend([c] if (c := b.cut()) is not None else [])
        out.extend(b.add(p))
    if (c := b.cut()) is not None:
        out.append(c)
    return out


def test_a_short_run_keeps_every_step_unchanged():
    pts = series(2000, loss=lambda s: 1 / (s + 1))
    assert bucket_points(pts, total_steps=2000, max_points=2000) == pts
    assert bucket_points(pts, total_steps=2000, max_points=None) == pts


@pytest.mark.parametrize("total", [2001, 4999, 450_000])
def test_a_long_run_is_bounded_with_every_early_step_then_buckets(total):
    pts = series(total, loss=lambda s: (s % 7) / 8)
    out = bucket_points(pts, total_steps=total, max_points=2000)
    assert len(out) <= 2000
    head, width = grid(total, 2000)
    assert head == 500 and width == math.ceil((total - 500) / 1500)
    assert out[:head] == pts[:head]  # the first steps one by one
    assert sum(p["values"].get("n", 1) for p in out) == total  # every step counted once
    for before, p in zip(out[head - 1 : -1], out[head:], strict=True):  # buckets back to back, each ending on the grid
        first = p["values"].get("first_step", p["step"])  # a bucket of one step is that step's point
        assert first == before["step"] + 1 and p["step"] == min(bucket_end(first, head, width), total - 1)
    assert out[-1]["step"] == total - 1 and out[-1]["train_time_s"] == pts[-1]["train_time_s"]


def test_a_bucket_keeps_the_exact_mean_and_a_spike_as_its_max():
    # 4 steps one by one, then buckets of width ceil(96 / 12) = 8: the spike at step 50 lies in [44, 51].
    loss = {s: 0.5 for s in range(100)} | {50: 1000.0, 47: 0.25}
    pts = series(100, loss=lambda s: loss[s])
    out = bucket_points(pts, total_steps=100, max_points=16)
    assert grid(100, 16) == (4, 8)
    (b,) = [p for p in out if p["values"].get("first_step") == 44]
    v = b["values"]
    assert b["step"] == 51 and b["epoch"] == 0 and b["train_time_s"] == 0.25 * 52
    assert v["n"] == 8 and v["loss_max"] == 1000.0 and v["loss_min"] == 0.25
    assert v["loss"] == (6 * 0.5 + 1000.0 + 0.25) / 8  # exact: these sums are exact in binary
    assert v["acc"] == 50.0 and v["acc_min"] == v["acc_max"] == 50.0
    assert v["batch_type"] == "full" and "batch_type_counts" not in v


def test_text_values_are_counted_and_nonfinite_numbers_left_out_and_counted():
    pts = series(10, loss=lambda s: math.nan if s == 3 else float(s), batch_type=lambda s: "reduced" if s % 2 else "full")
    p = summarize(pts[2:6])
    v = p["values"]
    assert v["batch_type"] == "mixed" and v["batch_type_counts"] == {"full": 2, "reduced": 2}
    assert v["loss"] == (2 + 4 + 5) / 3 and v["loss_min"] == 2 and v["loss_max"] == 5 and v["loss_nonfinite"] == 1
    all_nan = summarize([step_point(0, math.nan), step_point(1, math.inf)])["values"]
    assert all_nan["loss"] is None and all_nan["loss_min"] is None and all_nan["loss_nonfinite"] == 2


@pytest.mark.parametrize("total,max_points,cuts", [(100, 16, ()), (100, 16, (30, 47, 48)), (1000, 40, (7, 500, 999)), (50, 100, (10,))])
def test_the_streaming_form_stores_what_the_pure_function_says(total, max_points, cuts):
    pts = series(total, loss=lambda s: math.sin(s) * 3 + s / 7)
    want = bucket_points(pts, total_steps=total, max_points=max_points, cuts=cuts)
    assert streamed(pts, total_steps=total, max_points=max_points, cuts=cuts) == want
    assert len(want) <= max(max_points, total if total <= max_points else 0) + len(cuts)


def test_a_resumed_run_stores_the_series_of_the_run_uninterrupted():
    """A checkpoint at step 30 cuts the open bucket; the dead attempt's points past it are deleted
    (crud.resume_run: step >= 30) and a new StepBuckets goes on from step 30: the same stored series."""
    total, cap, ckpt = 100, 16, 30
    pts = series(total, loss=lambda s: (s * 37 % 11) / 3)
    uninterrupted = streamed(pts, total_steps=total, max_points=cap, cuts=(ckpt,))
    first = streamed(pts[:61], total_steps=total, max_points=cap, cuts=(ckpt,))  # died at step 60
    kept = [p for p in first if p["step"] < ckpt]
    resumed = kept + streamed(pts[ckpt:], total_steps=total, max_points=cap)
    assert resumed == uninterrupted
    assert sum(p["values"].get("n", 1) for p in resumed) == total


def test_bad_bounds_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="max_points must be at least 4.*: 2"):
        grid(100, 2)
