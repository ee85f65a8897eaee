"""DynDS in your own training loop: one small object that decides each step and runs it reduced.

    dynds = DynDS(schedule={"kind": "stochastic", "p": 0.5}, total_steps=len(loader) * epochs, seed=0)
    model = dynds.prepare(model)                  # before building the optimizer (bn="separate" adds parameters)
    for step, (x, y) in enumerate(batches):
        with dynds.batch(model, x, step) as x_in:  # x itself on a full step; downsampled, kernels pooled, on a reduced one
            loss = F.cross_entropy(model(x_in), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

The forward must run inside the ``with`` block (that is where convolutions are pooled); ``backward``
may run after it. Each setting takes its spec section (``dynds_core.spec.StochasticSchedule``, ...) or
a plain dict of it, with a spec's defaults. The decisions are the spec's schedule, a pure function of
(seed, step) except for ``adaptive``, which needs :meth:`DynDS.observe` after each step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn
from pydantic import BaseModel

from .op_settings import relative_kernel
from .ops import downsample_input, resize_input
from .reduced import attach_separate_bn, reduced_pass
from .schedules import make_schedule
from .spec import DynDSSpec, JobSpec

Setting = BaseModel | Mapping[str, Any] | None


def _section(value: Setting) -> Any:
    if value is None or isinstance(value, BaseModel):
        return value.model_dump() if isinstance(value, BaseModel) else None
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a DynDS setting must be its spec section or a dict of it, got {type(value).__name__}")


class DynDS:
    """The method's settings and schedule for ``total_steps`` training steps (see the module docstring)."""

    def __init__(
        self,
        *,
        total_steps: int,
        schedule: Setting = None,
        kernel: Setting = None,
        input: Setting = None,  # noqa: A002  (the spec section's name)
        bn: str = "frozen",
        seed: int = 0,
        image_size: tuple[int, int] | None = None,  # (H, W) of the data: the relatives (progressive, mixsize) need it
    ):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer: {total_steps!r}")
        raw = {k: v for k, v in (("schedule", _section(schedule)), ("kernel", _section(kernel)), ("input", _section(input))) if v is not None}
        # Through JobSpec, so that errors name the key as a spec would ("dynds.schedule.p").
        self.settings: DynDSSpec = JobSpec.parse({"dynds": {**raw, "bn": bn}}, source="DynDS(...)").dynds
        self.total_steps = total_steps
        self.schedule = make_schedule(self.settings.schedule, total_steps, seed, image_size)
        self.last: str | None = None  # the batch type of the latest batch()

    def prepare(self, model: nn.Module) -> nn.Module:
        """Ready ``model`` for these settings (bn="separate": its reduced-pass BatchNorm set); call before
        building the optimizer. Returns the model."""
        return attach_separate_bn(model) if self.settings.bn == "separate" and self.schedule.can_reduce else model

    def decide(self, step: int, epoch: int = 0) -> str:
        """ "full" or "reduced" for this step."""
        return self.schedule.decide(step, epoch)

    @contextlib.contextmanager
    def batch(self, model: nn.Module, x: torch.Tensor, step: int, epoch: int = 0) -> Iterator[torch.Tensor]:
        """The input to feed ``model`` for this step: ``x`` on a full step; on a reduced one ``x``
        downsampled, with the model's convolutions pooled while the block runs."""
        self.last = self.decide(step, epoch)
        if self.last == "full":
            yield x
            return
        d = self.settings
        size = self.schedule.input_size(step)
        if size is not None:  # a relative's step: the batch resized to its size, kernels full (or pooled: relative_kernel)
            with reduced_pass(model, relative_kernel(d, x.shape[-2:], size), d.bn):
                yield resize_input(x, size, d.input.mode)
            return
        with reduced_pass(model, d.kernel, d.bn):
            yield downsample_input(x, d.input.factor, d.input.mode)

    def observe(self, loss: float, step_time_s: float) -> None:
        """Tell the schedule how the latest step went (only ``adaptive`` uses it)."""
        if self.last is None:
            raise RuntimeError("observe() needs a step first: call it after a batch() block")
        self.schedule.observe(self.last, float(loss), float(step_time_s))
