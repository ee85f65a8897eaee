"""``train(spec)``: the DynDS run, its paired baseline, and the equal-time baseline, compared.

    result = train(JobSpec.from_file("examples/quick.yaml"))
    result.time_saving, result.acc_delta, result.equal_time_gap

Pairing (``train.pairing``): ``lockstep`` (the default) runs the DynDS run and its paired baseline
(schedule none) in this process together, one step of each in turn, so both see the same machine,
and ``time_saving`` comes from their steps paired in time (each DynDS step against the baseline's
steps around it, medians per batch type), so that it holds when the load changes during the job,
bursts included; ``sequential`` runs the baseline
first, then the DynDS run (half the memory; exposed to load drift between the two). The equal-time
baseline runs afterwards, alone. All runs start from the same initial weights (one model is built,
seeded, and copied), see the same data order and augmentation (the loader is seeded by the job's
seed), and use the same recipe. The equal-time baseline is the baseline recipe with its total steps
cut to ``round(total_steps * T_dynds / T_baseline)``; its learning-rate schedule completes over those
steps. T_dynds / T_baseline is the lockstep runs' paired step ratio when there is one; otherwise (see
:func:`equal_time_budget`) the DynDS run's own full steps, timed between its reduced ones, the
sequential baseline run, or the FLOP ratio.

The DynDS run may be one of DynDS's relatives (``dynds.schedule.kind`` progressive or mixsize: each reduced step
at the schedule's input size, kernels full, FLOPs counted per size) and may end with FixRes BatchNorm
recalibration (``dynds.bn_recalibration``, timed into its train time); the pairing, equal-time baseline and
verdict are the same for all.

``timing_noisy`` flags a job whose timing cannot be trusted (:class:`TimingNoise`); ``contended`` one whose
runs did not have their hardware to themselves (:class:`Contention`).

Checkpoints (``checkpoint_dir``; ``train.checkpoint_every_s`` sets the cadence) hold every run in flight, and
at a cooperative stop one is always written; ``resume_from`` continues from the newest valid one, making the
same schedule decisions on the same batches and ending with the same weights and metrics as a run never
stopped (:mod:`dynds_core.training.checkpoint`; the adaptive schedule's decisions depend on measured step
times, so only its state is carried over exactly). ``result.interruptions`` records each resumption.

A call leaves the process as it found it: the global RNGs (Python, NumPy, torch CPU and CUDA) are
seeded for the job and restored afterwards, and process-wide speed settings are opt-in
(:class:`ProcessSettings`; ``dynds train`` and the workers turn them on).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .callbacks import Callback, CallbackList
from .hardware import Hardware, detect_hardware
from .result import Interruption, JobResult, RunResult
from .schedules import make_schedule
from .spec import JobSpec, NoneSchedule, Pairing, SpecError
from .training.allocator import retain_freed_memory
from .training.checkpoint import Checkpoint, Checkpointer, load_checkpoint, rng_state, set_rng_state
from .training.loop import RunPlan, TrainingRun, _model_copy, run_lockstep, seed_everything, warm_up
from .training.recipe import describe_device, resolve_device, torch_threads
from .training.timing import host_clock, lockstep_time_ratio
from .verdict import judge


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


def equal_time_budget(dynds: RunResult, baseline: RunResult | None, total_steps: int, *, lockstep_ratio: float | None = None) -> tuple[float, str]:
    """(T_baseline to size the equal-time run by, how it was found).

    ``lockstep_baseline``: from the baseline measured step for step beside the DynDS run:
    T_dynds / ``lockstep_ratio`` (:func:`~dynds_core.training.timing.lockstep_time_ratio`), so the
    equal-time run has ``total_steps * (1 - time_saving)`` steps, whatever burst of load the job met.
    ``own_full_steps``: the DynDS run's mean full-step time x the baseline's steps. Measured in the same
    run as T_dynds, it is immune to the load drift between runs that made paired times on our shared
    machines disagree by 20% or more (README, tradeoff figures). ``paired_baseline``: the baseline
    run's train time, when the DynDS run had too few full steps. ``flop_ratio``: neither.
    """
    if lockstep_ratio is not None and lockstep_ratio > 0 and dynds.train_time_s > 0:
        return dynds.train_time_s / lockstep_ratio, "lockstep_baseline"
    if dynds.steps_full < MIN_FULL_STEPS_FOR_SIZING and baseline is not None and baseline.train_time_s > 0:
        return baseline.train_time_s, "paired_baseline"
    return estimated_baseline_time(dynds, total_steps), "own_full_steps" if dynds.steps_full else "flop_ratio"


@dataclass(frozen=True)
class ProcessSettings:
    """Process-wide settings that make a run's step times honest, each off unless asked for.

    ``retain_memory``: keep freed host memory in the process (glibc ``mallopt``; full CPU steps 11-20 %
    faster here, see :mod:`dynds_core.training.allocator`). It cannot be undone: the process keeps its
    peak heap until it exits. ``pause_collector``: Python's cyclic collector off during the steps (full
    collections of 80-180 ms landed inside timed steps), young garbage collected between them; the
    caller's setting is restored. ``cudnn_benchmark``: cuDNN picks its fastest kernels per shape (CUDA
    only); restored after the run. :meth:`measured` turns on all three, as ``dynds train`` and a
    Celery worker do.
    """

    retain_memory: bool = False
    pause_collector: bool = False
    cudnn_benchmark: bool = False

    @classmethod
    def measured(cls) -> ProcessSettings:
        return cls(retain_memory=True, pause_collector=True, cudnn_benchmark=True)


@contextlib.contextmanager
def preserved_process_state(device: torch.device) -> Iterator[None]:
    """Restore the global RNG states and ``cudnn.benchmark`` on exit, as they were on entry."""
    py_state, np_state = random.getstate(), np.random.get_state()
    benchmark = torch.backends.cudnn.benchmark
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.backends.cudnn.benchmark = benchmark


@dataclass(frozen=True)
class TimingNoise:
    """When a job's timing is flagged noisy (``JobResult.timing_noisy``).

    ``max_saving_gap``: the lockstep (paired) and interleaved savings may differ by this much (a
    fraction: 0.05 is 5 points). Measured here, the two agree within 3 points on a quiet or an evenly
    loaded machine (README, tradeoff table) and move apart when the load changes during a run, so 5
    points leaves room for the systematic difference without hiding a disturbed run.
    ``max_full_step_cv``: the full steps' coefficient of variation, per run. Full steps here vary by
    a few percent when the machine is steady; a CPU-burning neighbour halfway through a run takes it
    past 0.3 (bench/pairing.py), so 0.25 marks runs whose machine changed under them.
    """

    max_saving_gap: float = 0.05
    max_full_step_cv: float = 0.25

    def __post_init__(self) -> None:
        for name in ("max_saving_gap", "max_full_step_cv"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"TimingNoise.{name} must be a positive number: {v!r}")

    def reason(self, result: JobResult) -> str | None:
        """Why ``result``'s timing is noisy, in words, or None."""
        reasons = []
        # time_saving against each figure that should agree with it (time_saving_total is set in lockstep only)
        for other, words in (
            (result.time_saving_interleaved, "paired and interleaved time savings"),
            (result.time_saving_total, "the load changed during the job: the step-paired and total-time savings"),
        ):
            if result.time_saving is None or other is None:
                continue
            gap = abs(result.time_saving - other)
            if gap > self.max_saving_gap:
                reasons.append(
                    f"{words} differ by {gap * 100:.1f} points ({result.time_saving:.1%} vs {other:.1%}; more than {self.max_saving_gap * 100:g})"
                )
        for run in (result.dynds, result.baseline):
            if run is not None and run.full_step_cv is not None and run.full_step_cv > self.max_full_step_cv:
                reasons.append(
                    f"the {run.run} run's full steps varied by {run.full_step_cv:.0%} "
                    f"(coefficient of variation; more than {self.max_full_step_cv:.0%})"
                )
        return "; ".join(reasons) or None


