"""``train(spec)``: the DynDS run, its paired baseline, and the equal-time baseline, compared.

    result = train(JobSpec.from_file("examples/quick.yaml"))
    result.time_saving, result.acc_delta, result.equal_time_gap

Order on one device: the paired baseline (schedule none), right before the DynDS run, then the
equal-time baseline. All runs start from the same initial weights (one model is built, seeded,
and copied), see the same data order and augmentation (the loader is seeded by the job's seed),
and use the same recipe. The equal-time baseline is the baseline recipe with its total steps cut to
``round(total_steps * T_dynds / T_baseline)``; its learning-rate schedule completes over those
steps. T_baseline is taken, in this order of preference (see :func:`equal_time_budget`), from the
DynDS run's own full steps, timed between its reduced ones (a change of the machine's load between
two runs cannot skew it), from the paired baseline run, or from the FLOP ratio.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn as nn

from .callbacks import Callback, CallbackList
from .result import JobResult, RunResult
from .schedules import make_schedule
from .spec import JobSpec, NoneSchedule, SpecError
from .training.allocator import retain_freed_memory
from .training.loop import RunPlan, run_training, seed_everything, warm_up
from .training.recipe import describe_device, resolve_device, torch_threads


def _as_callback(callbacks: Callback | Sequence[Callback] | None) -> CallbackList:
    if callbacks is None:
        return CallbackList()
    if isinstance(callbacks, CallbackList):
        return callbacks
    if isinstance(callbacks, Callback):
        return CallbackList([callbacks])
    return CallbackList(list(callbacks))


def equal_time_steps(total_steps: int, t_dynds: float, t_baseline: float) -> int:
    """Steps of the equal-time baseline: the baseline's steps scaled by the time ratio (at least 1)."""
    if t_baseline <= 0:
        raise ValueError(f"baseline train time must be positive: {t_baseline}")
    return max(1, min(total_steps, int(round(total_steps * t_dynds / t_baseline))))


def estimated_baseline_time(dynds: RunResult, total_steps: int) -> float:
    """T_baseline from the DynDS run alone: its mean full-step time (or, with no full step, its mean
    step time scaled by the FLOP ratio) times the baseline's step count."""
    if dynds.steps_full > 0:
        return dynds.time_full_s / dynds.steps_full * total_steps
    per_step = dynds.train_time_s / max(dynds.steps, 1)
    ratio = dynds.flops_full_step / dynds.flops_reduced_step if dynds.flops_reduced_step > 0 else 1.0
    return per_step * ratio * total_steps


# Full steps a DynDS run needs before their mean time sizes the equal-time run.
MIN_FULL_STEPS_FOR_SIZING = 5


def equal_time_budget(dynds: RunResult, baseline: RunResult | None, total_steps: int) -> tuple[float, str]:
    """(T_baseline to size the equal-time run by, how it was found).

    ``own_full_steps``: the DynDS run's mean full-step time x the baseline's steps. Measured in the same
    run as T_dynds, it is immune to the load drift between runs that made paired times on our shared
    machines disagree by 20% or more (README, tradeoff figures). ``paired_baseline``: the baseline
    run's train time, when the DynDS run had too few full steps. ``flop_ratio``: neither.
    """
    if dynds.steps_full < MIN_FULL_STEPS_FOR_SIZING and baseline is not None and baseline.train_time_s > 0:
        return baseline.train_time_s, "paired_baseline"
    return estimated_baseline_time(dynds, total_steps), "own_full_steps" if dynds.steps_full else "flop_ratio"


def time_to_target(run: RunResult, target: float | None) -> float | None:
    """Train time after the first epoch whose validation accuracy reached ``target`` (percent)."""
    if target is None:
        return None
    for e in run.epochs:
        if e.val_acc >= target:
            return e.train_time_s
    return None


