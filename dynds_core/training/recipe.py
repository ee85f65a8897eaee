"""The training recipe shared by every run of a job: device, optimizer, learning rate, AMP.

The learning rate is a pure function of (step, total steps), so that a run cut short (the
equal-time baseline) completes its whole schedule over its own, shorter length::

    lr_at(0, 1000, peak=0.1, kind="onecycle")      # 0.004: one-cycle starts at peak / 25
    lr_at(999, 1000, peak=0.1, kind="cosine")      # ~0
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import get_args

import torch
import torch.nn as nn

from ..spec import LRSchedule, SpecError, TrainSpec

LR_SCHEDULES: tuple[LRSchedule, ...] = get_args(LRSchedule)

# One-cycle shape (the values of torch's OneCycleLR defaults, written out so they are settings we own):
ONECYCLE_PCT_START = 0.3  # fraction of steps rising to the peak
ONECYCLE_DIV = 25.0  # start at peak / 25
ONECYCLE_FINAL_DIV = 1e4  # end at start / 1e4
STEP_MILESTONES = (0.5, 0.75)  # step schedule: x0.1 at 50% and 75% of training
STEP_GAMMA = 0.1


def lr_at(step: int, total_steps: int, *, peak: float, kind: str = "onecycle", warmup_steps: int = 0) -> float:
    """Learning rate for 0-based ``step`` of ``total_steps``.

    ``onecycle``: cosine rise from peak/25 to peak over the first 30% of steps, cosine fall to
    peak/25e4 (its own ramp; ``warmup_steps`` is ignored). ``cosine``, ``step``, ``constant``: a
    linear warm-up from peak/warmup_steps to peak over ``warmup_steps``, then cosine to 0, x0.1 at
    50% and 75%, or flat.
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}: {kind!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1: {total_steps}")
    step = min(max(step, 0), total_steps - 1)
    if kind == "onecycle":
        initial, final = peak / ONECYCLE_DIV, peak / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
        up = max(1, int(round(ONECYCLE_PCT_START * total_steps)) - 1)
        if step <= up:
            return _cos_interp(initial, peak, step / up)
        down = max(1, total_steps - 1 - up)
        return _cos_interp(peak, final, (step - up) / down)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if kind == "constant":
        return peak
    if kind == "step":
        progress = step / total_steps
        return peak * STEP_GAMMA ** sum(progress >= m for m in STEP_MILESTONES)
    rest = max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup_steps) / rest))


def _cos_interp(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def resolve_device(name: str, *, source: str = "spec") -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Asking for CUDA on a machine without it is a spec error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(source, [("train.device", f"{name!r} asked for, but this machine has no usable CUDA device; use cpu or auto")])
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpecError(source, [("train.device", f"{name!r}: only {torch.cuda.device_count()} CUDA device(s) here")])
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over every parameter, weight decay on all of them."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        nesterov = train.nesterov and train.momentum > 0  # torch refuses Nesterov without momentum
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, nesterov=nesterov, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CPU, float16 on CUDA; a no-op context when AMP is off."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave as the caller set it), restored afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