@dataclass(frozen=True)
class Contention:
    """When a job is flagged contended (``JobResult.contended``): its paired runs did not have their hardware
    to themselves (dynds_core.training.contention measures it).

    ``max_wait_share``: the share of a run's steps' thread time spent runnable but waiting for a CPU (Linux):
    what a neighbour takes, and nothing else does. Measured on this 2-core machine (bench/contention.py,
    bench/embedded_readers.py): alone at load 0.1, 0.01-0.03; the machine busy with other work (load 3-7),
    0.08-0.45; beside a spinning process at load 5, 0.65-0.67; under 20 closed-loop API readers, 0.53-0.63.
    One runnable thread more than cores on 2 cores waits a third of the time: 0.15 sits between that and quiet.
    ``min_cpu_share``: where the wait is not known (not Linux), the CPU a CPU run's threads got over their
    steps' wall time: alone at load 0.1, 0.99; beside a process spinning on its core, 0.34-0.5. A GPU run's
    CPU threads wait on the GPU by design, so it is not used there; other processes seen on its GPU are.
    """

    max_wait_share: float = 0.15
    min_cpu_share: float = 0.8

    def __post_init__(self) -> None:
        for name in ("max_wait_share", "min_cpu_share"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 1):
                raise ValueError(f"Contention.{name} must be a number in (0, 1]: {v!r}")

    def reason(self, result: JobResult) -> str | None:
        """Why ``result``'s runs did not have their hardware to themselves, in words, or None."""
        reasons = []
        cpu = result.device.startswith("cpu")
        # The runs time_saving compares; the equal-time run's timing decides nothing.
        for run in (result.dynds, result.baseline):
            if run is None:
                continue
            if run.wait_share is not None:
                if run.wait_share > self.max_wait_share:
                    reasons.append(
                        f"the {run.run} run's threads waited for a CPU {run.wait_share:.0%} of their steps' time "
                        f"(more than {self.max_wait_share:.0%}): something else on the machine was using its cores"
                    )
            elif cpu and run.cpu_share is not None and run.cpu_share < self.min_cpu_share:
                reasons.append(
                    f"the {run.run} run's threads got {run.cpu_share:.0%} of their steps' time on a CPU "
                    f"(less than {self.min_cpu_share:.0%}): something else on the machine was using its cores"
                )
            if run.device_others:
                reasons.append(f"the GPU had other users during the {run.run} run ({run.device_users})")
        return "; ".join(reasons) or None


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
    timing_noise: TimingNoise | None = None,
    contention: Contention | None = None,
    process: ProcessSettings | None = None,
    keep_baseline_model: bool = False,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
) -> JobResult:
    """Run the job ``spec`` and return its :class:`JobResult`.

    ``model``: train this module (its current weights are every run's start) instead of
    ``spec.model``; ``dataset``: an already loaded :class:`dynds_core.data.Dataset` instead of
    loading ``spec.data``; ``baseline_run``: a paired baseline already run for this recipe and seed
    (e.g. shared by several settings of a sweep on one machine), used instead of running one (the pairing is
    then ``sequential``); ``timing_noise``: the thresholds of ``timing_noisy``; ``contention``: those of
    ``contended``; ``process``: the opt-in
    process-wide settings (default: none of them). The trained DynDS model comes back as ``result.model``
    (``result.models["baseline"]`` too with ``keep_baseline_model``). ``checkpoint_dir``: write checkpoints
    there, every ``train.checkpoint_every_s`` and at a stop; ``resume_from``: a checkpoint file, or a
    directory whose newest valid one is used, to continue from (checkpoints then go on into its directory
    unless ``checkpoint_dir`` says otherwise). Raises SpecError, DataError, ReducedPassError or
    CheckpointError (no usable checkpoint, or one of another spec) before any training.
    """
    cb = _as_callback(callbacks)
    t = spec.train
    resumed = load_checkpoint(resume_from, spec.spec_hash) if resume_from is not None else None
    if checkpoint_dir is None and resumed is not None:
        checkpoint_dir = resumed.path.parent
    saver = Checkpointer(checkpoint_dir, spec.spec_hash, t.checkpoint_every_s) if checkpoint_dir is not None else None
    device = resolve_device(t.device)
    process = process or ProcessSettings()
    if process.retain_memory:
        retain_freed_memory()  # every run of the job alike: steps stop page-faulting their activations back in
    with torch_threads(t.num_threads), preserved_process_state(device):
        # Measured here, with the threads the runs get: the spec says what was asked, this what was had.
        hardware = detect_hardware(device, override=False)
        if dataset is None:
            from .data import load_dataset

            dataset = load_dataset(spec.data, seed=t.seed, cache_dir=cache_dir)
        if device.type != "cpu":
            # One device-resident copy shared by every run's loaders (in lockstep two runs hold loaders at once).
            dataset = dataclasses.replace(
                dataset, train_x=dataset.train_x.to(device), train_y=dataset.train_y.to(device),
                val_x=dataset.val_x.to(device), val_y=dataset.val_y.to(device),
            )  # fmt: skip
        steps_per_epoch = len(dataset.train_y) // t.batch_size
        if steps_per_epoch < 1:
            raise SpecError(
                "spec",
                [("train.batch_size", f"{t.batch_size} is larger than the training set ({len(dataset.train_y)} images); lower it or use more data")],
            )
        total_steps = t.epochs * steps_per_epoch
        own_model = model is None  # the spec's arch: its reduced input can be judged by that arch's stem
        if model is None:
            from .models import create_model

            seed_everything(t.seed)
            model = create_model(
                spec.model.arch, num_classes=dataset.num_classes, in_channels=dataset.in_channels, small_input=spec.model.small_input
            )
        init_model = copy.deepcopy(model).cpu()

        dynds_schedule = make_schedule(spec.dynds.schedule, total_steps, t.seed, image_size=dataset.image_size)
        # A relative's reduced input sizes, smallest first (DynDS's own kinds: none, they use the factor).
        sizes = sorted(dynds_schedule.size_shares(), key=lambda hw: (hw[0] * hw[1], hw))
        if dynds_schedule.can_reduce:
            from .op_settings import FULL_KERNELS, relative_kernel
            from .reduced import ReducedPassError, check_reduced_pass

            # Refuse a fixed-size head, or settings this model's layers cannot take, now rather than mid-run:
            # DynDS's reduced pass, or a relative's smallest size and each size it pools kernels at.
            d = spec.dynds
            pooled_at = [s for s in sizes if relative_kernel(d, dataset.image_size, s) != FULL_KERNELS]
            checks: list[tuple[tuple[int, int] | None, Any]] = [
                (s, relative_kernel(d, dataset.image_size, s)) for s in dict.fromkeys([*sizes[:1], *pooled_at])
            ]
            checks = checks or [(None, d.kernel)]
            try:
                for size, kernel in checks:
                    check_reduced_pass(
                        init_model,
                        (dataset.in_channels, *dataset.image_size),
                        factor=d.input.factor,
                        kernel=kernel,
                        input_mode=d.input.mode,
                        bn="frozen",
                        size=size,
                    )
            except ReducedPassError:  # a ValueError too, but already names the layer: keep it as it is
                raise
            except ValueError as exc:  # e.g. a pooling window larger than a kernel, a factor too large for the images
                shape = f"{dataset.in_channels}x{dataset.image_size[0]}x{dataset.image_size[1]}"
                raise SpecError("spec", [("dynds", f"{exc} (model {spec.model.arch}, input {shape})")]) from None
            if own_model:
                from .flops import reduced_input_problem

                # A reduced step on a 1x1 first map trains on one pixel per image: refused here as at the service's door.
                small = reduced_input_problem(spec, (dataset.in_channels, *dataset.image_size))
                if small:
                    raise SpecError("spec", [("dynds.input.factor", small)])
                if sizes:
                    from .flops import relative_input_problem

                    problem = relative_input_problem(spec, (dataset.in_channels, *dataset.image_size), sizes[0])
                    if problem:
                        raise SpecError("spec", [problem])
        if device.type == "cuda" and process.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # same setting for every run of the job

        warm_up(spec, init_model, dataset, device, reduced=dynds_schedule.can_reduce, sizes=sizes)

        def plan(kind, schedule, steps):
            return RunPlan(kind=kind, schedule=schedule, total_steps=steps, steps_per_epoch=steps_per_epoch)

        def build(kind, schedule, steps):
            return TrainingRun(plan(kind, schedule, steps), spec, init_model, dataset, device, cb)

        job = _JobState.resumed(resumed)
        trained: dict[str, nn.Module] = {}
        for kind, state in job.done_models.items():  # runs a checkpoint holds as finished
            model_ = _model_copy(init_model, spec, device, reduced=kind == "dynds" and dynds_schedule.can_reduce)
            model_.load_state_dict(state)
            trained[kind] = model_

        def checkpoint(phase: str, runs: list[TrainingRun]) -> None:
            if saver is not None:
                payload = job.payload(phase, runs, device)  # reports the steps still pending (CUDA) to the callbacks
                cb.on_checkpoint()  # they store them before the file that covers them exists
                saver.save(payload, {"phase": phase, "steps": {r.plan.kind: r.step for r in runs}})

        def run_phase(phase: str, runs: list[TrainingRun]) -> None:
            """Run ``runs`` in lockstep, continued from the checkpoint if it was taken in this phase."""
            saved = resumed.payload["runs"] if resumed is not None and resumed.payload["phase"] == phase else []
            if resumed is not None and saved:
                by_kind = {r.plan.kind: r for r in runs}
                shift = host_clock() - resumed.payload["clock"]  # one shift for all: their steps stay paired in time
                for state in saved:
                    by_kind[state["kind"]].load_state_dict(state, clock_shift=shift)
                runs = [by_kind[state["kind"]] for state in saved]  # the ABBA order where it stopped
                set_rng_state(resumed.payload["rng"])  # last: building the runs reseeded them

            def on_round(active: list[TrainingRun]) -> None:
                if saver is not None and saver.due():
                    checkpoint(phase, active)

            run_lockstep(runs, pause_collector=process.pause_collector, on_round=on_round)
            if any(r.result.cancelled for r in runs):
                checkpoint(phase, runs)  # a cooperative stop (SIGTERM, Ctrl-C): continue from here later
            for r in runs:
                if not r.result.cancelled:
                    job.finish(r, keep_model=r.plan.kind != "equal_time")
                    if r.plan.kind != "equal_time":
                        trained[r.plan.kind] = r.model

        def alone(kind, schedule, steps):
            if kind in job.done:  # finished before the checkpoint the job resumed from
                return job.result(kind)
            run = build(kind, schedule, steps)
            run_phase(kind, [run])
            return run.result

        def none_schedule(steps):
            return make_schedule(NoneSchedule(), steps, t.seed)

        baseline: RunResult | None = None
        equal_time: RunResult | None = None
        pairing: Pairing | None = None
        if spec.baseline and baseline_run is None and t.pairing == "lockstep":
            pairing = "lockstep"
            if "dynds" not in job.done:
                runs = [build("baseline", none_schedule(total_steps), total_steps), build("dynds", dynds_schedule, total_steps)]
                run_phase("lockstep", runs)
                d_tally, b_tally = runs[1].tally, runs[0].tally
                job.lockstep_ratio = lockstep_time_ratio(
                    d_tally.step_times, d_tally.step_reduced, d_tally.step_at, b_tally.step_times, b_tally.step_at
                )
                baseline, dynds = runs[0].result, runs[1].result
                recal = dynds.bn_recalibration_s or 0.0
                if job.lockstep_ratio is not None and 0 < recal < dynds.train_time_s:
                    # The paired ratio covers the steps; the BatchNorm recalibration after them costs too.
                    job.lockstep_ratio *= dynds.train_time_s / (dynds.train_time_s - recal)
            else:
                baseline, dynds = job.result("baseline"), job.result("dynds")
        else:
            if baseline_run is not None:
                baseline = baseline_run
            elif spec.baseline:
                baseline = alone("baseline", none_schedule(total_steps), total_steps)
            pairing = "sequential" if baseline is not None else None
            if baseline is not None and baseline.cancelled:
                dynds = RunResult(run="dynds", cancelled=True)
            else:
                dynds = alone("dynds", dynds_schedule, total_steps)
        lockstep_ratio = job.lockstep_ratio
        if spec.equal_time_baseline and not dynds.cancelled and not (baseline is not None and baseline.cancelled):
            if job.equal_time_steps is None:
                t_base, job.sizing = equal_time_budget(dynds, baseline, total_steps, lockstep_ratio=lockstep_ratio)
                job.equal_time_steps = equal_time_steps(total_steps, dynds.train_time_s, t_base)
                if saver is not None and saver.every_s > 0:
                    checkpoint("equal_time", [])  # the paired runs' hours are safe before the next part starts
            equal_time = alone("equal_time", none_schedule(job.equal_time_steps), job.equal_time_steps)
        sizing = job.sizing

    result = compare(
        spec,
        describe_device(device),
        dynds,
        baseline,
        equal_time,
        pairing=pairing,
        timing_noise=timing_noise,
        lockstep_ratio=lockstep_ratio,
        hardware=hardware,
        contention=contention,
    )
    if equal_time is not None:
        result.equal_time_sizing = sizing
    result.interruptions = job.interruptions
    for kind in ("dynds", "baseline") if keep_baseline_model else ("dynds",):
        if kind in trained and not getattr(result, kind).cancelled:
            result._models[kind] = trained[kind]
    return result