def train(
    spec: JobSpec,
    callbacks: Callback | Sequence[Callback] | None = None,
    *,
    cache_dir: str | None = None,
    model: nn.Module | None = None,
    dataset=None,
    baseline_run: RunResult | None = None,
) -> JobResult:
    """Run the job ``spec`` and return its :class:`JobResult`.

    ``model``: train this module (its current weights are every run's start) instead of
    ``spec.model``; ``dataset``: an already loaded :class:`dynds_core.data.Dataset` instead of
    loading ``spec.data``; ``baseline_run``: a paired baseline already run for this recipe and seed
    (e.g. shared by several settings of a sweep on one machine), used instead of running one. Raises SpecError, DataError or ReducedPassError before any training.
    """
    cb = _as_callback(callbacks)
    t = spec.train
    device = resolve_device(t.device)
    retain_freed_memory()  # every run of the job alike: steps stop page-faulting their activations back in
    with torch_threads(t.num_threads):
        if dataset is None:
            from .data import load_dataset

            dataset = load_dataset(spec.data, seed=t.seed, cache_dir=cache_dir)
        steps_per_epoch = len(dataset.train_y) // t.batch_size
        if steps_per_epoch < 1:
            raise SpecError(
                "spec",
                [("train.batch_size", f"{t.batch_size} is larger than the training set ({len(dataset.train_y)} images); lower it or use more data")],
            )
        total_steps = t.epochs * steps_per_epoch
        if model is None:
            from .models import create_model

            seed_everything(t.seed)
            model = create_model(spec.model.arch, num_classes=dataset.num_classes, in_channels=dataset.in_channels, small_input=spec.model.small_input)
        init_model = copy.deepcopy(model).cpu()

        dynds_schedule = make_schedule(spec.dynds.schedule, total_steps, t.seed)
        if dynds_schedule.can_reduce:
            from .reduced import ReducedPassError, check_reduced_pass

            # Refuse a fixed-size head, or settings this model's layers cannot take, now rather than mid-run.
            d = spec.dynds
            try:
                check_reduced_pass(
                    init_model, (dataset.in_channels, *dataset.image_size), factor=d.input.factor, kernel=d.kernel, input_mode=d.input.mode, bn="frozen"
                )
            except ReducedPassError:  # a ValueError too, but already names the layer: keep it as it is
                raise
            except ValueError as exc:  # e.g. a pooling window larger than a kernel, a factor too large for the images
                raise SpecError("spec", [("dynds", f"{exc} (model {spec.model.arch}, input {dataset.in_channels}x{dataset.image_size[0]}x{dataset.image_size[1]})")]) from None
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # same setting for every run of the job

        warm_up(spec, init_model, dataset, device, reduced=dynds_schedule.can_reduce)

        def run(kind, schedule, steps):
            plan = RunPlan(kind=kind, schedule=schedule, total_steps=steps, steps_per_epoch=steps_per_epoch)
            return run_training(plan, spec, init_model, dataset, device, cb)

        def none_schedule(steps):
            return make_schedule(NoneSchedule(), steps, t.seed)

        baseline = equal_time = None
        if baseline_run is not None:
            baseline = baseline_run
        elif spec.baseline:
            baseline = run("baseline", none_schedule(total_steps), total_steps)
        if baseline is not None and baseline.cancelled:
            dynds = RunResult(run="dynds", cancelled=True)
        else:
            dynds = run("dynds", dynds_schedule, total_steps)
        sizing = None
        if spec.equal_time_baseline and not dynds.cancelled:
            t_base, sizing = equal_time_budget(dynds, baseline, total_steps)
            steps = equal_time_steps(total_steps, dynds.train_time_s, t_base)
            equal_time = run("equal_time", none_schedule(steps), steps)

    result = compare(spec, describe_device(device), dynds, baseline, equal_time)
    if equal_time is not None:
        result.equal_time_sizing = sizing
    return result


def compare(spec: JobSpec, device: str, dynds: RunResult, baseline: RunResult | None, equal_time: RunResult | None) -> JobResult:
    """The headline figures of a job from its runs (pure)."""
    runs = [r for r in (dynds, baseline, equal_time) if r is not None]
    finished = [r for r in runs if r.final_val_acc is not None and not r.cancelled]
    target = spec.train.target_accuracy
    if target is None and finished:
        target = min(r.final_val_acc for r in finished)
    for r in runs:
        r.time_to_target_s = time_to_target(r, target)
    res = JobResult(
        spec_hash=spec.spec_hash, spec=spec.canonical(), device=device, dynds=dynds, baseline=baseline, equal_time=equal_time,
        target_accuracy=target, cancelled=any(r.cancelled for r in runs),
    )
    complete = not res.cancelled
    if complete and baseline is not None:
        if baseline.train_time_s > 0:
            res.time_saving = 1.0 - dynds.train_time_s / baseline.train_time_s
        if dynds.final_val_acc is not None and baseline.final_val_acc is not None:
            res.acc_delta = dynds.final_val_acc - baseline.final_val_acc
        if baseline.total_flops > 0:
            res.flop_saving = 1.0 - dynds.total_flops / baseline.total_flops
    if complete and equal_time is not None and dynds.final_val_acc is not None and equal_time.final_val_acc is not None:
        res.equal_time_gap = dynds.final_val_acc - equal_time.final_val_acc
    if complete and dynds.steps_full > 0 and dynds.steps_reduced > 0 and dynds.time_full_s > 0:
        res.time_saving_interleaved = 1.0 - dynds.train_time_s / estimated_baseline_time(dynds, dynds.steps)
    if res.time_saving is not None and not math.isfinite(res.time_saving):
        res.time_saving = None
    return res
