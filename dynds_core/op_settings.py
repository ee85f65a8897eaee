"""The settings of the reduced pass's operations: their choices, their defaults and the one check of a
kernel pooling setting.

The op layer (:mod:`dynds_core.ops`, :mod:`dynds_core.reduced`) owns these; the job spec
(:mod:`dynds_core.spec`) declares its fields with them. No torch here: the service reads specs without
importing torch.

    settings = kernel_settings({"mode": "avg", "stride": 2})   # a KernelSettings, checked
    reduced_pass(model, settings)                              # or the dict, or a spec's KernelPooling
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

InputMode = Literal["avg", "bilinear", "nearest"]
KernelMode = Literal["avg", "max", "resize", "none"]
KernelScale = Literal["sum", "none"]
PadSide = Literal["end", "start", "alternate"]
BNMode = Literal["frozen", "shared", "separate"]
INPUT_MODES: tuple[InputMode, ...] = get_args(InputMode)
KERNEL_MODES: tuple[KernelMode, ...] = get_args(KernelMode)
KERNEL_SCALES: tuple[KernelScale, ...] = get_args(KernelScale)
PAD_SIDES: tuple[PadSide, ...] = get_args(PadSide)
BN_MODES: tuple[BNMode, ...] = get_args(BNMode)

RESIZE_NEEDS_SIZE = "kernel mode 'resize' needs an explicit size, e.g. size=(2, 2)"


def check_kernel_pooling(mode: str, window: int, stride: int, size: Sequence[int] | None, scale: str) -> None:
    """Raise ValueError, naming the setting, when these kernel pooling settings cannot pool a kernel."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernel mode must be one of {', '.join(KERNEL_MODES)}: {mode!r}")
    if scale not in KERNEL_SCALES:
        raise ValueError(f"kernel scale must be one of {', '.join(KERNEL_SCALES)}: {scale!r}")
    if mode in ("avg", "max"):
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"kernel pooling window must be an integer >= 2: {window!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= window:
            # A stride above the window would skip taps entirely.
            raise ValueError(f"kernel pooling stride must be an integer from 1 to the window ({window}): {stride!r}")
    if mode == "max" and scale == "sum":
        raise ValueError("kernel scale 'sum' is undefined for max pooling (its taps are not a linear mix); use scale='none'")
    if mode == "resize":
        if size is None:
            raise ValueError(RESIZE_NEEDS_SIZE)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"kernel resize size must be two positive integers (h, w): {size!r}")


@dataclass(frozen=True)
class KernelSettings:
    """How a reduced pass pools the kernels, checked when built. Frozen, so it can key a cache."""

    mode: KernelMode = "avg"
    window: int = 2  # avg/max pooling window over the kernel taps
    stride: int = 1  # 1: 3x3 -> 2x2; 2 (with ceil): 3x3 -> 2x2, 7x7 -> 4x4
    size: tuple[int, int] | None = None  # resize mode: the target (h, w)
    scale: KernelScale = "sum"  # sum: a flat input's response is kept
    pad_side: PadSide = "alternate"  # where even kernels get their extra pad

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", tuple(self.size))  # a list from JSON or YAML: hashable
        check_kernel_pooling(self.mode, self.window, self.stride, self.size, self.scale)
        if self.pad_side not in PAD_SIDES:
            raise ValueError(f"kernel pad_side must be one of {', '.join(PAD_SIDES)}: {self.pad_side!r}")


class KernelFields(Protocol):
    """Anything with the fields of KernelSettings: the spec's KernelPooling."""

    @property
    def mode(self) -> str: ...
    @property
    def window(self) -> int: ...
    @property
    def stride(self) -> int: ...
    @property
    def size(self) -> Sequence[int] | None: ...
    @property
    def scale(self) -> str: ...
    @property
    def pad_side(self) -> str: ...


KernelArg = KernelSettings | KernelFields | Mapping[str, Any] | None
KERNEL_FIELDS = tuple(f.name for f in dataclasses.fields(KernelSettings))
DEFAULT_KERNEL = KernelSettings()
# The relatives' reduced steps (progressive resizing, Mix&Match): the input at another size, kernels as trained.
FULL_KERNELS = KernelSettings(mode="none")


def relative_kernel(dynds: Any, image_size: Sequence[int], size: Sequence[int]) -> KernelSettings:
    """The kernels of a relative's reduced step at input ``size`` (progressive, mixsize): full, unless the
    schedule asks for ``kernels: pooled`` and ``size`` is the data's ``image_size`` divided by
    ``dynds.input.factor`` (DynDS's own reduced size), where DynDS's pooled kernels (``dynds.kernel``) apply.

    >>> from dynds_core.spec import JobSpec
    >>> d = JobSpec.parse({"dynds": {"schedule": {"kind": "progressive", "kernels": "pooled"}}}).dynds
    >>> relative_kernel(d, (32, 32), (16, 16)) == kernel_settings(d.kernel), relative_kernel(d, (32, 32), (24, 24)) == FULL_KERNELS
    (True, True)
    """
    if getattr(dynds.schedule, "kernels", "full") != "pooled":
        return FULL_KERNELS
    f = int(dynds.input.factor)
    h, w = (int(v) for v in image_size)
    if h % f or w % f or (int(size[0]), int(size[1])) != (h // f, w // f):
        return FULL_KERNELS
    return kernel_settings(dynds.kernel)


# KernelSettings by the field values of the spec sections they were built from: a training step passes the
# same section every time and pays a lookup, not a rebuild and check. Bounded: a server sees few settings.
_FROM_FIELDS: dict[tuple, KernelSettings] = {}
_FROM_FIELDS_MAX = 256
_MISSING = object()


def kernel_settings(kernel: KernelArg) -> KernelSettings:
    """Normalise a ``kernel`` argument: None (the defaults), a KernelSettings, an object with its fields
    (the spec's KernelPooling), or a dict of some of them. ValueError names what is wrong."""
    if kernel is None:
        return DEFAULT_KERNEL
    if isinstance(kernel, KernelSettings):
        return kernel
    if isinstance(kernel, Mapping):
        unknown = [k for k in kernel if k not in KERNEL_FIELDS]
        if unknown:
            raise ValueError(f"invalid kernel settings {dict(kernel)!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(KERNEL_FIELDS)}")  # fmt: skip
        try:
            return KernelSettings(**kernel)
        except ValueError as exc:
            raise ValueError(f"invalid kernel settings {dict(kernel)!r}: {exc}") from None
    values: tuple[Any, ...] = tuple(getattr(kernel, name, _MISSING) for name in KERNEL_FIELDS)
    if any(v is _MISSING for v in values):
        raise TypeError(f"kernel must be None, a KernelSettings, a spec's KernelPooling or a dict of their fields, got {type(kernel).__name__}")
    try:
        settings = _FROM_FIELDS.get(values)
    except TypeError:  # an unhashable value (a list size): built every time
        return KernelSettings(*values)
    if settings is None:
        settings = KernelSettings(*values)
        if len(_FROM_FIELDS) < _FROM_FIELDS_MAX:
            _FROM_FIELDS[values] = settings
    return settings
