"""One training run: a model, a schedule, a recipe, measured as METHOD.md says.

Timing: a step's time runs from just before its batch is fetched to the end of its optimizer
step, so it includes fetching and augmenting the batch, and a run's train time is the sum of its
steps. Everything between two steps of a run is outside these intervals: ``should_stop`` (a worker
polls its database there), the reading of finished steps and the callbacks (a worker writes
metrics there), evaluation, and, in lockstep, the other runs' steps (:func:`run_lockstep`). On CUDA
the step boundaries are CUDA events on the training device's stream, read in batches (one
synchronisation every ``flush_every`` steps, not one per step), so measuring does not serialise the
CPU and the GPU. The clock, the flush interval and the collector's pauses are in
:mod:`dynds_core.training.timing`; validation in :mod:`dynds_core.training.evaluation`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..callbacks import Callback, CallbackList
from ..flops import step_flops
from ..op_settings import relative_kernel
from ..result import EpochMetrics, RunKind, RunResult, StepMetrics
from ..schedules import BatchType, Schedule
from ..spec import DynDSSpec, JobSpec
from .contention import CpuMeter, device_users
from .evaluation import evaluate
from .recipe import autocast, build_optimizer, lr_at
from .timing import collect_after_steps, collect_at_epoch_end, collector_between_epochs, elapsed_s, flush_interval, host_clock, step_clock, step_shape


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
    batch_type: BatchType
    lr: float
    loss: torch.Tensor
    correct: torch.Tensor
    n: int
    start: Any  # float (CPU clock) or a CUDA event
    end: Any
    at: float  # the host clock at the step's start (on the CPU, start itself)
    size: tuple[int, int] | None = None  # a relative's reduced step: its input size


@dataclass
class _Tally:
    """Running sums of one run; times in seconds."""

    train_time: float = 0.0
    time: dict[str, float] = field(default_factory=lambda: {"full": 0.0, "reduced": 0.0})
    steps: dict[str, int] = field(default_factory=lambda: {"full": 0, "reduced": 0})
    # every step's time, its shape (timing.step_shape: 0 full, else which reduced shape) and the host clock at its
    # start, in step order: lockstep pairs the runs' steps by when they ran (timing.lockstep_time_ratio)
    step_times: array = field(default_factory=lambda: array("d"))
    step_reduced: array = field(default_factory=lambda: array("l"))
    step_at: array = field(default_factory=lambda: array("d"))
    epoch_loss: float = 0.0
    epoch_correct: float = 0.0
    epoch_seen: int = 0
    # a relative's reduced steps by input size ("HxW"): its FLOPs count the size each step had
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, batch_type: str, dt: float, at: float, size: tuple[int, int] | None = None) -> None:
        self.train_time += dt
        self.time[batch_type] += dt
        self.steps[batch_type] += 1
        if size is not None:
            key = f"{size[0]}x{size[1]}"
            self.sizes[key] = self.sizes.get(key, 0) + 1
        self.step_times.append(dt)
        self.step_reduced.append(step_shape(batch_type, size))
        self.step_at.append(at)

    def state_dict(self) -> dict[str, Any]:
        """The sums as plain data and tensors (a checkpoint's part); the step arrays whole, so that the
        resumed run's figures (time_saving's pairs included) cover every step."""
        return {
            "train_time": self.train_time, "time": dict(self.time), "steps": dict(self.steps),
            "step_times": torch.tensor(self.step_times, dtype=torch.float64),
            "step_reduced": torch.tensor(self.step_reduced, dtype=torch.int64),
            "step_at": torch.tensor(self.step_at, dtype=torch.float64),
            "epoch_loss": self.epoch_loss, "epoch_correct": self.epoch_correct, "epoch_seen": self.epoch_seen,
            "sizes": dict(self.sizes),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any], clock_shift: float = 0.0) -> None:
        """Restore the sums; ``clock_shift`` moves the saved steps' start times onto this process's clock."""
        self.train_time, self.time, self.steps = state["train_time"], dict(state["time"]), dict(state["steps"])
        self.step_times = array("d", state["step_times"].tolist())
        # Checkpoints written before a relative's sizes were kept apart hold 0/1 (full/reduced): read as they are.
        self.step_reduced = array("l", state["step_reduced"].tolist())
        self.step_at = array("d", (a + clock_shift for a in state["step_at"].tolist()))
        self.epoch_loss, self.epoch_correct, self.epoch_seen = state["epoch_loss"], state["epoch_correct"], state["epoch_seen"]
        self.sizes = dict(state.get("sizes", {}))  # absent in checkpoints written before the relatives

    def full_step_cv(self) -> float | None:
        """Standard deviation over mean of the full steps' times (None with fewer than 2)."""
        n = self.steps["full"]
        if n < 2 or self.time["full"] <= 0:
            return None
        mean = self.time["full"] / n
        full = [t for t, reduced in zip(self.step_times, self.step_reduced, strict=True) if not reduced]
        var = sum((t - mean) ** 2 for t in full) / (n - 1)
        return math.sqrt(var) / mean


