"""The reduced pass: the same module, run on a downsampled input with spatially pooled kernels.

    x_small = downsample_input(x, 2)
    with reduced_pass(model):                 # kernels avg 2x2 stride 1, BatchNorm frozen
        loss = F.cross_entropy(model(x_small), y)
    loss.backward()                           # gradients land on the original full-size weights

Inside the context every ``nn.Conv2d`` whose kernel is at least 2x2 convolves with
``pool_kernel(weight)`` (an instance attribute shadows its ``_conv_forward``), padded so that its
output has exactly the size the original conv would give on the downsampled input. Nothing is
copied into or out of the model; on exit (even on an exception) every attribute, hook and
BatchNorm setting is back as it was. A shape error inside the model during the pass (a head sized
for one resolution) becomes a :class:`ReducedPassError` naming the layer;
:func:`check_reduced_pass` finds it before training.

BatchNorm modes:
  frozen    reduced batches normalise with their own batch statistics but never update the
            running statistics (the default: they would wreck evaluation)
  shared    plain BatchNorm behaviour
  separate  reduced passes use their own affine parameters and running statistics, registered
            by :func:`attach_separate_bn` (call it before building the optimizer). The model's
            ``state_dict`` then holds the extra ``reduced_*`` entries too.
"""

from __future__ import annotations

import re
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ValidationError
from torch.nn.modules.batchnorm import _BatchNorm

from .ops import (
    _check_pool_args,
    downsample_input,
    pad_amounts,
    pool_kernel,
    pooled_kernel_shape,
    pooling_matrix,
)
from .spec import BN_MODES, KernelPooling

# Names of the per-BatchNorm parameters/buffers of bn="separate", paired with the originals.
SEPARATE_BN_PARAMS = (("weight", "reduced_weight"), ("bias", "reduced_bias"))
SEPARATE_BN_BUFFERS = (
    ("running_mean", "reduced_running_mean"),
    ("running_var", "reduced_running_var"),
    ("num_batches_tracked", "reduced_num_batches_tracked"),
)

_SHAPE_ERROR = re.compile(r"shape|size|mat1 and mat2|Expected .*input", re.IGNORECASE)


class ReducedPassError(ValueError):
    """A model that cannot take a reduced pass; the message names the layer and what to change."""


def kernel_settings(kernel: KernelPooling | Mapping[str, Any] | None) -> KernelPooling:
    """Normalise the ``kernel`` argument (None, a KernelPooling, or a dict of its fields)."""
    if kernel is None:
        return KernelPooling()
    if isinstance(kernel, KernelPooling):
        return kernel
    if isinstance(kernel, Mapping):
        try:
            return KernelPooling(**kernel)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'kernel'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid kernel settings {dict(kernel)!r}: {problems}") from None
    raise TypeError(f"kernel must be None, a KernelPooling or a dict of its fields, got {type(kernel).__name__}")


def _is_pooled(m: nn.Module) -> bool:
    """Whether a reduced pass pools this module: a Conv2d whose kernel is at least 2x2 (never a 1x1)."""
    return isinstance(m, nn.Conv2d) and m.kernel_size[0] >= 2 and m.kernel_size[1] >= 2


