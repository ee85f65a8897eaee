"""The pooled convolution of a reduced pass: which convolutions are pooled, and the geometry that keeps
a pooled one's output exactly as large, and centred where, the original conv would put it on the
downsampled input.

Every 2-D convolution whose kernel is at least 2x2 convolves with ``pool_kernel(weight)`` instead,
padded (or cropped) per input size so that its output has the original conv's size. A
:class:`PooledConv` is built once per kind of ``F.conv2d`` call and cached.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .op_settings import KernelSettings
from .ops import pad_amounts, pool_kernel, pooled_kernel_shape, pooling_matrix
from .reduced_diagnostics import ReducedPassError


def is_pooled(m: nn.Module) -> bool:
    """Whether this module is a Conv2d a reduced pass pools: kernel at least 2x2 (never a 1x1)."""
    return isinstance(m, nn.Conv2d) and m.kernel_size[0] >= 2 and m.kernel_size[1] >= 2


def pooled_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The Conv2d modules (subclasses included) a reduced pass pools, in registration order. Any other
    module that calls ``F.conv2d`` with a kernel of at least 2x2 is pooled too."""
    return [(name, m) for name, m in model.named_modules() if is_pooled(m)]


def _geometry(kernel: int, stride: int, dilation: int, padding: Any, dim: int) -> tuple[int, int, int, int, int]:
    """(kernel, stride, dilation, pad_before, pad_after) of an F.conv2d call along dim 0 (H) or 1 (W)."""
    if padding == "valid":
        return kernel, stride, dilation, 0, 0
    if padding == "same":
        total = dilation * (kernel - 1)
        return kernel, stride, dilation, total // 2, total - total // 2
    p = _pair(padding)[dim]
    return kernel, stride, dilation, p, p


class PooledConv:
    """The pooled convolution that replaces one kind of ``F.conv2d`` call during a reduced pass.

    It holds the call's geometry (kernel, stride, padding, dilation, groups) and the pooling
    settings, so it is cached (see :func:`get_pooled_conv`) and reused step after step with the
    padding for each input size already worked out.
    """

    def __init__(self, kernel: tuple[int, int], stride: Any, padding: Any, dilation: Any, groups: int, settings: KernelSettings, extra_at_end: bool):
        # __call__ skips pool_kernel for the linear modes; its argument checks ran when the KernelSettings was built.
        self.mode, self.window, self.stride, self.scale = settings.mode, settings.window, settings.stride, settings.scale
        self.size = settings.size
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


# Pooled convolutions by (call geometry, settings, padded side): built once, so a step pays no set-up and
# the padding worked out for an input size is kept. Bounded: the least recently used go first. No lock:
# each OrderedDict operation is atomic under the GIL (a race at worst builds one twice), and
# torch.compile cannot trace a lock.
_POOLED: OrderedDict[tuple, PooledConv] = OrderedDict()
_POOLED_MAX = 1024


def get_pooled_conv(
    kernel: tuple[int, int], stride: Any, padding: Any, dilation: Any, groups: int, settings: KernelSettings, extra_at_end: bool
) -> PooledConv:
    if torch.compiler.is_compiling():  # traced once per graph; a cache lookup would guard on the cache's contents
        return PooledConv(kernel, stride, padding, dilation, groups, settings, extra_at_end)
    pad_key = padding if isinstance(padding, str) else _pair(padding)
    key = (kernel, _pair(stride), pad_key, _pair(dilation), groups, settings.mode, settings.window, settings.stride,
           settings.size, settings.scale, extra_at_end)  # fmt: skip
    conv = _POOLED.get(key)
    if conv is not None:
        _POOLED.move_to_end(key)
        return conv
    conv = _POOLED[key] = PooledConv(kernel, stride, padding, dilation, groups, settings, extra_at_end)
    while len(_POOLED) > _POOLED_MAX:
        _POOLED.popitem(last=False)
    return conv
