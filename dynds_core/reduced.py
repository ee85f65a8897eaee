"""The reduced pass: the same module, run on a downsampled input with spatially pooled kernels.

    x_small = downsample_input(x, 2)
    with reduced_pass(model):                 # kernels avg 2x2 stride 1, BatchNorm frozen
        loss = F.cross_entropy(model(x_small), y)
    loss.backward()                           # gradients land on the original full-size weights

Inside the context every 2-D convolution whose kernel is at least 2x2 convolves with
``pool_kernel(weight)``, padded so that its output has exactly the size the original conv would give
on the downsampled input. The context intercepts the functional op ``F.conv2d`` itself (a
``TorchFunctionMode``), not ``nn.Conv2d``: a subclass with its own ``forward`` (timm's ``StdConv2d``,
``Conv2dSame``) or a user's module calling ``F.conv2d`` is pooled too, with the weight it computed, so
gradients reach the real parameters through its own transform. A mode's stack belongs to the thread
that entered it, so a full forward of the same model in another thread meanwhile sees the full
kernels and plain BatchNorm; and nothing on the model is changed (no attribute, hook or flag), so
``torch.compile`` traces the pass (one graph per resolution, no graph break). Nothing is copied into
or out of the model. A shape error inside the model during the pass (a head sized for one
resolution) becomes a :class:`ReducedPassError` naming the layer; :func:`check_reduced_pass` finds
it before training.

BatchNorm modes:
  frozen    reduced batches normalise with their own batch statistics but never update the
            running statistics (the default: they would wreck evaluation)
  shared    plain BatchNorm behaviour
  separate  reduced passes use their own affine parameters and running statistics, registered
            by :func:`attach_separate_bn` (call it before building the optimizer). The model's
            ``state_dict`` then holds the extra ``reduced_*`` entries too. Under DDP each step
            leaves one of the two sets unused: wrap with ``find_unused_parameters=True``.
Both are done by intercepting ``F.batch_norm`` (and the module's ``num_batches_tracked.add_``) too.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ValidationError
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

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
    """Whether this module is a Conv2d a reduced pass pools: kernel at least 2x2 (never a 1x1)."""
    return isinstance(m, nn.Conv2d) and m.kernel_size[0] >= 2 and m.kernel_size[1] >= 2


def pooled_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The Conv2d modules (subclasses included) a reduced pass pools, in registration order. Any other
    module that calls ``F.conv2d`` with a kernel of at least 2x2 is pooled too."""
    return [(name, m) for name, m in model.named_modules() if _is_pooled(m)]


def _geometry(kernel: int, stride: int, dilation: int, padding: Any, dim: int) -> tuple[int, int, int, int, int]:
    """(kernel, stride, dilation, pad_before, pad_after) of an F.conv2d call along dim 0 (H) or 1 (W)."""
    if padding == "valid":
        return kernel, stride, dilation, 0, 0
    if padding == "same":
        total = dilation * (kernel - 1)
        return kernel, stride, dilation, total // 2, total - total // 2
    p = _pair(padding)[dim]
    return kernel, stride, dilation, p, p