def pooled_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The convs a reduced pass pools (kernel at least 2x2), in registration order."""
    return [(name, m) for name, m in model.named_modules() if _is_pooled(m)]


def _original_geometry(conv: nn.Conv2d, dim: int) -> tuple[int, int, int, int, int]:
    """(kernel, stride, dilation, pad_before, pad_after) of the original conv along dim 0 (H) or 1 (W)."""
    k, s, d = conv.kernel_size[dim], conv.stride[dim], conv.dilation[dim]
    if conv.padding == "valid":
        return k, s, d, 0, 0
    if conv.padding == "same":
        total = d * (k - 1)
        return k, s, d, total // 2, total - total // 2
    p = conv.padding[dim]
    return k, s, d, p, p


class _PooledConv:
    """The ``_conv_forward`` of one conv during a reduced pass.

    It holds the conv's geometry, not the conv, so it can be cached beside the module (see
    :func:`_pooled_forward`) and reused step after step with its padding already worked out.
    """

    def __init__(self, name: str, conv: nn.Conv2d, settings: KernelPooling, extra_at_end: bool):
        # __call__ skips pool_kernel for the linear modes, so its argument checks run here, once.
        _check_pool_args(settings.mode, settings.window, settings.stride, settings.size, settings.scale)
        self.name = name
        self.mode, self.window, self.stride, self.scale = settings.mode, settings.window, settings.stride, settings.scale
        self.size = tuple(settings.size) if settings.size is not None else None
        kh, kw = conv.kernel_size
        self.kernel = pooled_kernel_shape(kh, kw, self.mode, self.window, self.stride, self.size)
        self.geometry = (_original_geometry(conv, 0), _original_geometry(conv, 1))
        self.conv_stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.extra_at_end = extra_at_end
        self.padding_mode = conv.padding_mode
        # Per input size: (explicit (left, right, top, bottom) pad or None, the conv's own symmetric padding).
        self._pads: dict[tuple[int, int], tuple[tuple[int, int, int, int] | None, tuple[int, int]]] = {}
        self._matrix_args = (kh, kw, self.mode, self.window, self.stride, self.size, self.scale)

    def _pads_for(self, h: int, w: int) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
        out = []
        for n, (k, s, d, pb, pa), kn in zip((h, w), self.geometry, self.kernel):
            target = (n + pb + pa - d * (k - 1) - 1) // s + 1
            if target < 1:
                raise ReducedPassError(
                    f"layer {self.name!r} (Conv2d, kernel {k}, stride {s}) gets a {h}x{w} input in the reduced pass, "
                    f"too small for it even unpooled; use a smaller input downsampling factor or a larger image size"
                )
            # Keep the centre of each output where the original conv put it: the original centre
            # offset pb - d(k-1)/2 equals the new one, before - d(kn-1)/2.
            ideal = pb - d * (k - 1) / 2 + d * (kn - 1) / 2
            out.append(pad_amounts(n, target, kn, s, d, ideal, self.extra_at_end))
        (top, bottom), (left, right) = out
        if top == bottom >= 0 and left == right >= 0 and self.padding_mode == "zeros":
            return None, (top, left)  # the conv pads symmetrically itself: no copy
        return (left, right, top, bottom), (0, 0)

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "max":
            w = pool_kernel(weight, "max", self.window, self.stride, self.size, self.scale)
        elif self.mode == "none":
            w = weight
        else:
            # The cached matrix directly: pool_kernel's argument checks already ran in __init__.
            p = pooling_matrix(*self._matrix_args, dtype=weight.dtype, device=weight.device)
            o, i = weight.shape[0], weight.shape[1]
            if i > 1 and weight.is_contiguous(memory_format=torch.channels_last):
                # (O, kh, kw, I) in memory: pool the taps there, so the pooled kernel comes out
                # channels_last too and neither it nor its gradient is copied between layouts.
                taps = weight.permute(0, 2, 3, 1).reshape(o, -1, i)
                w = (p @ taps).view(o, *self.kernel, i).permute(0, 3, 1, 2)
            else:
                w = (weight.flatten(2) @ p.T).view(o, i, *self.kernel)
        hw = (x.shape[-2], x.shape[-1])
        try:
            pads = self._pads[hw]
        except KeyError:
            pads = self._pads[hw] = self._pads_for(*hw)
        explicit, padding = pads
        if explicit is not None:
            x = _pad(x, explicit, self.padding_mode)
        return F.conv2d(x, w, bias, self.conv_stride, padding, self.dilation, self.groups)


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int], padding_mode: str) -> torch.Tensor:
    """Pad (left, right, top, bottom); negative amounts crop."""
    if padding_mode == "zeros":
        return F.pad(x, pads)
    left, right, top, bottom = pads
    # Non-zero padding modes cannot crop: crop first, then pad what is left to pad.
    h, w = x.shape[-2], x.shape[-1]
    x = x[..., max(-top, 0) : h - max(-bottom, 0), max(-left, 0) : w - max(-right, 0)]
    pos = (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0))
    return F.pad(x, pos, mode=padding_mode) if any(pos) else x


def attach_separate_bn(model: nn.Module) -> nn.Module:
    """Give every BatchNorm its own reduced-pass parameters and running statistics (bn="separate").

    They start as copies of the current ones. Call this before building the optimizer, so that
    it also updates the ``reduced_weight``/``reduced_bias`` parameters. Idempotent.
    """
    for m in model.modules():
        if not isinstance(m, _BatchNorm) or "reduced_running_mean" in m._buffers:
            continue
        for orig, extra in SEPARATE_BN_PARAMS:
            p = getattr(m, orig)
            m.register_parameter(extra, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for orig, extra in SEPARATE_BN_BUFFERS:
            b = getattr(m, orig)
            m.register_buffer(extra, None if b is None else b.detach().clone())
    return model


def _swap_bn_sets(bns: list[nn.Module]) -> None:
    for m in bns:
        for table, pairs in ((m._parameters, SEPARATE_BN_PARAMS), (m._buffers, SEPARATE_BN_BUFFERS)):
            for orig, extra in pairs:
                table[orig], table[extra] = table[extra], table[orig]


# Per conv, its reduced forwards by settings: built once, so a step pays no set-up and the
# padding worked out for an input size is kept. Weak keys: a deleted model frees its entries.
_FORWARDS: "weakref.WeakKeyDictionary[nn.Conv2d, dict[tuple, _PooledConv]]" = weakref.WeakKeyDictionary()


def _pooled_forward(name: str, conv: nn.Conv2d, settings: KernelPooling, extra_at_end: bool) -> _PooledConv:
    key = (
        name, settings.mode, settings.window, settings.stride, settings.size, settings.scale, extra_at_end,
        conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode,
    )  # fmt: skip
    table = _FORWARDS.setdefault(conv, {})
    forward = table.get(key)
    if forward is None:
        forward = table[key] = _PooledConv(name, conv, settings, extra_at_end)
    return forward


@contextmanager
def reduced_pass(
    model: nn.Module,
    kernel: KernelPooling | Mapping[str, Any] | None = None,
    bn: str = "frozen",
) -> Iterator[nn.Module]:
    """Inside the context, ``model(x_small)`` runs the reduced pass (see the module docstring).

    ``kernel``: None (avg, window 2, stride 1, scale sum, pad_side alternate), a
    :class:`~dynds_core.spec.KernelPooling`, or a dict of its fields. ``bn``: frozen | shared | separate.
    """
    settings = kernel_settings(kernel)
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(BN_MODES)}: {bn!r}")
    convs: list[tuple[str, nn.Conv2d]] = []
    bns: list[nn.Module] = []
    for name, m in model.named_modules():
        if _is_pooled(m):
            convs.append((name, m))
        elif isinstance(m, _BatchNorm):
            if bn == "separate" and "reduced_running_mean" not in m._buffers:
                raise ReducedPassError(
                    f"bn='separate' needs the reduced-pass BatchNorm set, which BatchNorm {name!r} lacks: "
                    "call dynds_core.reduced.attach_separate_bn(model) once before building the optimizer"
                )
            bns.append(m)
    forwards = []
    alternation = 0
    for name, conv in convs:
        if "_conv_forward" in conv.__dict__:
            raise ReducedPassError(f"layer {name!r} is already inside a reduced pass; reduced_pass contexts cannot be nested")
        if settings.pad_side == "alternate":
            # Stride-1 convs alternate sides so their half-pixel shifts cancel. Strided convs put
            # any extra pad at the end: on even sizes that means none at all (a 2x2 stride-2 conv
            # on 16x16 gives 8x8 unpadded) and their shift is only half a pixel / stride.
            if conv.stride == (1, 1):
                extra_at_end = alternation % 2 == 0
                alternation += 1
            else:
                extra_at_end = True
        else:
            extra_at_end = settings.pad_side == "end"
        # Built (and checked: a window larger than a kernel) before anything is changed.
        forwards.append(_pooled_forward(name, conv, settings, extra_at_end))

    patched: list[nn.Conv2d] = []
    frozen: list[tuple[nn.Module, bool]] = []
    swapped = False
    try:
        for (name, conv), forward in zip(convs, forwards):
            # Straight into the instance dict: shadows the class method, skips Module.__setattr__.
            conv.__dict__["_conv_forward"] = forward
            patched.append(conv)
        if bn == "frozen":
            # With track_running_stats off, _BatchNorm normalises with batch statistics in train mode
            # and with the (untouched) running statistics in eval mode: exactly "frozen".
            for m in bns:
                frozen.append((m, m.track_running_stats))
                m.__dict__["track_running_stats"] = False
        elif bn == "separate":
            _swap_bn_sets(bns)
            swapped = True
        try:
            yield model
        except RuntimeError as exc:
            explained = _explain(model, exc)
            if explained is exc:
                raise  # not a shape error: as it was (``raise exc from exc`` would make it its own cause)
            raise explained from exc
    finally:
        for conv in patched:
            del conv.__dict__["_conv_forward"]
        for m, tracking in frozen:
            m.__dict__["track_running_stats"] = tracking
        if swapped:
            _swap_bn_sets(bns)


def _explain(model: nn.Module, exc: RuntimeError) -> Exception:
    """A shape error inside the model becomes a ReducedPassError naming the layer; others pass as they are."""
    layer = _failing_layer(model, exc)
    if layer is None or not _SHAPE_ERROR.search(str(exc)):
        return exc
    name, m = layer
    fix = (
        "put an adaptive pooling layer (e.g. nn.AdaptiveAvgPool2d(1)) before the flatten, "
        "or train this model without reduced batches (dynds.schedule.kind: none)"
    )
    if isinstance(m, nn.Linear):
        return ReducedPassError(
            f"layer {name!r} (Linear, in_features={m.in_features}) needs a fixed spatial input size: "
            f"the reduced pass feeds it a smaller feature map ({exc}). To use DynDS, {fix}"
        )
    return ReducedPassError(
        f"layer {name!r} ({type(m).__name__}) failed in the reduced pass: {exc}. If it needs a fixed spatial input size, {fix}"
    )


def _failing_layer(model: nn.Module, exc: BaseException) -> tuple[str, nn.Module] | None:
    """The innermost module of ``model`` whose code was running when ``exc`` was raised."""
    names = {id(m): n for n, m in model.named_modules()}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and id(owner) in names and isinstance(owner, nn.Module):
            found = (names[id(owner)] or type(owner).__name__, owner)
        tb = tb.tb_next
    return found


def check_reduced_pass(
    model: nn.Module,
    input_shape: tuple[int, ...],
    factor: int = 2,
    kernel: KernelPooling | Mapping[str, Any] | None = None,
    *,
    input_mode: str = "avg",
    bn: str = "frozen",
) -> None:
    """Run one tiny eval-mode, no-grad forward of the full and the reduced pass; raise
    :class:`ReducedPassError` naming the layer when the reduced pass cannot work.

    ``input_shape`` is (C, H, W) or (N, C, H, W) (N is ignored). The model's training flags, BatchNorm
    running statistics and parameters are left as they were.
    """
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W): {tuple(input_shape)!r}")
    c, h, w = input_shape[-3:]
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(2, c, h, w, dtype=ref.dtype if ref is not None else torch.float32, device=ref.device if ref is not None else "cpu")
    x_small = downsample_input(x, factor, input_mode)
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
    "kernel_settings",
    "pooled_convs",
    "reduced_pass",
]
