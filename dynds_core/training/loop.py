"""One training run: a model, a schedule, a recipe, measured as METHOD.md says.

Timing: a step's time runs from the end of the previous step (or the epoch's start) to the end
of this one, so it includes fetching and augmenting its batch and the step times add up exactly
to the epoch's train time. Evaluation and the reading of finished steps (callbacks included: a
worker writes metrics to its database there) happen outside these intervals: the clock restarts
after them. On CUDA the step boundaries are CUDA events on the training device's stream, read in
batches (one synchronisation every ``flush_every`` steps, not one per step), so measuring does
not serialise the CPU and the GPU.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..callbacks import Callback, CallbackList
from ..flops import step_flops
from ..result import EpochMetrics, RunKind, RunResult, StepMetrics
from ..schedules import Schedule
from ..spec import DynDSSpec, JobSpec
from .recipe import autocast, build_optimizer, lr_at

CUDA_FLUSH_EVERY = 25  # steps between synchronisations on CUDA (losses, times, callbacks)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too


@dataclass
class RunPlan:
    """What one run does: which schedule, how many steps (the equal-time run stops early)."""

    kind: RunKind
    schedule: Schedule
    total_steps: int
    steps_per_epoch: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)


@dataclass
class _Pending:
    step: int
    epoch: int
    batch_type: str
    lr: float
    loss: torch.Tensor
    correct: torch.Tensor
    n: int
    start: Any  # float (CPU clock) or a CUDA event
    end: Any


@dataclass
class _Tally:
    """Running sums of one run; times in seconds."""

    train_time: float = 0.0
    time: dict[str, float] = field(default_factory=lambda: {"full": 0.0, "reduced": 0.0})
    steps: dict[str, int] = field(default_factory=lambda: {"full": 0, "reduced": 0})
    epoch_loss: float = 0.0
    epoch_correct: float = 0.0
    epoch_seen: int = 0


def run_training(
    plan: RunPlan,
    spec: JobSpec,
    init_model: nn.Module,
    dataset: Any,
    device: torch.device,
    callback: Callback,
) -> RunResult:
    """Train a copy of ``init_model`` under ``plan``; return its :class:`RunResult` (``cancelled`` if stopped)."""
    from ..data import make_loaders

    t, d = spec.train, spec.dynds
    seed_everything(t.seed)
    cuda = device.type == "cuda"
    can_reduce = plan.schedule.can_reduce
    model = _model_copy(init_model, spec, device, reduced=can_reduce)
    optimizer = build_optimizer(model, t)
    scaler = torch.amp.GradScaler("cuda", enabled=t.amp and cuda)
    criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    warmup = int(round(t.warmup_epochs * plan.steps_per_epoch))

    loader, val_loader = make_loaders(
        dataset, batch_size=t.batch_size, device=device, augment=spec.data.augment, normalize=spec.data.normalize,
        seed=t.seed, channels_last=t.channels_last,
    )  # fmt: skip

    shape = (t.batch_size, dataset.in_channels, *dataset.image_size)
    flops = {"full": step_flops(model, shape, reduced=False, device=device), "reduced": 0.0}
    if can_reduce:
        flops["reduced"] = step_flops(
            model, shape, reduced=True, kernel=d.kernel, bn=d.bn, input_factor=d.input.factor, input_mode=d.input.mode, device=device
        )

    result = RunResult(run=plan.kind, flops_full_step=flops["full"], flops_reduced_step=flops["reduced"])
    callback.on_run_start(
        plan.kind,
        {
            "total_steps": plan.total_steps, "epochs": plan.epochs, "steps_per_epoch": plan.steps_per_epoch,
            "device": str(device), "flops_full_step": flops["full"], "flops_reduced_step": flops["reduced"],
            "expected_reduced_fraction": plan.schedule.expected_reduced_fraction(),
        },
    )
    # Stepwise signals are needed at once by the adaptive schedule; otherwise batch them on CUDA.
    flush_every = 1 if (not cuda or plan.schedule.kind == "adaptive") else CUDA_FLUSH_EVERY
    # Building StepMetrics costs microseconds; skip it when nobody listens.
    wants_steps = not (isinstance(callback, CallbackList) and not callback.callbacks) and type(callback).on_step is not Callback.on_step
    tally = _Tally()
    step = 0
    cancelled = False

    def flush(pending: list[_Pending]) -> None:
        """Read the pending steps' losses and times, and hand them to the schedule and the callback."""
        if not pending:
            return
        if cuda:
            pending[-1].end.synchronize()
        losses = torch.stack([p.loss for p in pending]).float().tolist()
        corrects = torch.stack([p.correct for p in pending]).float().tolist()
        for p, loss, correct in zip(pending, losses, corrects):
            dt = p.start.elapsed_time(p.end) / 1000.0 if cuda else p.end - p.start
            tally.train_time += dt
            tally.time[p.batch_type] += dt
            tally.steps[p.batch_type] += 1
            tally.epoch_loss += loss * p.n
            tally.epoch_correct += correct
            tally.epoch_seen += p.n
            plan.schedule.observe(p.batch_type, loss, dt)
            if wants_steps:
                callback.on_step(
                    StepMetrics(
                        run=plan.kind, step=p.step, epoch=p.epoch, batch_type=p.batch_type, loss=loss,
                        acc=100.0 * correct / p.n, lr=p.lr, step_time_s=dt, train_time_s=tally.train_time,
                        total_steps=plan.total_steps,
                    )
                )
        pending.clear()

    with collector_between_epochs():
        for epoch in range(plan.epochs):
            model.train()
            tally.epoch_loss = tally.epoch_correct = 0.0
            tally.epoch_seen = 0
            pending: list[_Pending] = []
            if cuda:
                torch.cuda.synchronize(device)
            start = step_clock(device)
            # islice: the equal-time run's last epoch stops without building a batch it won't use
            for x, y in itertools.islice(loader.epoch(epoch), plan.total_steps - step):
                if callback.should_stop():
                    cancelled = True
                    break
                batch_type = plan.schedule.decide(step, epoch)
                lr = lr_at(step, plan.total_steps, peak=t.lr, kind=t.lr_schedule, warmup_steps=warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast(device, t.amp):
                    out = forward(model, x, batch_type, d)
                    loss = criterion(out, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                correct = (out.detach().argmax(1) == y).sum()
                end = step_clock(device)
                pending.append(_Pending(step, epoch, batch_type, lr, loss.detach(), correct, len(y), start, end))
                step += 1
                start = end
                if len(pending) >= flush_every:
                    flushed = len(pending)
                    flush(pending)
                    if step % COLLECT_EVERY_STEPS < flushed:  # a multiple of it was among these steps
                        gc.collect(1)  # young cyclic garbage (callbacks'), untimed like the rest of the bookkeeping
                    start = step_clock(device)  # the next step starts after this bookkeeping, not before it
            flush(pending)
            if cancelled:
                break
            gc.collect(1)  # the epoch's cyclic garbage, outside the timed steps
            val_loss, val_acc = evaluate(model, val_loader, device, t.amp)
            n = max(tally.epoch_seen, 1)
            m = EpochMetrics(
                run=plan.kind, epoch=epoch, epochs=plan.epochs, train_loss=tally.epoch_loss / n,
                train_acc=100.0 * tally.epoch_correct / n, val_loss=val_loss, val_acc=val_acc,
                train_time_s=tally.train_time, time_full_s=tally.time["full"], time_reduced_s=tally.time["reduced"],
                steps_full=tally.steps["full"], steps_reduced=tally.steps["reduced"],
            )
            result.epochs.append(m)
            callback.on_epoch(m)

    result.steps = tally.steps["full"] + tally.steps["reduced"]
    result.steps_full, result.steps_reduced = tally.steps["full"], tally.steps["reduced"]
    result.train_time_s = tally.train_time
    result.time_full_s, result.time_reduced_s = tally.time["full"], tally.time["reduced"]
    result.total_flops = flops["full"] * result.steps_full + flops["reduced"] * result.steps_reduced
    if result.epochs:
        result.final_val_acc = result.epochs[-1].val_acc
        result.final_val_loss = result.epochs[-1].val_loss
        result.best_val_acc = max(e.val_acc for e in result.epochs)
    result.cancelled = cancelled
    callback.on_run_end(result)
    return result


# With the cyclic collector off during steps, the run collects young garbage itself this often.
COLLECT_EVERY_STEPS = 500


@contextlib.contextmanager
def collector_between_epochs() -> Iterator[None]:
    """Python's cyclic garbage collector off during a run's steps, on again after it.

    A full collection walks every object torch and the data set built (80-180 ms measured here, once
    or twice a minute of training) and would land inside one timed step of one run, skewing a paired
    comparison. The run collects young garbage itself every COLLECT_EVERY_STEPS steps and at each
    epoch's end, untimed (as Megatron-LM's manual GC does against stragglers); a full collection runs
    before the first step.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _model_copy(init_model: nn.Module, spec: JobSpec, device: torch.device, *, reduced: bool) -> nn.Module:
    """A run's own copy of the initial model, on ``device`` in the spec's memory format, with the
    reduced-pass BatchNorm set when bn="separate" (before any optimizer is built over it)."""
    from ..reduced import attach_separate_bn

    fmt = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    model = copy.deepcopy(init_model).to(device=device, memory_format=fmt)
    if reduced and spec.dynds.bn == "separate":
        attach_separate_bn(model)
    return model


def step_clock(device: torch.device) -> Any:
    """A step boundary: ``time.perf_counter()`` on the CPU; on CUDA an event recorded on the current
    stream of ``device`` (not of the current device: with ``cuda:1`` they differ)."""
    if device.type == "cuda":
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(torch.cuda.current_stream(device))
        return ev
    return time.perf_counter()


def forward(model: nn.Module, x: torch.Tensor, batch_type: str, d: DynDSSpec) -> torch.Tensor:
    """The model's output for a full batch, or the reduced pass on the downsampled batch."""
    from ..ops import downsample_input
    from ..reduced import reduced_pass

    if batch_type != "reduced":
        return model(x)
    with reduced_pass(model, d.kernel, d.bn):
        return model(downsample_input(x, d.input.factor, d.input.mode))


def warm_up(spec: JobSpec, init_model: nn.Module, dataset: Any, device: torch.device, *, reduced: bool, steps: int = 2) -> None:
    """Untimed steps of each pass type on a throwaway copy of the model.

    The first steps of a process pay one-off costs (oneDNN primitive creation, CUDA kernel selection,
    allocator growth). Without this, whichever run goes first, the paired baseline, is charged for
    them and the time saving comes out too large.
    """
    t, d = spec.train, spec.dynds
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = _model_copy(init_model, spec, device, reduced=reduced).train()
    n = min(t.batch_size, len(dataset.train_y))
    x = (dataset.train_x[:n].to(device).float() / 255.0).contiguous(memory_format=fmt)
    y = dataset.train_y[:n].to(device)
    kinds = ["full", "reduced"] if reduced else ["full"]
    for _ in range(steps):
        for kind in kinds:
            with autocast(device, t.amp):
                loss = F.cross_entropy(forward(model, x, kind, d).float(), y)
            model.zero_grad(set_to_none=True)
            loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, amp: bool) -> tuple[float, float]:
    """Validation loss (plain cross-entropy) and top-1 accuracy (percent): eval mode, full resolution."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    try:
        for x, y in loader.epoch(0):
            with autocast(device, amp):
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
    finally:
        model.train(was_training)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, 100.0 * correct.item() / seen