class _PooledConv:
    """The pooled convolution that replaces one kind of ``F.conv2d`` call during a reduced pass.

    It holds the call's geometry (kernel, stride, padding, dilation, groups) and the pooling
    settings, so it is cached (see :func:`_pooled_conv`) and reused step after step with the
    padding for each input size already worked out.
    """

    def __init__(self, kernel: tuple[int, int], stride: Any, padding: Any, dilation: Any, groups: int, settings: KernelPooling, extra_at_end: bool):
        # __call__ skips pool_kernel for the linear modes, so its argument checks run here, once.
        _check_pool_args(settings.mode, settings.window, settings.stride, settings.size, settings.scale)
        self.mode, self.window, self.stride, self.scale = settings.mode, settings.window, settings.stride, settings.scale
        self.size = tuple(settings.size) if settings.size is not None else None
        kh, kw = kernel
        self.kernel = pooled_kernel_shape(kh, kw, self.mode, self.window, self.stride, self.size)
        self.conv_stride, self.dilation, self.groups = _pair(stride), _pair(dilation), groups
        self.geometry = tuple(_geometry(kernel[i], self.conv_stride[i], self.dilation[i], padding, i) for i in (0, 1))
        self.extra_at_end = extra_at_end
        # Per input size: (explicit (left, right, top, bottom) pad or None, the conv's own symmetric padding).
        self._pads: dict[tuple[int, int], tuple[tuple[int, int, int, int] | None, tuple[int, int]]] = {}
        self._matrix_args = (kh, kw, self.mode, self.window, self.stride, self.size, self.scale)

    def _pads_for(self, h: int, w: int) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
        out = []
        for n, (k, s, d, pb, pa), kn in zip((h, w), self.geometry, self.kernel, strict=True):
            target = (n + pb + pa - d * (k - 1) - 1) // s + 1
            if target < 1:
                raise ReducedPassError(
                    f"a convolution (kernel {k}, stride {s}) gets a {h}x{w} input in the reduced pass, "
                    f"too small for it even unpooled; use a smaller input downsampling factor or a larger image size"
                )
            # Keep the centre of each output where the original conv put it: the original centre
            # offset pb - d(k-1)/2 equals the new one, before - d(kn-1)/2.
            ideal = pb - d * (k - 1) / 2 + d * (kn - 1) / 2
            out.append(pad_amounts(n, target, kn, s, d, ideal, self.extra_at_end))
        (top, bottom), (left, right) = out
        # F.conv2d pads with zeros (a module with another padding_mode padded its input before calling it)
        if top == bottom >= 0 and left == right >= 0:
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
            x = _pad(x, explicit)
        return F.conv2d(x, w, bias, self.conv_stride, padding, self.dilation, self.groups)


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Pad (left, right, top, bottom) with zeros; negative amounts crop."""
    return F.pad(x, pads)


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


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the reduced-pass BatchNorm set of bn="separate": what evaluation
    uses, loadable into the plain model (``create_model(...).load_state_dict(full_state_dict(m))``)."""
    extras = tuple(f".{extra}" for _, extra in SEPARATE_BN_PARAMS + SEPARATE_BN_BUFFERS)
    return {k: v for k, v in model.state_dict().items() if not k.endswith(extras)}


# Pooled convolutions by (call geometry, settings, padded side): built once, so a step pays no set-up and
# the padding worked out for an input size is kept. Bounded: the least recently used go first. No lock:
# each OrderedDict operation is atomic under the GIL (a race at worst builds one twice), and
# torch.compile cannot trace a lock.
_POOLED: OrderedDict[tuple, _PooledConv] = OrderedDict()
_POOLED_MAX = 1024


def _pooled_conv(kernel, stride, padding, dilation, groups, settings: KernelPooling, extra_at_end: bool) -> _PooledConv:
    if torch.compiler.is_compiling():  # traced once per graph; a cache lookup would guard on the cache's contents
        return _PooledConv(kernel, stride, padding, dilation, groups, settings, extra_at_end)
    pad_key = padding if isinstance(padding, str) else _pair(padding)
    key = (kernel, _pair(stride), pad_key, _pair(dilation), groups, settings.mode, settings.window, settings.stride,
           settings.size, settings.scale, extra_at_end)  # fmt: skip
    conv = _POOLED.get(key)
    if conv is not None:
        _POOLED.move_to_end(key)
        return conv
    conv = _POOLED[key] = _PooledConv(kernel, stride, padding, dilation, groups, settings, extra_at_end)
    while len(_POOLED) > _POOLED_MAX:
        _POOLED.popitem(last=False)
    return conv


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = (None, None, None, 1, 0, 1, 1)
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS = (None, None, None, None, None, False, 0.1, 1e-5)


def _bind(names: tuple[str, ...], defaults: tuple, args: tuple, kwargs: dict) -> list:
    values = list(args) + list(defaults[len(args):])
    for i, name in enumerate(names):
        if name in kwargs:
            values[i] = kwargs[name]
    return values


