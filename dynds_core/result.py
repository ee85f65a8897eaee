"""What a training job reports: metrics streamed while it runs, and the final result.

Run kinds: ``dynds`` (the spec's schedule), ``baseline`` (schedule none, same seed, data order and
recipe), ``equal_time`` (the baseline recipe with its steps cut so that its train time matches the
DynDS run's; its learning-rate schedule completes over the shorter run).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from .hardware import Hardware
from .schedules import BatchType
from .spec import Pairing

RunKind = Literal["dynds", "baseline", "equal_time"]


class StepMetrics(BaseModel):
    run: RunKind
    step: int  # 0-based global step within the run
    epoch: int  # 0-based
    batch_type: BatchType
    loss: float
    acc: float  # percent, on this training batch
    lr: float
    step_time_s: float
    train_time_s: float  # cumulative train time of the run after this step (evaluation excluded)
    total_steps: int


class EpochMetrics(BaseModel):
    run: RunKind
    epoch: int  # 0-based; the metrics are taken after this epoch
    epochs: int
    train_loss: float
    train_acc: float  # percent
    val_loss: float
    val_acc: float  # percent, top-1
    train_time_s: float  # cumulative, evaluation excluded
    time_full_s: float
    time_reduced_s: float
    steps_full: int
    steps_reduced: int


class RunResult(BaseModel):
    run: RunKind
    epochs: list[EpochMetrics] = Field(default_factory=list)
    steps: int = 0
    steps_full: int = 0
    steps_reduced: int = 0
    train_time_s: float = 0.0
    time_full_s: float = 0.0
    time_reduced_s: float = 0.0
    flops_full_step: float = 0.0  # forward + backward FLOPs of one full training step
    flops_reduced_step: float = 0.0
    total_flops: float = 0.0
    final_val_acc: float | None = None
    final_val_loss: float | None = None
    best_val_acc: float | None = None
    time_to_target_s: float | None = None  # train time when val acc first reached the job's target
    # Coefficient of variation (std / mean) of this run's full-step times; None with fewer than 2 full steps.
    # High values mean the machine's speed changed during the run.
    full_step_cv: float | None = None
    # Did the run have its hardware to itself (dynds_core.training.contention), over its steps: CPU seconds its
    # training threads got / (wall seconds x torch threads), and seconds they were runnable but waited for a
    # CPU / (wall x threads); None where not measured (no wait outside Linux). On CUDA, the other processes
    # seen on its device (None: not visible) and who they were, in words ("none", "unknown: ...").
    cpu_share: float | None = None
    wait_share: float | None = None
    device_others: int | None = None
    device_users: str | None = None
    # A relative's (progressive, mixsize) reduced steps by input size, "HxW": count; None for other kinds.
    steps_by_size: dict[str, int] | None = None
    # Seconds of FixRes BatchNorm recalibration after training (dynds.bn_recalibration), in train_time_s.
    bn_recalibration_s: float | None = None
    cancelled: bool = False


class Interruption(BaseModel):
    """A resumption of the job from a checkpoint (dynds_core.training.checkpoint)."""

    checkpoint: str  # the file resumed from
    phase: str  # lockstep | baseline | dynds | equal_time: the part of the job in progress
    steps: dict[str, int]  # each run in flight: the step it resumed from (its steps done)
    saved_at: float  # unix time the checkpoint was written
    resumed_at: float  # unix time the job resumed
    # Wall seconds lost: from the checkpoint's writing to the resumption, i.e. the steps run after the
    # checkpoint (done again) plus the time the job was down. Train times and time_saving leave them out.
    lost_s: float


class JobResult(BaseModel):
    spec_hash: str
    spec: dict[str, Any]
    device: str
    # What the runs ran on, measured by the process that ran them (dynds_core.hardware): results are
    # compared only under one hardware key. None in results stored before it was recorded.
    hardware: Hardware | None = None
    dynds: RunResult
    baseline: RunResult | None = None
    equal_time: RunResult | None = None
    # Against the paired baseline; None when it did not run.
    # 1 - T_dynds / T_baseline. In lockstep, T_dynds / T_baseline is estimated from the two runs' steps
    # paired by index (medians per step shape, dynds_core.training.timing.lockstep_time_ratio), so a burst
    # of load during part of the job does not move it; sequential: the ratio of the two train times.
    time_saving: float | None = None
    # Lockstep only: 1 - T_dynds / T_baseline from the two runs' total train times, as the clock read
    # them; far from time_saving when the load changed during the job. None otherwise (time_saving is
    # then that ratio itself).
    time_saving_total: float | None = None
    acc_delta: float | None = None  # acc_dynds - acc_baseline, percentage points
    flop_saving: float | None = None  # 1 - FLOPs_dynds / FLOPs_baseline
    # 1 - T_dynds / (mean full-step time of the DynDS run itself x its steps): the DynDS run's own full
    # steps, timed between its reduced ones, stand in for the baseline's. A load change on a shared
    # machine between the baseline run and the DynDS run skews time_saving, not this. None without
    # both step types in the run.
    time_saving_interleaved: float | None = None
    # Against the equal-time baseline: acc_dynds - acc_equal_time (pp); positive means DynDS is worth it.
    equal_time_gap: float | None = None
    # What the equal-time run's length came from (dynds_core.trainer.equal_time_budget):
    # lockstep_baseline | own_full_steps | paired_baseline | flop_ratio; None without an equal-time run.
    equal_time_sizing: str | None = None
    # How the DynDS run and its paired baseline were timed: "lockstep" (one step of each in turn, in one
    # process: both see the same machine) or "sequential" (one run after the other); None without a baseline.
    pairing: Pairing | None = None
    # True when the timing cannot be trusted: the paired saving disagrees with the interleaved or the
    # total-time one by more than TimingNoise.max_saving_gap, or a run's full steps varied more than
    # TimingNoise.max_full_step_cv.
    # Noisy jobs are flagged everywhere and left out of rankings by default.
    timing_noisy: bool = False
    timing_noise: str | None = None  # why it is noisy, in words
    # True when the runs did not have their hardware to themselves (their training threads were starved of
    # the CPU time their steps' wall time allowed): like noisy jobs, kept out of rankings by default.
    contended: bool = False
    contention: str | None = None  # why, in words
    # Was it worth it (dynds_core.verdict): the class and one sentence; one job is one seed.
    verdict: str | None = None
    verdict_sentence: str | None = None
    target_accuracy: float | None = None
    cancelled: bool = False
    # Each resumption from a checkpoint, oldest first; empty for a job that ran in one go.
    interruptions: list[Interruption] = Field(default_factory=list)
    # The trained modules by run kind ("dynds", and "baseline" when asked): kept in memory, never serialised.
    _models: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def model(self) -> Any:
        """The trained DynDS model (on the training device), or None (cancelled, or a result read back from JSON).
        ``dynds_core.reduced.full_state_dict(result.model)`` loads into ``create_model(...)``."""
        return self._models.get("dynds")

    @property
    def models(self) -> dict[str, Any]:
        """Every trained model kept, by run kind."""
        return dict(self._models)

    def summary(self) -> dict[str, Any]:
        """The headline figures, flat (what tables, CSV export and CI thresholds use)."""
        return {
            "time_saving": self.time_saving,
            "acc_delta": self.acc_delta,
            "flop_saving": self.flop_saving,
            "equal_time_gap": self.equal_time_gap,
            "dynds_acc": self.dynds.final_val_acc,
            "baseline_acc": self.baseline.final_val_acc if self.baseline else None,
            "equal_time_acc": self.equal_time.final_val_acc if self.equal_time else None,
            "dynds_time_s": self.dynds.train_time_s,
            "baseline_time_s": self.baseline.train_time_s if self.baseline else None,
            "time_saving_interleaved": self.time_saving_interleaved,
            "timing_noisy": self.timing_noisy,
            "contended": self.contended,
            "verdict": self.verdict,
            "hardware_key": self.hardware.key if self.hardware else None,
        }
