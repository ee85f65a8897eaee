"""The two pure operations of a reduced pass: downsample the input, pool the kernels.

    x_small = downsample_input(x, factor=2)            # (N, C, 32, 32) -> (N, C, 16, 16)
    w_small = pool_kernel(conv.weight)                  # (O, I, 3, 3) -> (O, I, 2, 2), differentiable

The linear kernel modes (avg, resize) are one matrix product with a small pooling matrix ``P``
(``w_r = w.flatten(2) @ P.T``), built once per shape and setting and cached: no per-step
construction, a single autograd node, and the ``sum`` scaling exact by construction.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# The op layer's choices and its check of a kernel pooling setting, defined torch-free beside the settings
# (the spec declares its fields with them); named here too, where the ops that take them are.
from .op_settings import INPUT_MODES as INPUT_MODES
from .op_settings import KERNEL_MODES as KERNEL_MODES
from .op_settings import KERNEL_SCALES as KERNEL_SCALES
from .op_settings import RESIZE_NEEDS_SIZE
from .op_settings import check_kernel_pooling as check_kernel_pooling


def downsample_input(x: torch.Tensor, factor: int = 2, mode: str = "avg") -> torch.Tensor:
    """Shrink a batch of images (N, C, H, W) to (N, C, H // factor, W // factor).

    >>> downsample_input(torch.ones(2, 3, 32, 32), 2).shape
    torch.Size([2, 3, 16, 16])
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1: {factor!r}")
    if mode not in INPUT_MODES:
        raise ValueError(f"input downsampling mode must be one of {', '.join(INPUT_MODES)}: {mode!r}")
    if x.dim() != 4:
        raise ValueError(f"downsample_input expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if factor == 1:
        return x
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    if h < 1 or w < 1:
        raise ValueError(f"factor {factor} is too large for a {x.shape[-2]}x{x.shape[-1]} input")
    if mode == "avg":
        # Area average over factor x factor blocks; a remainder row/column is dropped (floor size).
        return F.avg_pool2d(x, factor)
    return resize_input(x, (h, w), mode)


def resize_input(x: torch.Tensor, size: Sequence[int], mode: str = "avg") -> torch.Tensor:
    """Shrink a batch of images (N, C, H, W) to any (N, C, h, w) with h <= H, w <= W: the input half of a
    reduced pass at any size (progressive resizing, Mix&Match), not only at integer factors.

    ``avg`` is an area average (adaptive average pooling: each output pixel averages the input pixels it
    covers; an exact block average at integer ratios, as :func:`downsample_input`), ``bilinear`` is
    antialiased, ``nearest`` samples. The data's own size returns ``x``.

    >>> resize_input(torch.ones(2, 3, 32, 32), (20, 20)).shape
    torch.Size([2, 3, 20, 20])
    """
    if mode not in INPUT_MODES:
        raise ValueError(f"input downsampling mode must be one of {', '.join(INPUT_MODES)}: {mode!r}")
    if x.dim() != 4:
        raise ValueError(f"resize_input expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    h, w = (int(v) for v in size)
    if (h, w) == tuple(x.shape[-2:]):
        return x
    if not (1 <= h <= x.shape[-2] and 1 <= w <= x.shape[-1]):
        raise ValueError(f"resize_input shrinks only: {x.shape[-2]}x{x.shape[-1]} cannot become {h}x{w}")
    if mode == "avg":
        if x.shape[-2] % h == 0 and x.shape[-1] % w == 0:
            return F.avg_pool2d(x, (x.shape[-2] // h, x.shape[-1] // w))  # the same values, a faster kernel
        return F.adaptive_avg_pool2d(x, (h, w))
    if mode == "bilinear":
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(x, size=(h, w), mode="nearest")


def pooled_size(k: int, window: int = 2, stride: int = 1) -> int:
    """Length of a kernel dimension of size ``k`` after avg/max pooling (ceil mode, no padding)."""
    n = -(-(k - window) // stride) + 1
    if (n - 1) * stride >= k:  # PyTorch's ceil-mode rule: the last window must start inside the kernel
        n -= 1
    return n


def _pool_matrix_1d(k: int, window: int, stride: int) -> torch.Tensor:
    """(k', k) matrix whose row j averages the taps of window j (partial last window: its own taps)."""
    n = pooled_size(k, window, stride)
    m = torch.zeros(n, k, dtype=torch.float64)
    for j in range(n):
        start = j * stride
        stop = min(start + window, k)
        m[j, start:stop] = 1.0 / (stop - start)
    return m


# Bounded (least recently used out): a model has a handful of kernel shapes, but a long-lived server
# counting FLOPs for many settings, dtypes and devices must not grow without limit.
MATRIX_CACHE_SIZE = 256
# No lock: each OrderedDict operation is atomic under the GIL (a race at worst builds a matrix twice),
# and torch.compile cannot trace a lock inside the reduced pass.
_MATRIX_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _build_pooling_matrix(
    kh: int, kw: int, mode: str, window: int, stride: int, size: Sequence[int] | None, scale: str, *, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    if mode == "avg":
        p = torch.kron(_pool_matrix_1d(kh, window, stride), _pool_matrix_1d(kw, window, stride))
    elif mode == "resize":
        assert size is not None  # check_kernel_pooling refused resize without a size
        th, tw = size
        # Resize each one-hot tap: column t of P is where tap t's weight lands. Antialiasing makes
        # a shrink average over every tap instead of sampling a few (7x7 -> 2x2 would skip taps).
        basis = torch.eye(kh * kw, dtype=torch.float64).view(kh * kw, 1, kh, kw)
        resized = F.interpolate(basis, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        p = resized.view(kh * kw, th * tw).T.contiguous()
    else:
        raise ValueError(f"kernel mode {mode!r} has no pooling matrix; linear modes are avg and resize")
    if scale == "sum":
        cols = p.sum(0, keepdim=True)
        # A guard for settings that skip taps (already refused by check_kernel_pooling); under torch.compile a
        # tensor's truth value would break the graph, so the compiled trace relies on that check.
        if not torch.compiler.is_compiling() and bool((cols <= 0).any()):
            raise ValueError(f"kernel pooling {mode} (window {window}, stride {stride}) leaves some taps of a {kh}x{kw} kernel uncovered")
        p = p / cols
    p = p.to(dtype=dtype, device=device)
    return p


def pooling_matrix(
    kh: int,
    kw: int,
    mode: str = "avg",
    window: int = 2,
    stride: int = 1,
    size: Sequence[int] | None = None,
    scale: str = "sum",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The (k'h * k'w, kh * kw) matrix P of a linear kernel mode: ``w_r = w.flatten(2) @ P.T``.

    With ``scale="sum"`` P's columns sum to 1: each original tap's mass is spread over the pooled
    taps whose windows contain it, so every filter's tap sum (its response to a flat input) is kept.
    Cached per (shape, setting, dtype, device).
    """
    if torch.compiler.is_compiling():
        # Built inside the traced graph: a lookup in the cache would guard on its contents, and the
        # first trace's miss would recompile the model once the entry exists.
        return _build_pooling_matrix(kh, kw, mode, window, stride, size, scale, dtype=dtype, device=device)
    key = (kh, kw, mode, window, stride, tuple(size) if size is not None else None, scale, dtype, str(device))
    p = _MATRIX_CACHE.get(key)
    if p is not None:
        _MATRIX_CACHE.move_to_end(key)
        return p
    p = _build_pooling_matrix(kh, kw, mode, window, stride, size, scale, dtype=dtype, device=device)
    _MATRIX_CACHE[key] = p
    while len(_MATRIX_CACHE) > MATRIX_CACHE_SIZE:
        _MATRIX_CACHE.popitem(last=False)
    return p


def pooled_kernel_shape(kh: int, kw: int, mode: str = "avg", window: int = 2, stride: int = 1, size: Sequence[int] | None = None) -> tuple[int, int]:
    """Spatial size of a (kh, kw) kernel after :func:`pool_kernel` (unchanged when it is not pooled)."""
    if mode == "none" or kh < 2 or kw < 2:
        return kh, kw
    if mode == "resize":
        if size is None:
            raise ValueError(RESIZE_NEEDS_SIZE)
        return int(size[0]), int(size[1])
    for k in (kh, kw):
        if window > k:
            raise ValueError(f"kernel pooling window {window} is larger than a {kh}x{kw} kernel; use a window of at most {min(kh, kw)}")
    return pooled_size(kh, window, stride), pooled_size(kw, window, stride)


def pool_kernel(
    weight: torch.Tensor,
    mode: str = "avg",
    window: int = 2,
    stride: int = 1,
    size: Sequence[int] | None = None,
    scale: str = "sum",
) -> torch.Tensor:
    """Spatially pool conv filters (O, I, kh, kw); differentiable, so gradients reach ``weight``.

    >>> pool_kernel(torch.ones(8, 4, 3, 3)).shape          # avg, window 2, stride 1
    torch.Size([8, 4, 2, 2])
    >>> pool_kernel(torch.ones(8, 4, 3, 3)).sum().item()   # scale="sum": tap sums are kept
    288.0

    Kernels smaller than 2x2 in either dimension (1x1 convs) and mode ``none`` return ``weight``.
    """
    check_kernel_pooling(mode, window, stride, size, scale)
    if weight.dim() != 4:
        raise ValueError(f"pool_kernel expects a conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    o, i, kh, kw = weight.shape
    if mode == "none" or kh < 2 or kw < 2:
        return weight
    th, tw = pooled_kernel_shape(kh, kw, mode, window, stride, size)
    if mode == "max":
        flat = weight.reshape(o * i, 1, kh, kw)
        return F.max_pool2d(flat, window, stride, ceil_mode=True).view(o, i, th, tw)
    p = pooling_matrix(kh, kw, mode, window, stride, size, scale, dtype=weight.dtype, device=weight.device)
    return (weight.flatten(2) @ p.T).view(o, i, th, tw)


def pad_amounts(
    in_size: int,
    out_size: int,
    kernel: int,
    stride: int,
    dilation: int,
    ideal_before: float,
    extra_at_end: bool,
) -> tuple[int, int]:
    """Padding (before, after) so that a conv with ``kernel`` gives exactly ``out_size`` outputs.

    ``ideal_before`` is the padding before the first tap that would keep the output centred where
    the original conv's was. For an even kernel it is a half-integer: ``extra_at_end`` rounds it
    down (the extra pad goes to the end), otherwise up. A negative amount means crop.

    >>> pad_amounts(16, 16, kernel=2, stride=1, dilation=1, ideal_before=0.5, extra_at_end=True)
    (0, 1)
    """
    total = (out_size - 1) * stride + dilation * (kernel - 1) + 1 - in_size
    before = math.floor(ideal_before) if extra_at_end else math.ceil(ideal_before)
    return before, total - before