class _ReducedMode(TorchFunctionMode):
    """The reduced pass as a function mode: ``F.conv2d`` calls with a kernel of at least 2x2 run pooled
    (the padded side alternating between stride-1 convs, in call order, when ``pad_side`` is alternate),
    and ``F.batch_norm`` follows the BatchNorm mode. Entered by :func:`reduced_pass`; per thread."""

    def __init__(self, settings: KernelPooling, bn: str, bns: Sequence[_BatchNorm]):
        super().__init__()
        self.settings = settings
        self.bn = bn
        # bn frozen/separate: the BatchNorms by their running mean (what F.batch_norm is given) and by
        # their batch counter (what the module's forward increments)
        self.by_mean = {id(m.running_mean): m for m in bns if m.running_mean is not None}
        self.by_counter = {id(m.num_batches_tracked): m for m in bns if m.num_batches_tracked is not None}
        self.stride1_convs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            return self._conv(args, kwargs)
        if self.bn != "shared":
            if func is F.batch_norm:
                return self._batch_norm(args, kwargs)
            if func is _COUNT and args and id(args[0]) in self.by_counter:
                m = self.by_counter[id(args[0])]
                if self.bn == "frozen":
                    return args[0]  # reduced batches are not counted: nothing of the running state moves
                return cast(torch.Tensor, m.reduced_num_batches_tracked).add_(*args[1:], **kwargs)  # a buffer (attach_separate_bn)
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
        return _pooled_conv((kh, kw), stride, padding, dilation, groups, self.settings, extra_at_end)(x, weight, bias)

    def _batch_norm(self, args: tuple, kwargs: dict) -> torch.Tensor:
        x, running_mean, running_var, weight, bias, training, momentum, eps = _bind(_BN_ARGS, _BN_DEFAULTS, args, kwargs)
        if self.bn == "frozen":
            if training:  # batch statistics, and the running ones left untouched
                running_mean = running_var = None
        else:  # separate
            m = self.by_mean.get(id(running_mean)) if running_mean is not None else None
            if m is not None:
                running_mean, running_var = m.reduced_running_mean, m.reduced_running_var
                weight, bias = m.reduced_weight, m.reduced_bias
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


_COUNT = torch.Tensor.add_  # how _BatchNorm.forward counts batches
_ACTIVE = threading.local()


@contextmanager
def reduced_pass(
    model: nn.Module,
    kernel: KernelPooling | Mapping[str, Any] | None = None,
    bn: str = "frozen",
) -> Iterator[nn.Module]:
    """Inside the context, ``model(x_small)`` runs the reduced pass (see the module docstring).

    ``kernel``: None (avg, window 2, stride 1, scale sum, pad_side alternate), a
    :class:`~dynds_core.spec.KernelPooling`, or a dict of its fields. ``bn``: frozen | shared | separate.
    The pass applies to every ``F.conv2d`` and ``F.batch_norm`` call made in this thread inside the
    context; the padded side of even kernels alternates in call order from the context's start.
    """
    settings = kernel_settings(kernel)
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(BN_MODES)}: {bn!r}")
    if getattr(_ACTIVE, "mode", None) is not None:
        raise ReducedPassError("already inside a reduced pass in this thread; reduced_pass contexts cannot be nested")
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)] if bn != "shared" else []
    if bn == "separate":
        ddp = torch.nn.parallel.DistributedDataParallel
        if isinstance(model, ddp) and not model.find_unused_parameters:
            raise ReducedPassError(
                "bn='separate' under DistributedDataParallel leaves the full BatchNorm parameters unused in reduced steps "
                "and the reduced ones in full steps: wrap the model with DistributedDataParallel(..., find_unused_parameters=True), "
                "or use bn='frozen'"
            )
        for name, m in model.named_modules():
            if isinstance(m, _BatchNorm) and "reduced_running_mean" not in m._buffers:
                raise ReducedPassError(
                    f"bn='separate' needs the reduced-pass BatchNorm set, which BatchNorm {name!r} lacks: "
                    "call dynds_core.reduced.attach_separate_bn(model) once before building the optimizer"
                )
    mode = _ReducedMode(settings, bn, bns)
    _ACTIVE.mode = mode
    try:
        with mode:
            try:
                yield model
            except RuntimeError as exc:
                explained = _explain(model, exc)
                if explained is exc:
                    raise  # not a shape error: as it was (``raise exc from exc`` would make it its own cause)
                raise explained from exc
            except ReducedPassError as exc:
                layer = _failing_layer(model, exc)
                if layer is None:
                    raise
                raise ReducedPassError(f"layer {layer[0]!r} ({type(layer[1]).__name__}): {exc}") from None
    finally:
        _ACTIVE.mode = None


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
    "full_state_dict",
    "kernel_settings",
    "pooled_convs",
    "reduced_pass",
]
