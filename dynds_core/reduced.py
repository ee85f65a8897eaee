"""The reduced pass: the same module, run on a downsampled input with spatially pooled kernels.

    x_small = downsample_input(x, 2)
    with reduced_pass(model):                 # kernels avg 2x2 stride 1, BatchNorm frozen
        loss = F.cross_entropy(model(x_small), y)
    loss.backward()                           # gradients land on the original full-size weights

Inside the context every 2-D convolution whose kernel is at least 2x2 convolves with
``pool_kernel(weight)``, padded so that its output has exactly the size the original conv would give
on the downsampled input (:mod:`dynds_core.pooled_conv`). The context intercepts the functional op
``F.conv2d`` itself (a ``TorchFunctionMode``), not ``nn.Conv2d``: a subclass with its own ``forward``
(timm's ``StdConv2d``, ``Conv2dSame``) or a user's module calling ``F.conv2d`` is pooled too, with the
weight it computed, so gradients reach the real parameters through its own transform. A mode's stack
belongs to the thread that entered it, so a full forward of the same model in another thread meanwhile
sees the full kernels and plain BatchNorm; and nothing on the model is changed (no attribute, hook or
flag), so ``torch.compile`` traces the pass (one graph per resolution, no graph break). Nothing is
copied into or out of the model.

BatchNorm follows one of three modes, frozen (the default), shared or separate, by intercepting
``F.batch_norm`` too (:mod:`dynds_core.reduced_bn`). A shape error inside the model during the pass
(a head sized for one resolution) becomes a :class:`ReducedPassError` naming the layer
(:mod:`dynds_core.reduced_diagnostics`); :func:`check_reduced_pass` finds it before training.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from .op_settings import BN_MODES, KernelArg, KernelSettings, kernel_settings
from .ops import downsample_input, resize_input
from .pooled_conv import get_pooled_conv, pooled_convs
from .reduced_bn import BATCH_COUNT, ReducedBatchNorm, attach_separate_bn, full_state_dict
from .reduced_diagnostics import ReducedPassError, explain_failure, naming_the_layer

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = (None, None, None, 1, 0, 1, 1)
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS = (None, None, None, None, None, False, 0.1, 1e-5)


def _bind(names: tuple[str, ...], defaults: tuple, args: tuple, kwargs: dict) -> list:
    values = list(args) + list(defaults[len(args) :])
    for i, name in enumerate(names):
        if name in kwargs:
            values[i] = kwargs[name]
    return values


class _ReducedMode(TorchFunctionMode):
    """The reduced pass as a function mode: ``F.conv2d`` calls with a kernel of at least 2x2 run pooled
    (the padded side alternating between stride-1 convs, in call order, when ``pad_side`` is alternate),
    and ``F.batch_norm`` follows the BatchNorm mode. Entered by :func:`reduced_pass`; per thread."""

    def __init__(self, settings: KernelSettings, bn: ReducedBatchNorm | None):
        super().__init__()
        self.settings = settings
        self.bn = bn  # None: bn="shared", plain BatchNorm
        self.stride1_convs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            return self._conv(args, kwargs)
        bn = self.bn
        if bn is not None:
            if func is F.batch_norm:
                return bn.batch_norm(*_bind(_BN_ARGS, _BN_DEFAULTS, args, kwargs))
            if func is BATCH_COUNT and args and id(args[0]) in bn.by_counter:
                return bn.count(*args, **kwargs)
        return func(*args, **kwargs)

    def _conv(self, args: tuple, kwargs: dict) -> torch.Tensor:
        x, weight, bias, stride, padding, dilation, groups = _bind(_CONV_ARGS, _CONV_DEFAULTS, args, kwargs)
        kh, kw = weight.shape[-2], weight.shape[-1]
        if weight.dim() != 4 or kh < 2 or kw < 2:
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)  # 1x1 convs are never pooled
        side = self.settings.pad_side
        if side == "alternate":
            # Stride-1 convs alternate sides so their half-pixel shifts cancel. Strided convs put
            # any extra pad at the end: on even sizes that means none at all (a 2x2 stride-2 conv
            # on 16x16 gives 8x8 unpadded) and their shift is only half a pixel / stride.
            if _pair(stride) == (1, 1):
                extra_at_end = self.stride1_convs % 2 == 0
                self.stride1_convs += 1
            else:
                extra_at_end = True
        else:
            extra_at_end = side == "end"
        return get_pooled_conv((kh, kw), stride, padding, dilation, groups, self.settings, extra_at_end)(x, weight, bias)


_ACTIVE = threading.local()


@contextmanager
def reduced_pass(model: nn.Module, kernel: KernelArg = None, bn: str = "frozen") -> Iterator[nn.Module]:
    """Inside the context, ``model(x_small)`` runs the reduced pass (see the module docstring).

    ``kernel``: None (avg, window 2, stride 1, scale sum, pad_side alternate), a
    :class:`~dynds_core.op_settings.KernelSettings`, a spec's :class:`~dynds_core.spec.KernelPooling`, or a
    dict of their fields. ``bn``: frozen | shared | separate. The pass applies to every ``F.conv2d`` and
    ``F.batch_norm`` call made in this thread inside the context; the padded side of even kernels
    alternates in call order from the context's start.
    """
    settings = kernel_settings(kernel)
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(BN_MODES)}: {bn!r}")
    if getattr(_ACTIVE, "mode", None) is not None:
        raise ReducedPassError("already inside a reduced pass in this thread; reduced_pass contexts cannot be nested")
    mode = _ReducedMode(settings, ReducedBatchNorm(model, bn) if bn != "shared" else None)
    _ACTIVE.mode = mode
    try:
        with mode:
            try:
                yield model
            except RuntimeError as exc:
                explained = explain_failure(model, exc)
                if explained is exc:
                    raise  # not a shape error: as it was (``raise exc from exc`` would make it its own cause)
                raise explained from exc
            except ReducedPassError as exc:
                named = naming_the_layer(model, exc)
                if named is None:
                    raise
                raise named from None
    finally:
        _ACTIVE.mode = None


def check_reduced_pass(
    model: nn.Module,
    input_shape: tuple[int, ...],
    factor: int = 2,
    kernel: KernelArg = None,
    *,
    input_mode: str = "avg",
    bn: str = "frozen",
    size: tuple[int, int] | None = None,
) -> None:
    """Run one tiny eval-mode, no-grad forward of the full and the reduced pass; raise
    :class:`ReducedPassError` naming the layer when the reduced pass cannot work. ``size`` (H, W): the
    reduced input resized to it instead of downsampled by ``factor`` (the relatives' steps).

    ``input_shape`` is (C, H, W) or (N, C, H, W) (N is ignored). The model's training flags, BatchNorm
    running statistics and parameters are left as they were.
    """
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W): {tuple(input_shape)!r}")
    c, h, w = input_shape[-3:]
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(2, c, h, w, dtype=ref.dtype if ref is not None else torch.float32, device=ref.device if ref is not None else "cpu")
    x_small = downsample_input(x, factor, input_mode) if size is None else resize_input(x, size, input_mode)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            try:
                full = model(x)
            except RuntimeError as exc:
                raise ReducedPassError(f"the model fails on a full-size {c}x{h}x{w} input, before any reduced pass: {exc}") from exc
            with reduced_pass(model, kernel, bn):
                small = model(x_small)
    finally:
        for m, training in modes:
            m.training = training
    if isinstance(full, torch.Tensor) and isinstance(small, torch.Tensor) and full.shape != small.shape:
        raise ReducedPassError(
            f"{type(model).__name__} returns {tuple(small.shape)} in the reduced pass but {tuple(full.shape)} in the full pass; "
            "DynDS needs a model whose output size does not depend on the input resolution (global pooling before the head)"
        )


__all__ = [
    "ReducedPassError",
    "attach_separate_bn",
    "check_reduced_pass",
    "full_state_dict",
    "kernel_settings",
    "pooled_convs",
    "reduced_pass",
]
