"""Job specs: what to train, how, and which batches run reduced.

A spec is a versioned, validated document, read from YAML or JSON::

    spec = JobSpec.from_file("examples/quick.yaml")
    spec.spec_hash          # canonical: equal settings give equal hashes

Every field has a default, so ``JobSpec()`` is a valid (tiny, synthetic) job.
Invalid specs raise :class:`SpecError`, which lists every offending key path
and what is allowed there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The reduced pass's choices are the op layer's (torch-free module); named here too, as the spec's choices.
from .op_settings import BN_MODES as BN_MODES
from .op_settings import DEFAULT_KERNEL, BNMode, InputMode, KernelMode, KernelScale, PadSide, check_kernel_pooling
from .op_settings import INPUT_MODES as INPUT_MODES
from .op_settings import KERNEL_MODES as KERNEL_MODES
from .op_settings import KERNEL_SCALES as KERNEL_SCALES
from .op_settings import PAD_SIDES as PAD_SIDES

SPEC_VERSION: Final = 1

# Each set of the job's own choices is a Literal type (what the fields are declared with, so a type checker
# sees it too) and the tuple of its values (error messages, the API's /meta choices), as in op_settings.
Arch = Literal["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "resnet34", "resnet50"]
DatasetName = Literal["synthetic", "cifar10", "cifar100", "imagefolder", "fashion-mnist"]
ScheduleKind = Literal["none", "stochastic", "periodic", "phase", "adaptive", "progressive", "mixsize"]
LRSchedule = Literal["onecycle", "cosine", "step", "constant"]
Pairing = Literal["lockstep", "sequential"]
ARCHS: tuple[Arch, ...] = get_args(Arch)
DATASETS: tuple[DatasetName, ...] = get_args(DatasetName)
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = get_args(ScheduleKind)
# DynDS's relatives: schedules of input *sizes* (any size, kernels full) rather than of DynDS's reduced
# batches (input / dynds.input.factor, kernels pooled per dynds.kernel). They run through the same reduced
# pass, trainer, pairing and accounting; dynds.kernel and dynds.input.factor are not used by them.
RELATIVE_KINDS: tuple[ScheduleKind, ...] = ("progressive", "mixsize")

# The side of the smallest kernel each architecture's reduced pass pools (every conv of at least 2x2 is
# pooled; 1x1 convs are left alone): a resize target may not be larger, or the "reduced" pass would grow
# kernels. Every arch here has 3x3 convs (tests/dynds_core/test_spec.py checks this table against the
# models). MAX_KERNEL_SIZE is the absolute cap: the largest kernel of any arch (the 7x7 ResNet stem).
ARCH_MIN_POOLED_KERNEL = {arch: 3 for arch in ARCHS}
MAX_KERNEL_SIZE = 7
# Asking for every default: an empty spec is refused (`{}` is more often a mistake than a wish), and
# ``{"defaults": true}`` (YAML: ``defaults: true``) alone stands for "train all defaults".
DEFAULTS_KEY = "defaults"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes (\\x00)")
    return value


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a spec must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Section):
    arch: Arch = "resnet20"
    # torchvision ResNets only: 3x3 stem and no max-pool, for 32x32 inputs.
    small_input: bool = False


class DataSpec(_Section):
    dataset: DatasetName = "synthetic"
    # Directory (or .tar.gz for imagefolder) holding the data set; None means the loader's default place.
    root: str | None = None
    download: bool = False  # cifar10/cifar100 only, needs a network
    train_subset: int | None = Field(default=None, ge=10, description="stratified, seeded subset of the training set")
    val_subset: int | None = Field(default=None, ge=10)
    augment: bool = True  # random crop with padding 4 + horizontal flip, on whole batches
    normalize: bool = True
    # synthetic only
    synthetic_size: int = Field(default=512, ge=16, le=100_000)
    image_size: int = Field(default=32, ge=8, le=512)
    num_classes: int = Field(default=10, ge=2, le=1000)

    @field_validator("root")
    @classmethod
    def _check_root(cls, root: str | None) -> str | None:
        return None if root is None else _no_nul(root)


class TrainSpec(_Section):
    epochs: int = Field(default=2, ge=1, le=1000)
    batch_size: int = Field(default=128, ge=2, le=8192)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0, le=100)  # peak learning rate, per batch of batch_size
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(default=5e-4, ge=0, le=1)
    lr_schedule: LRSchedule = "onecycle"
    warmup_epochs: float = Field(default=0.0, ge=0, le=1000)  # linear warm-up (cosine/step/constant); onecycle: its own ramp
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bfloat16 on CPU, float16 on CUDA
    channels_last: bool = True  # 1.39x faster full steps on our CPUs: the baseline must use it too
    num_threads: int | None = Field(default=None, ge=1, le=256)  # torch threads; None: leave as set by the caller
    target_accuracy: float | None = Field(default=None, gt=0, le=100)  # percent; None: the lower final accuracy
    # How the DynDS run and its paired baseline share the machine: "lockstep" runs them in one process, one
    # step of each in turn, so a load change hits both alike (two models and optimizers in memory at once);
    # "sequential" runs the baseline first, then DynDS (half the memory; timing exposed to load drift).
    pairing: Pairing = "lockstep"
    # The hardware the job must run on (dynds_core.hardware.requested_queue): "auto" (whatever the worker
    # has; the result records what that was), a device kind (cpu, cuda), a hardware class
    # (cuda.nvidia-h100-80gb-hbm3, cpu.intel-xeon.t2), a device model name or a hardware key. The service
    # sends the job to the workers that have it. Not part of the recipe: results key on the measured hardware.
    hardware: str = Field(default="auto", min_length=1, max_length=200)
    # Seconds of the job between checkpoints when train() is given a checkpoint directory (0: none, except
    # at a cooperative stop). 600: a save of ResNet-50 in lockstep (two models and optimizers, ~400 MB)
    # takes a few seconds here, well under 1 % of ten minutes, and a preempted job loses at most ten
    # minutes. Not part of the recipe: no result depends on it.
    checkpoint_every_s: float = Field(default=600.0, ge=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _check_hardware(self) -> TrainSpec:
        from .hardware import pin_problem

        problem = pin_problem(self.device, self.hardware, self.num_threads)
        if problem:
            raise ValueError(f"[train.hardware] {problem}")
        return self

    # A field validator (not a model one) so that a bad device is listed beside other bad train keys.
    @field_validator("device")
    @classmethod
    def _check_device(cls, d: str) -> str:
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {d!r}")
        return d


class InputDownsample(_Section):
    factor: int = Field(default=2, ge=2, le=8)
    mode: InputMode = "avg"


class KernelPooling(_Section):
    """The op layer's :class:`~dynds_core.op_settings.KernelSettings` as a spec section: its defaults and
    its check, with the bounds a job may ask for."""

    mode: KernelMode = DEFAULT_KERNEL.mode
    window: int = Field(default=DEFAULT_KERNEL.window, ge=2, le=4)
    stride: int = Field(default=DEFAULT_KERNEL.stride, ge=1, le=4)
    # resize mode: at most the smallest kernel it resizes (checked against model.arch)
    size: tuple[Annotated[int, Field(ge=1, le=MAX_KERNEL_SIZE)], Annotated[int, Field(ge=1, le=MAX_KERNEL_SIZE)]] | None = DEFAULT_KERNEL.size
    scale: KernelScale = DEFAULT_KERNEL.scale
    pad_side: PadSide = DEFAULT_KERNEL.pad_side

    @model_validator(mode="after")
    def _check_mode(self) -> KernelPooling:
        check_kernel_pooling(self.mode, self.window, self.stride, self.size, self.scale)
        return self


def _require_kind(schema: dict[str, Any]) -> None:
    # The schedule union is discriminated by kind: a schedule without it is refused, so its JSON schema
    # requires it (OpenAPI generators need the discriminator required); Python keeps the default (NoneSchedule()).
    schema["required"] = [*schema.get("required", ()), "kind"]


class _ScheduleBase(_Section):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_require_kind)

    final_full_fraction: float = Field(default=0.0, ge=0, le=1)  # the last fraction of training is always full


class NoneSchedule(_ScheduleBase):
    kind: Literal["none"] = "none"


class StochasticSchedule(_ScheduleBase):
    kind: Literal["stochastic"] = "stochastic"
    p: float = Field(default=0.5, ge=0, le=1)  # probability that a batch is reduced
    p_end: float | None = Field(default=None, ge=0, le=1)  # anneal linearly from p to p_end over training


class PeriodicSchedule(_ScheduleBase):
    kind: Literal["periodic"] = "periodic"
    every: int | None = Field(default=3, ge=1, le=1000)  # every: 3 -> reduced, reduced, full
    pattern: str | None = None  # e.g. "RRF": R reduced, F full; overrides every

    @model_validator(mode="after")
    def _check_pattern(self) -> PeriodicSchedule:
        if self.pattern is not None and (not self.pattern or set(self.pattern) - {"R", "F"}):
            raise ValueError(f"pattern must be a non-empty string of R (reduced) and F (full), got {self.pattern!r}")
        # every: null is only meaningful beside a pattern (which overrides it); alone it names no period.
        if self.pattern is None and self.every is None:
            raise ValueError("[dynds.schedule.every] a periodic schedule needs every (an integer >= 1, e.g. 3) or a pattern (e.g. RRF); got neither")
        return self


class PhaseSchedule(_ScheduleBase):
    kind: Literal["phase"] = "phase"
    start: float = Field(default=0.0, ge=0, le=1)  # fraction of training where reduced batches begin
    end: float = Field(default=0.5, ge=0, le=1)  # ... and where they end

    @model_validator(mode="after")
    def _check_window(self) -> PhaseSchedule:
        if self.end < self.start:
            raise ValueError(f"phase end ({self.end}) must not be before start ({self.start})")
        return self


class AdaptiveSchedule(_ScheduleBase):
    """Chooses the batch type whose recent loss decrease per second of compute is larger."""

    kind: Literal["adaptive"] = "adaptive"
    p_min: float = Field(default=0.1, ge=0, le=1)  # never reduce less often than this
    p_max: float = Field(default=0.9, ge=0, le=1)  # ... nor more often than this
    window: int = Field(default=50, ge=5, le=10_000)  # steps over which signals are averaged

    @model_validator(mode="after")
    def _check_range(self) -> AdaptiveSchedule:
        if self.p_min > self.p_max:
            raise ValueError(f"p_min ({self.p_min}) must not exceed p_max ({self.p_max})")
        return self


class _RelativeSchedule(_ScheduleBase):
    # "pooled": a reduced step whose size is the data's divided by dynds.input.factor runs DynDS's own reduced
    # pass there (its kernels pooled as dynds.kernel says); steps at other sizes keep full kernels, as pooling
    # needs an integer ratio. "full": every size with full kernels, as the sources train.
    kernels: Literal["full", "pooled"] = "full"


class ProgressiveSchedule(_RelativeSchedule):
    """Progressive resizing: a deterministic ramp of input sizes, kernels full.

    Names and defaults are Composer's ``ProgressiveResizing`` (docs.mosaicml.com, "Progressive Resizing"):
    the first ``delay_fraction`` of training at ``initial_scale`` of the data's size, then a linear ramp to
    the full size, reached when the last ``finetune_fraction`` begins; sizes rounded to ``size_increment``
    px. FFCV's ImageNet ResNet-50 ramps 160 -> 192 px near the end in the same spirit.
    """

    kind: Literal["progressive"] = "progressive"
    initial_scale: float = Field(default=0.5, gt=0, le=1)  # of the data's side: 0.5 -> 16 px on 32 px CIFAR
    delay_fraction: float = Field(default=0.5, ge=0, le=1)  # of training, at initial_scale
    finetune_fraction: float = Field(default=0.2, ge=0, le=1)  # of training, at the full size, at the end
    size_increment: int = Field(default=4, ge=1, le=64)  # px: sizes are multiples of it

    @model_validator(mode="after")
    def _check_fractions(self) -> ProgressiveSchedule:
        if self.delay_fraction + self.finetune_fraction > 1:
            raise ValueError(
                f"[dynds.schedule.finetune_fraction] delay_fraction + finetune_fraction must be at most 1: "
                f"{self.delay_fraction} + {self.finetune_fraction}"
            )
        return self


class MixSizeSchedule(_RelativeSchedule):
    """Mix&Match (Hoffer et al. 2019, arXiv:1908.08986): an input size drawn per step, kernels full.

    ``scales`` are fractions of the data's side, drawn with ``probs`` from a hash of (seed, step). Their
    CIFAR setting draws 16/24/32/48 px with p 0.2/0.3/0.3/0.2; 48 px upsamples 32 px images, so here every
    scale is at most 1 and the default clamps 48 to 32: scales 0.5/0.75/1 with p 0.2/0.3/0.5. Their
    constant-compute option (batch scaled by (32/s)^2) is not offered: the loader, the learning-rate
    schedule, lockstep pairing and the equal-time sizing all count steps of train.batch_size images.
    """

    kind: Literal["mixsize"] = "mixsize"
    scales: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0], min_length=1, max_length=32)
    probs: list[float] = Field(default_factory=lambda: [0.2, 0.3, 0.5], min_length=1, max_length=32)

    @field_validator("scales")
    @classmethod
    def _check_scales(cls, scales: list[float]) -> list[float]:
        for s in scales:
            if not 0 < s <= 1:
                raise ValueError(
                    f"each scale must be in (0, 1], a fraction of the data's own resolution: {s} "
                    "(a scale above 1 upsamples the images past their resolution, where a resolution trick wins for nothing)"
                )
        return scales

    @model_validator(mode="after")
    def _check_probs(self) -> MixSizeSchedule:
        if len(self.probs) != len(self.scales):
            raise ValueError(f"[dynds.schedule.probs] needs one probability per scale: {len(self.probs)} for {len(self.scales)} scales")
        if any(p < 0 for p in self.probs) or abs(sum(self.probs) - 1) > 1e-6:
            raise ValueError(f"[dynds.schedule.probs] probabilities must be >= 0 and sum to 1: {self.probs}")
        return self


ScheduleSpec = Annotated[
    NoneSchedule | StochasticSchedule | PeriodicSchedule | PhaseSchedule | AdaptiveSchedule | ProgressiveSchedule | MixSizeSchedule,
    Field(discriminator="kind"),
]


class BNRecalibration(_Section):
    """FixRes (Touvron et al. 2019, arXiv:1906.06423): after training, BatchNorm's running statistics are
    recomputed at the test resolution (the data's own) over ``batches`` training batches; nothing else
    changes. 50 batches of 128: 6,400 images, as many forward passes as ~17 training steps."""

    batches: int = Field(default=50, ge=1, le=10_000)


class DynDSSpec(_Section):
    input: InputDownsample = InputDownsample()
    kernel: KernelPooling = KernelPooling()
    schedule: ScheduleSpec = StochasticSchedule()
    bn: BNMode = "frozen"
    # null: none. Applies to the DynDS run (any schedule kind), not to its baselines.
    bn_recalibration: BNRecalibration | None = None


class JobSpec(_Section):
    version: Literal[1] = SPEC_VERSION
    name: str = Field(default="job", min_length=1, max_length=200)
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    dynds: DynDSSpec = DynDSSpec()
    baseline: bool = True  # also run the paired baseline (schedule none, same seed, data order, recipe)
    equal_time_baseline: bool = False  # also run the baseline with epochs cut to the DynDS run's train time

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        return _no_nul(name)

    @model_validator(mode="after")
    def _check_resize_target(self) -> JobSpec:
        k = self.dynds.kernel
        if k.mode == "resize" and k.size is not None:
            side = ARCH_MIN_POOLED_KERNEL[self.model.arch]
            if max(k.size) > side:
                # Reported at dynds.kernel.size (see SpecError.from_validation's "[loc]" prefix).
                raise ValueError(
                    f"[dynds.kernel.size] the resize target {list(k.size)} is larger than the {side}x{side} kernels "
                    f"{self.model.arch} pools; use at most [{side}, {side}]"
                )
        return self

    @property
    def spec_hash(self) -> str:
        """Hash of the settings that change results (``name`` excluded), stable across key order."""
        return spec_hash(self)

    @classmethod
    def parse(cls, data: Any, *, source: str = "spec", refuse_empty: bool = False) -> JobSpec:
        """Validate a mapping; raise :class:`SpecError` listing every bad key path.

        ``refuse_empty`` (files, HTTP): ``{}`` is an error and ``{"defaults": true}`` alone asks for every default.
        """
        if not isinstance(data, dict):
            raise SpecError(source, [("", f"expected a mapping of sections, got {type(data).__name__}")])
        if refuse_empty:
            problem = empty_spec_problem(data)
            if problem:
                raise SpecError(source, [problem])
            data = {} if data == {DEFAULTS_KEY: True} else data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError.from_validation(source, exc) from None

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        return cls.parse(read_spec_file(path), source=str(path), refuse_empty=True)

    def canonical(self) -> dict[str, Any]:
        """Every setting spelled out, defaults included: what is hashed and stored."""
        return self.model_dump(mode="json")


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """A spec file's mapping, unvalidated (``dynds submit`` sends it as written; the server validates).

    YAML, or JSON for a ``.json`` name; an empty file is an empty mapping. SpecError names the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), [("", f"cannot read the file: {exc.strerror}")]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError(str(path), [("", f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(str(path), [("", f"expected a mapping of spec sections, got {type(data).__name__}")])
    return data


def empty_spec_problem(data: dict[str, Any]) -> tuple[str, str] | None:
    """(key path, message) when ``data`` is empty or misuses ``defaults``; None otherwise."""
    if not data:
        return ("", f'the spec is empty; give the settings to change, or {{"{DEFAULTS_KEY}": true}} '

                    f"(YAML: '{DEFAULTS_KEY}: true') to train every default")  # fmt: skip
    if DEFAULTS_KEY in data and (data[DEFAULTS_KEY] is not True or len(data) > 1):
        return (DEFAULTS_KEY, f"'{DEFAULTS_KEY}: true' asks for every default and stands alone; "
                              "remove it when the spec sets other keys")  # fmt: skip
    return None


def resolve_data_root(spec: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """A spec mapping whose relative ``data.root`` is made absolute against ``base``.

    ``dynds train`` reads relative roots from the current directory; a server refuses them (its
    workers run elsewhere), so clients resolve them first. The given mapping is left as it was.
    """
    data = spec.get("data")
    if not isinstance(data, dict):
        return spec
    root = data.get("root")
    if isinstance(root, str) and root and not Path(root).is_absolute():
        spec = {**spec, "data": {**data, "root": os.path.normpath(os.path.join(base, root))}}
    return spec


def spec_hash(spec: JobSpec) -> str:
    data = spec.canonical()
    data.pop("name", None)
    # "auto" is what every spec meant before train.hardware existed: the hashes of earlier jobs still match.
    if data["train"].get("hardware") == "auto":
        del data["train"]["hardware"]
    # How often a job checkpoints changes no result: jobs with any cadence share a hash (and old hashes stay).
    data["train"].pop("checkpoint_every_s", None)
    # No BatchNorm recalibration is what every spec meant before the option existed: old hashes stay.
    if data["dynds"].get("bn_recalibration") is None:
        data["dynds"].pop("bn_recalibration", None)
    # A relative's full kernels are what it meant before its `kernels` option existed: old hashes stay.
    if data["dynds"]["schedule"].get("kernels") == "full":
        del data["dynds"]["schedule"]["kernels"]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SpecError(ValueError):
    """A spec that cannot run. ``errors`` is a list of (key path, message)."""

    def __init__(self, source: str, errors: list[tuple[str, str]]):
        self.source = source
        self.errors = errors
        lines = [f"  {path or '<top>'}: {msg}" for path, msg in errors]
        super().__init__(f"invalid spec in {source}:\n" + "\n".join(lines))

    @classmethod
    def from_validation(cls, source: str, exc: ValidationError) -> SpecError:
        errors = []
        for err in exc.errors():
            # Drop the union tag pydantic inserts for discriminated schedules ("dynds.schedule.stochastic.p").
            loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in SCHEDULE_KINDS and err["loc"][0] == "dynds")]
            msg = err["msg"]
            if msg.startswith("Value error, [") and "] " in msg:  # a model validator naming its own key path
                where, _, msg = msg[len("Value error, [") :].partition("] ")
                loc = where.split(".")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "union_tag_invalid":
                msg = f"unknown schedule kind; allowed: {', '.join(SCHEDULE_KINDS)}"
            elif err["type"] == "literal_error":
                msg = f"{msg} (got {err.get('input')!r})"
            errors.append((".".join(loc), msg))
        return cls(source, errors)