@dataclass
class _JobState:
    """What a checkpoint holds besides the runs in flight: the runs already finished (results and the
    models the result keeps), the lockstep ratio, the equal-time run's length, and past resumptions."""

    done: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    lockstep_ratio: float | None = None
    sizing: str | None = None
    equal_time_steps: int | None = None
    interruptions: list[Interruption] = dataclasses.field(default_factory=list)

    @classmethod
    def resumed(cls, ckpt: Checkpoint | None) -> _JobState:
        if ckpt is None:
            return cls()
        p, h = ckpt.payload, ckpt.header
        now = time.time()
        here = Interruption(
            checkpoint=str(ckpt.path), phase=p["phase"], steps=dict(h.get("steps", {})),
            saved_at=h["saved_at"], resumed_at=now, lost_s=max(0.0, now - h["saved_at"]),
        )  # fmt: skip
        past = [Interruption.model_validate(i) for i in p["interruptions"]]
        return cls(dict(p["done"]), p["lockstep_ratio"], p["sizing"], p["equal_time_steps"], [*past, here])

    @property
    def done_models(self) -> dict[str, Any]:
        return {kind: d["model"] for kind, d in self.done.items() if d.get("model") is not None}

    def finish(self, run: TrainingRun, *, keep_model: bool) -> None:
        self.done[run.plan.kind] = {"result": run.result.model_dump(mode="json"), "model": run.model.state_dict() if keep_model else None}

    def result(self, kind: str) -> RunResult:
        return RunResult.model_validate(self.done[kind]["result"])

    def payload(self, phase: str, runs: list[TrainingRun], device: torch.device) -> dict[str, Any]:
        return {
            "phase": phase,
            "runs": [r.state_dict() for r in runs],  # in the order of the next lockstep round
            "done": self.done,
            "lockstep_ratio": self.lockstep_ratio,
            "sizing": self.sizing,
            "equal_time_steps": self.equal_time_steps,
            "interruptions": [i.model_dump() for i in self.interruptions],
            "rng": rng_state(device),
            "clock": host_clock(),  # where the saved steps sit on this process's clock (lockstep pairs them in time)
        }