class TrainingRun:
    """One run, advanced step by step, so that several runs can share the machine in lockstep.

    Build it (model copy, optimizer, loaders, FLOP counts; ``on_run_start`` is called), then drive
    :meth:`steps`: a generator that does one training step per ``next()`` and returns when the run
    ends (all steps done, or ``callback.should_stop()``). :attr:`result` holds the :class:`RunResult`
    afterwards. The run's clock counts only its own steps: each step's interval starts when the step
    is resumed, so whatever runs between two of its steps (another run's step, evaluation, callbacks,
    ``should_stop``) is not charged to it.

    A run stopped or suspended between two steps can be saved (:meth:`state_dict`) and continued by a run
    built the same way in another process (:meth:`load_state_dict`, then :meth:`steps`): it goes on from
    its step and epoch, with the same batches, schedule decisions and learning rates as if never stopped.
    """

    def __init__(self, plan: RunPlan, spec: JobSpec, init_model: nn.Module, dataset: Any, device: torch.device, callback: Callback):
        from ..data.loader import make_loaders

        t, d = spec.train, spec.dynds
        self.plan, self.spec, self.device, self.callback = plan, spec, device, callback
        self.cuda = device.type == "cuda"
        can_reduce = plan.schedule.can_reduce
        self.model = _model_copy(init_model, spec, device, reduced=can_reduce)
        self.optimizer = build_optimizer(self.model, t)
        self.scaler = torch.amp.GradScaler("cuda", enabled=t.amp and self.cuda)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
        self.warmup = int(round(t.warmup_epochs * plan.steps_per_epoch))
        self.loader, self.val_loader = make_loaders(
            dataset, batch_size=t.batch_size, device=device, augment=spec.data.augment, normalize=spec.data.normalize,
            seed=t.seed, channels_last=t.channels_last,
        )  # fmt: skip

        shape = (t.batch_size, dataset.in_channels, *dataset.image_size)
        self.flops = {"full": step_flops(self.model, shape, reduced=False, device=device), "reduced": 0.0}
        # A relative's reduced steps, one count per input size; flops["reduced"] is their expected mean.
        shares = plan.schedule.size_shares()
        self.flops_by_size = {
            f"{h}x{w}": step_flops(
                self.model,
                shape,
                reduced=True,
                kernel=relative_kernel(d, dataset.image_size, (h, w)),
                bn=d.bn,
                input_mode=d.input.mode,
                device=device,
                input_size=(h, w),
            )
            for h, w in shares
        }
        if shares:
            self.flops["reduced"] = sum(self.flops_by_size[f"{h}x{w}"] * p for (h, w), p in shares.items()) / sum(shares.values())
        elif can_reduce:
            self.flops["reduced"] = step_flops(
                self.model, shape, reduced=True, kernel=d.kernel, bn=d.bn, input_factor=d.input.factor, input_mode=d.input.mode, device=device
            )
        self.result = RunResult(run=plan.kind, flops_full_step=self.flops["full"], flops_reduced_step=self.flops["reduced"])
        callback.on_run_start(
            plan.kind,
            {
                "total_steps": plan.total_steps,
                "epochs": plan.epochs,
                "steps_per_epoch": plan.steps_per_epoch,
                "device": str(device),
                "flops_full_step": self.flops["full"],
                "flops_reduced_step": self.flops["reduced"],
                "expected_reduced_fraction": plan.schedule.expected_reduced_fraction(),
            },
        )
        self.flush_every = flush_interval(device)
        # Building StepMetrics costs microseconds; skip it when nobody listens.
        self.wants_steps = not (isinstance(callback, CallbackList) and not callback.callbacks) and type(callback).on_step is not Callback.on_step
        self.tally = _Tally()
        self.pending: list[_Pending] = []
        self.step = 0  # steps done; the next step's index
        self.epoch = 0  # the epoch in progress
        self.finished = False  # all steps done and evaluated (a run restored finished has nothing left to do)
        # What the run's threads got of the CPU during its steps, and who else used its GPU (contention.py).
        self.meter = CpuMeter(torch.get_num_threads())
        self.device_users = device_users(device)
        # Last: the steps' draws (dropout) start from the seed whether the FLOPs above were counted, drawing
        # from the RNG, or came from flops' cache (a second job in the process).
        seed_everything(t.seed)

    def _flush(self) -> None:
        """Read the pending steps' losses and times, and hand them to the schedule and the callback."""
        pending, tally, plan = self.pending, self.tally, self.plan
        if not pending:
            return
        if self.cuda:
            pending[-1].end.synchronize()
        losses = torch.stack([p.loss for p in pending]).float().tolist()
        corrects = torch.stack([p.correct for p in pending]).float().tolist()
        for p, loss, correct in zip(pending, losses, corrects, strict=True):
            dt = elapsed_s(p.start, p.end, self.cuda)
            tally.add(p.batch_type, dt, p.at, p.size)
            tally.epoch_loss += loss * p.n
            tally.epoch_correct += correct
            tally.epoch_seen += p.n
            # On CUDA the schedule sees each step's signals up to flush_every steps late: the adaptive
            # schedule decides from slightly older rates rather than synchronising every step.
            plan.schedule.observe(p.batch_type, loss, dt)
            if self.wants_steps:
                self.callback.on_step(
                    StepMetrics(
                        run=plan.kind,
                        step=p.step,
                        epoch=p.epoch,
                        batch_type=p.batch_type,
                        loss=loss,
                        acc=100.0 * correct / p.n,
                        lr=p.lr,
                        step_time_s=dt,
                        train_time_s=tally.train_time,
                        total_steps=plan.total_steps,
                    )
                )
        pending.clear()

    def _step(self, x: torch.Tensor, y: torch.Tensor, step: int, epoch: int, start: Any, at: float) -> None:
        t, d = self.spec.train, self.spec.dynds
        batch_type = self.plan.schedule.decide(step, epoch)
        size = self.plan.schedule.input_size(step) if batch_type == "reduced" else None
        lr = lr_at(step, self.plan.total_steps, peak=t.lr, kind=t.lr_schedule, warmup_steps=self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, t.amp):
            out = forward(self.model, x, batch_type, d, size)
            loss = self.criterion(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        correct = (out.detach().argmax(1) == y).sum()
        end = step_clock(self.device)
        self.pending.append(_Pending(step, epoch, batch_type, lr, loss.detach(), correct, len(y), start, end, at, size))

    def steps(self) -> Iterator[None]:
        """Train, yielding after every step; returns when the run is done or stopped."""
        plan, tally, device, callback = self.plan, self.tally, self.device, self.callback
        if self.finished:
            self.meter.close()
            return
        step = self.step  # 0, or where a resumed run stopped
        cancelled = False
        for epoch in range(self.epoch, plan.epochs):
            self.epoch = epoch
            self.model.train()
            done = step - epoch * plan.steps_per_epoch  # batches of this epoch trained before a resumption
            if done == 0:
                tally.epoch_loss = tally.epoch_correct = 0.0
                tally.epoch_seen = 0
            # islice: the equal-time run's last epoch stops without building a batch it won't use
            batches = itertools.islice(self.loader.epoch(epoch, start=done), plan.total_steps - step)
            while True:
                if callback.should_stop():  # the sink polls its database here: outside the timed interval
                    cancelled = True
                    break
                # The interval covers fetching the batch and the step, nothing else. On CUDA both ends are
                # events on one stream, so another run's kernels queued before this one are not inside it.
                self.meter.begin()  # just outside the timed interval, either side
                start = step_clock(device)
                at = start if isinstance(start, float) else host_clock()
                batch = next(batches, None)
                if batch is None:
                    break
                x, y = batch
                self._step(x, y, step, epoch, start, at)
                self.meter.end()
                step += 1
                self.step = step
                if len(self.pending) >= self.flush_every:
                    flushed = len(self.pending)
                    self._flush()
                    collect_after_steps(step, flushed)
                yield
            self._flush()
            if cancelled:
                break
            collect_at_epoch_end()
            if epoch == plan.epochs - 1 and plan.kind == "dynds" and self.spec.dynds.bn_recalibration is not None:
                self._recalibrate_bn()
            val_loss, val_acc = evaluate(self.model, self.val_loader, device, self.spec.train.amp)
            n = max(tally.epoch_seen, 1)
            m = EpochMetrics(
                run=plan.kind,
                epoch=epoch,
                epochs=plan.epochs,
                train_loss=tally.epoch_loss / n,
                train_acc=100.0 * tally.epoch_correct / n,
                val_loss=val_loss,
                val_acc=val_acc,
                train_time_s=tally.train_time,
                time_full_s=tally.time["full"],
                time_reduced_s=tally.time["reduced"],
                steps_full=tally.steps["full"],
                steps_reduced=tally.steps["reduced"],
            )
            self.result.epochs.append(m)
            callback.on_epoch(m)
        self._finish(cancelled)

    def _recalibrate_bn(self) -> None:
        """FixRes: BatchNorm's running statistics recomputed at the test resolution (the data's own) over
        ``dynds.bn_recalibration.batches`` training batches of an epoch after the last (seeded like the
        others). Timed and charged to the run's train time (a user pays it), outside its steps."""
        from ..bn_recalibration import recalibrate_bn

        n = self.spec.dynds.bn_recalibration.batches  # type: ignore[union-attr]  # the caller checked it is set
        start = step_clock(self.device)
        batches = (x for x, _ in self.loader.epoch(self.plan.epochs))
        with autocast(self.device, self.spec.train.amp):
            recalibrate_bn(self.model, batches, num_batches=n)
        dt = elapsed_s(start, step_clock(self.device), self.cuda)
        self.result.bn_recalibration_s = dt
        self.tally.train_time += dt

    def state_dict(self) -> dict[str, Any]:
        """Everything this run needs to continue (between two steps, or after a stop): weights and BatchNorm
        sets (the reduced pass's too with bn=separate), optimizer and AMP scaler, the schedule's state, the
        position (step and epoch; the learning rate and the data order follow from them), the timing
        tallies and the metrics so far. Tensors are the live ones: serialise before the next step."""
        self._flush()  # on CUDA, steps not yet read: their losses belong to the tallies and the schedule
        m = self.meter
        return {
            "kind": self.plan.kind,
            "total_steps": self.plan.total_steps,
            "step": self.step,
            "epoch": self.epoch,
            "finished": self.finished,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": self.plan.schedule.state_dict(),
            "tally": self.tally.state_dict(),
            "meter": {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "wait_s": m.wait_s, "steps": m.steps},
            "result": self.result.model_dump(mode="json"),
        }

    def load_state_dict(self, state: dict[str, Any], clock_shift: float = 0.0) -> None:
        """Continue from :meth:`state_dict` of a run of the same plan (before :meth:`steps`)."""
        plan = self.plan
        if (state["kind"], state["total_steps"]) != (plan.kind, plan.total_steps):
            saved = f"the {state['kind']} run ({state['total_steps']} steps)"
            raise ValueError(f"a checkpoint of {saved} cannot continue the {plan.kind} run ({plan.total_steps} steps)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        plan.schedule.load_state_dict(state["schedule"])
        self.tally.load_state_dict(state["tally"], clock_shift)
        for name, value in state["meter"].items():
            setattr(self.meter, name, value)
        self.result = RunResult.model_validate(state["result"])
        self.step, self.epoch, self.finished = int(state["step"]), int(state["epoch"]), bool(state["finished"])

    def _finish(self, cancelled: bool) -> None:
        result, tally = self.result, self.tally
        result.steps = tally.steps["full"] + tally.steps["reduced"]
        result.steps_full, result.steps_reduced = tally.steps["full"], tally.steps["reduced"]
        result.train_time_s = tally.train_time
        result.time_full_s, result.time_reduced_s = tally.time["full"], tally.time["reduced"]
        result.full_step_cv = tally.full_step_cv()
        result.cpu_share, result.wait_share = self.meter.cpu_share(), self.meter.wait_share()
        self.meter.close()
        # the device's other users at the run's start or its end, whichever saw more
        others, words = max(self.device_users, device_users(self.device), key=lambda u: -1 if u[0] is None else u[0])
        result.device_others, result.device_users = others, words
        if self.flops_by_size:  # each reduced step at the size it had
            reduced_flops = sum(self.flops_by_size[size] * n for size, n in tally.sizes.items())
            result.steps_by_size = dict(sorted(tally.sizes.items()))
            if result.steps_reduced:
                result.flops_reduced_step = reduced_flops / result.steps_reduced
        else:
            reduced_flops = self.flops["reduced"] * result.steps_reduced
        result.total_flops = self.flops["full"] * result.steps_full + reduced_flops
        if result.epochs:
            result.final_val_acc = result.epochs[-1].val_acc
            result.final_val_loss = result.epochs[-1].val_loss
            result.best_val_acc = max(e.val_acc for e in result.epochs)
        result.cancelled = cancelled
        self.finished = not cancelled
        self.callback.on_run_end(result)


def run_lockstep(
    runs: list[TrainingRun], *, pause_collector: bool = False, on_round: Callable[[list[TrainingRun]], None] | None = None
) -> list[RunResult]:
    """Run several runs in one process, one step of each in turn (in ABBA order), until all are done.

    Every run sees the same machine: a change of load (another process, thermal throttling) lands on
    all of them alike, step for step, so their time ratio holds where two runs one after the other
    would each see a different machine. Runs of unequal length continue alone once the others finish.
    ``pause_collector``: Python's cyclic collector off during the steps (:func:`collector_between_epochs`).
    ``on_round``: called after each round with the runs still going, in the order of the next round (where a
    checkpoint is taken: every run between two steps; rebuilt in that order, they continue the ABBA order).
    """
    active = [(run, run.steps()) for run in runs]
    with collector_between_epochs() if pause_collector else contextlib.nullcontext():
        while active:
            for run, gen in list(active):
                try:
                    next(gen)
                except StopIteration:
                    active.remove((run, gen))
            # ABBA order (A B, B A, A B, ...): under a load that rises or falls steadily, the run that
            # always went second would always meet a little more (or less) of it.
            active.reverse()
            if on_round is not None and active:
                on_round([run for run, _ in active])
    return [run.result for run in runs]


def _model_copy(init_model: nn.Module, spec: JobSpec, device: torch.device, *, reduced: bool) -> nn.Module:
    """A run's own copy of the initial model, on ``device`` in the spec's memory format, with the
    reduced-pass BatchNorm set when bn="separate" (before any optimizer is built over it)."""
    from ..reduced import attach_separate_bn

    fmt = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    # Two calls: torch's stubs have no overload taking both, though Module.to does.
    model = copy.deepcopy(init_model).to(device).to(memory_format=fmt)
    if reduced and spec.dynds.bn == "separate":
        attach_separate_bn(model)
    return model


def forward(model: nn.Module, x: torch.Tensor, batch_type: str, d: DynDSSpec, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The model's output for a full batch, or the reduced pass on the downsampled batch; ``size``: a
    relative's reduced step, the batch resized to it and the kernels full, or pooled at DynDS's own reduced size
    when the schedule asks (``relative_kernel``; the same reduced pass: BatchNorm follows ``d.bn``)."""
    from ..ops import downsample_input, resize_input
    from ..reduced import reduced_pass

    if batch_type != "reduced":
        return model(x)
    if size is not None:
        with reduced_pass(model, relative_kernel(d, x.shape[-2:], size), d.bn):
            return model(resize_input(x, size, d.input.mode))
    with reduced_pass(model, d.kernel, d.bn):
        return model(downsample_input(x, d.input.factor, d.input.mode))


def warm_up(
    spec: JobSpec,
    init_model: nn.Module,
    dataset: Any,
    device: torch.device,
    *,
    reduced: bool,
    steps: int = 2,
    sizes: list[tuple[int, int]] | None = None,
) -> None:
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
    # (batch type, a relative's input size): each shape the run will meet (oneDNN and cuDNN pick kernels per shape)
    kinds: list[tuple[str, tuple[int, int] | None]] = [("full", None)]
    if reduced:
        kinds += [("reduced", size) for size in sizes] if sizes else [("reduced", None)]
    for _ in range(steps):
        for kind, size in kinds:
            with autocast(device, t.amp):
                loss = F.cross_entropy(forward(model, x, kind, d, size).float(), y)
            model.zero_grad(set_to_none=True)
            loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