def compare(
    spec: JobSpec,
    device: str,
    dynds: RunResult,
    baseline: RunResult | None,
    equal_time: RunResult | None,
    *,
    pairing: Pairing | None = None,
    timing_noise: TimingNoise | None = None,
    lockstep_ratio: float | None = None,
    hardware: Hardware | None = None,
    contention: Contention | None = None,
) -> JobResult:
    """The headline figures of a job from its runs (pure): savings, deltas, noise flag, verdict.

    ``lockstep_ratio``: T_dynds / T_baseline from the lockstep runs' paired steps; ``time_saving`` is
    1 minus it when given (and the pairing is lockstep), and ``time_saving_total`` then holds the
    saving from the two runs' train times; without it ``time_saving`` is that one itself."""
    runs = [r for r in (dynds, baseline, equal_time) if r is not None]
    finished_accs = [r.final_val_acc for r in runs if r.final_val_acc is not None and not r.cancelled]
    target = spec.train.target_accuracy
    if target is None and finished_accs:
        target = min(finished_accs)
    for r in runs:
        r.time_to_target_s = time_to_target(r, target)
    res = JobResult(
        spec_hash=spec.spec_hash,
        spec=spec.canonical(),
        device=device,
        hardware=hardware,
        dynds=dynds,
        baseline=baseline,
        equal_time=equal_time,
        target_accuracy=target,
        cancelled=any(r.cancelled for r in runs),
        pairing=pairing if baseline is not None else None,
    )
    complete = not res.cancelled
    if complete and baseline is not None:
        if baseline.train_time_s > 0:
            res.time_saving = 1.0 - dynds.train_time_s / baseline.train_time_s
            if pairing == "lockstep" and lockstep_ratio is not None:
                res.time_saving, res.time_saving_total = 1.0 - lockstep_ratio, res.time_saving
        if dynds.final_val_acc is not None and baseline.final_val_acc is not None:
            res.acc_delta = dynds.final_val_acc - baseline.final_val_acc
        if baseline.total_flops > 0:
            res.flop_saving = 1.0 - dynds.total_flops / baseline.total_flops
    if complete and equal_time is not None and dynds.final_val_acc is not None and equal_time.final_val_acc is not None:
        res.equal_time_gap = dynds.final_val_acc - equal_time.final_val_acc
    if complete and dynds.steps_full > 0 and dynds.steps_reduced > 0 and dynds.time_full_s > 0:
        res.time_saving_interleaved = 1.0 - dynds.train_time_s / estimated_baseline_time(dynds, dynds.steps)
    for name in ("time_saving", "time_saving_total"):
        if getattr(res, name) is not None and not math.isfinite(getattr(res, name)):
            setattr(res, name, None)
    if complete:
        res.timing_noise = (timing_noise or TimingNoise()).reason(res)
        res.timing_noisy = res.timing_noise is not None
        res.contention = (contention or Contention()).reason(res)
        res.contended = res.contention is not None
        v = judge(
            time_saving=res.time_saving, acc_delta=res.acc_delta, gap_mean=res.equal_time_gap, n_seeds=1,
            timing_noisy=res.timing_noisy, contended=res.contended,
        )  # fmt: skip
        res.verdict, res.verdict_sentence = v.kind, v.sentence
    return res
