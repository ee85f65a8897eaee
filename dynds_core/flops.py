"""FLOPs of one training step (forward + backward), full or reduced, counted by PyTorch itself.

    step_flops(model, (128, 3, 32, 32), reduced=False)             # ~31.2e9 for CIFAR ResNet-20
    step_flops(model, (128, 3, 32, 32), reduced=True, kernel=None)  # input /2, 3x3 -> 2x2 kernels
    estimate_spec(spec)    # what the submit form shows, without loading any data or allocating the model

Counting uses ``torch.utils.flop_counter.FlopCounterMode`` on a copy of the model (so BatchNorm
statistics and gradients of the real model are untouched). FLOPs of convolutions and matrix
products are linear in the batch size, so we count on ``count_batch`` samples of the real
(C, H, W) and scale to the real batch: exact, and ~60x cheaper at batch 128. Results are
cached by (model architecture, shape, settings), in a bounded cache.

``estimate_spec`` counts on the ``meta`` device: the model and the batch have shapes but no storage,
so a spec's cost is predicted without allocating it (a ResNet-110 at 512x512 costs ~1 s of Python and
no tensor memory), under a time limit (``EstimateTimeout``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .op_settings import KernelArg, kernel_settings, relative_kernel
from .schedules import make_schedule
from .spec import RELATIVE_KINDS, JobSpec

CACHE_SIZE = 512  # counts kept (least recently used out): a server sees many settings over its life
_CACHE: OrderedDict[tuple, float] = OrderedDict()
_LOCK = threading.Lock()
ESTIMATE_TIMEOUT_S = 10.0  # estimate_spec's default time limit
# Samples estimate_spec counts on: one made BatchNorm see a single value per channel wherever a map is 1x1
# (a torchvision ResNet's last stage at 32x32) and raise in training mode; a job's batches hold >= 2.
COUNT_BATCH = 2
# A reduced pass needs its first feature map at least this wide: on a 1x1 map every kernel tap but the
# centre multiplies padding, so the reduced step no longer trains the kernels it pools (see reduced_input_problem).
MIN_FIRST_MAP_SIDE = 2


class EstimateTimeout(RuntimeError):
    """Counting took longer than its time limit."""


class _Watch(TorchDispatchMode):
    """Sums the bytes of every tensor an op returns (forward: the activations a step creates) and
    stops the count past ``deadline`` (time.monotonic())."""

    def __init__(self, deadline: float | None):
        super().__init__()
        self.deadline = deadline
        self.output_bytes = 0
        self.counting = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise EstimateTimeout("counting the FLOPs took longer than its time limit")
        out = func(*args, **(kwargs or {}))
        if self.counting:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.output_bytes += t.numel() * t.element_size()
        return out


# (C, H, W) and training-set size fixed by each data set's format, so estimates need no data on disk.
# An image folder's come from the folder itself (:func:`spec_input_shape`) or from the caller.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 50_000),
    "cifar100": ((3, 32, 32), 50_000),
    "fashion-mnist": ((1, 28, 28), 60_000),
}


def _model_signature(model: nn.Module) -> str:
    """Architecture fingerprint: module types and parameter shapes (not values)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, m in model.named_modules():
        h.update(f"{name}:{type(m).__name__};".encode())
        if isinstance(m, nn.Conv2d):
            h.update(f"{m.stride}{m.padding}{m.dilation}{m.groups};".encode())
    for name, p in model.named_parameters():
        h.update(f"{name}{tuple(p.shape)};".encode())
    return h.hexdigest()


def _kernel_key(kernel: KernelArg) -> str:
    # The settings themselves, however given (None, a dict, a spec section): equal settings share a count.
    return json.dumps(dataclasses.asdict(kernel_settings(kernel)), sort_keys=True)


def step_flops(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    *,
    reduced: bool,
    kernel: KernelArg = None,
    bn: str = "frozen",
    input_factor: int = 2,
    input_mode: str = "avg",
    device: str | torch.device | None = None,
    count_batch: int = 2,
    timeout_s: float | None = None,
    input_size: tuple[int, int] | None = None,
) -> float:
    """Forward + backward FLOPs of one training step on a batch of ``input_shape`` (N, C, H, W).

    ``reduced``: the reduced step (input downsampled by ``input_factor``, kernels pooled per ``kernel``);
    ``input_size`` (H, W): the input resized to it instead (the relatives' steps at any size).
    ``device``: where to count (default: the model's); FLOPs do not depend on it, only the counting time
    ("meta": no tensor memory at all). ``timeout_s``: raise :class:`EstimateTimeout` past it.
    """
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be a positive (N, C, H, W): {tuple(input_shape)!r}")
    n, c, h, w = (int(v) for v in input_shape)
    # bn and device never change FLOPs, so they stay out of the key (the baseline's count is reused).
    size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
    key = (_model_signature(model), (c, h, w), reduced) + ((_kernel_key(kernel), input_factor, input_mode, size) if reduced else ())
    per_sample = _cached(key)
    if per_sample is None:
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        per_sample, _ = _count(model, (c, h, w), reduced, kernel, bn, input_factor, input_mode, device, max(1, count_batch), deadline, size)
        _store(key, per_sample)
    return per_sample * n


def _cached(key: tuple) -> Any:
    with _LOCK:
        value = _CACHE.get(key)
        if value is not None:
            _CACHE.move_to_end(key)
        return value


def _store(key: tuple, value: Any) -> None:
    with _LOCK:
        _CACHE[key] = value
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)


def _count(model, chw, reduced, kernel, bn, input_factor, input_mode, device, count_batch, deadline=None, input_size=None) -> tuple[float, int]:
    """(FLOPs per sample of a forward + backward step, bytes per sample the forward pass's ops return)."""
    from .ops import downsample_input, resize_input
    from .reduced import attach_separate_bn, reduced_pass

    ref = next(iter(model.parameters()), None)
    if device is None:
        device = ref.device if ref is not None else "cpu"
    m = copy.deepcopy(model).to(device).train()
    if reduced and bn == "separate":
        attach_separate_bn(m)  # a fresh model (estimate_spec's) lacks the reduced-pass BN set; idempotent
    dtype = ref.dtype if ref is not None else torch.float32
    # Values never change FLOPs; zeros keep the global RNG (and so a run's random stream) untouched.
    x = torch.zeros(count_batch, *chw, device=device, dtype=dtype)
    if reduced:
        x = downsample_input(x, input_factor, input_mode) if input_size is None else resize_input(x, input_size, input_mode)
    watch = _Watch(deadline)
    with FlopCounterMode(display=False) as counter, watch:
        if reduced:
            with reduced_pass(m, kernel, bn):
                out = m(x)
        else:
            out = m(x)
        watch.counting = False
        out.float().sum().backward()
    return counter.get_total_flops() / count_batch, watch.output_bytes // count_batch


def spec_input_shape(
    spec: JobSpec,
    *,
    data_shape: tuple[tuple[int, int, int], int] | None = None,
    timeout_s: float | None = None,
) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and training-set size of the spec's data set (after ``train_subset``), without decoding it.

    Synthetic data: from the spec; CIFAR and Fashion-MNIST: their format's; an image folder: ``data_shape``
    ((C, H, W), training images) when the caller knows it, else from ``data.root`` itself (its decode
    cache, or its images counted and one image's header read: see ``probe_imagefolder``), within
    ``data_policy``'s allowed roots. Raises DataError (a ValueError) when that data set cannot be read.
    """
    chw, n_train, _n_val = _data_shape(spec, data_shape, None if timeout_s is None else time.monotonic() + timeout_s)
    return chw, n_train


def _data_shape(
    spec: JobSpec, data_shape: tuple[tuple[int, int, int], int] | None, deadline: float | None
) -> tuple[tuple[int, int, int], int, int | None]:
    d = spec.data
    n_val = None
    if d.dataset == "synthetic":
        chw, n_train = (3, d.image_size, d.image_size), d.synthetic_size
    elif data_shape is not None:
        c, h, w = data_shape[0]
        chw, n_train = (int(c), int(h), int(w)), int(data_shape[1])
    elif d.dataset == "imagefolder":
        from .data.imagefolder import probe_imagefolder
        from .data.limits import DEFAULT_LIMITS, current_policy

        roots, limits = current_policy()
        try:
            chw, n_train, n_val = probe_imagefolder(d.root, allowed_roots=roots, limits=limits or DEFAULT_LIMITS, deadline=deadline)
        except TimeoutError as exc:
            raise EstimateTimeout(str(exc)) from None
    else:
        chw, n_train = DATASET_SHAPES[d.dataset]
    if d.train_subset is not None:
        n_train = min(n_train, d.train_subset)
    return chw, n_train, n_val


@functools.lru_cache(maxsize=16)
def _meta_model(arch: str, num_classes: int, in_channels: int, small_input: bool) -> nn.Module:
    from .models import create_model

    # Only shapes matter here: built on the meta device (no storage). The RNG is forked all the same so
    # that an estimate can never shift the caller's random stream.
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return create_model(arch, num_classes=num_classes, in_channels=in_channels, small_input=small_input)


def estimate_spec(
    spec: JobSpec, *, timeout_s: float | None = ESTIMATE_TIMEOUT_S, data_shape: tuple[tuple[int, int, int], int] | None = None
) -> dict[str, float]:
    """Predicted FLOPs and memory of a job's DynDS run, without loading data or allocating the model
    (counted on the meta device), within ``timeout_s`` seconds (:class:`EstimateTimeout` past it).

    Returns ``flops_full_step``, ``flops_reduced_step`` (per training step, forward + backward),
    ``reduced_fraction`` (the schedule's expected share of reduced steps), ``predicted_flop_saving``
    (1 - FLOPs_dynds / FLOPs_baseline), and bytes: ``activation_bytes_per_step`` (what a full step's
    forward ops create, float32), ``param_bytes`` (one model's weights), ``data_bytes`` (the data set as
    uint8, train and validation) and ``predicted_memory_bytes`` (their sum with gradients and optimizer
    state, two models under lockstep pairing): an upper-bound estimate, not a measurement.

    ``data_shape``: ((C, H, W), training images) of the data set when the caller knows them; else as
    :func:`spec_input_shape` finds them (an image folder is probed on disk: DataError when it cannot be read).
    """
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    (c, h, w), n_train, n_val_found = _data_shape(spec, data_shape, deadline)
    num_classes = {"cifar10": 10, "cifar100": 100, "fashion-mnist": 10}.get(spec.data.dataset, spec.data.num_classes)
    model = _meta_model(spec.model.arch, num_classes, c, spec.model.small_input)
    bs = spec.train.batch_size
    full_key = ("estimate-full", _model_signature(model), (c, h, w))
    counted = _cached(full_key)
    if counted is None:
        counted = _count(model, (c, h, w), False, None, "frozen", 2, "avg", "meta", COUNT_BATCH, deadline)
        _store(full_key, counted)
    full_per_sample, act_per_sample = counted
    full = full_per_sample * bs
    steps_per_epoch = max(1, n_train // spec.train.batch_size)
    schedule = make_schedule(spec.dynds.schedule, spec.train.epochs * steps_per_epoch, spec.train.seed, image_size=(h, w))
    frac = schedule.expected_reduced_fraction()
    # A relative's reduced steps come in several sizes: their FLOPs, weighted by each size's share of them.
    shares: dict[tuple[int, int] | None, float] = {size: p for size, p in schedule.size_shares().items()} or {None: 1.0}
    reduced = 0.0
    for size, share in shares.items():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        reduced += share * step_flops(
            model,
            (bs, c, h, w),
            reduced=True,
            kernel=spec.dynds.kernel if size is None else relative_kernel(spec.dynds, (h, w), size),
            bn=spec.dynds.bn,
            input_factor=spec.dynds.input.factor,
            input_mode=spec.dynds.input.mode,
            device="meta",
            count_batch=COUNT_BATCH,
            timeout_s=left,
            input_size=size,
        )
    reduced /= sum(shares.values())
    param_bytes = sum(p.numel() for p in model.parameters()) * 4
    state = 2 if spec.train.optimizer == "adamw" else 1  # momentum buffer / Adam's two moments
    models = 2 if spec.baseline and spec.train.pairing == "lockstep" else 1
    n_val = spec.data.val_subset or n_val_found or max(n_train // 4, 1)
    data_bytes = (n_train + n_val) * c * h * w
    activation_bytes = act_per_sample * bs
    return {
        "flops_full_step": full,
        "flops_reduced_step": reduced,
        "reduced_fraction": frac,
        "predicted_flop_saving": frac * (1.0 - reduced / full) if full > 0 else 0.0,
        "activation_bytes_per_step": float(activation_bytes),
        "param_bytes": float(param_bytes),
        "data_bytes": float(data_bytes),
        "predicted_memory_bytes": float(data_bytes + models * param_bytes * (2 + state) + activation_bytes),
    }


class _FirstMap(TorchFunctionMode):
    """Stops a forward at its first ``F.batch_norm`` and keeps that input's (H, W): per call and per
    thread, so the shared meta model is never hooked."""

    def __init__(self):
        super().__init__()
        self.hw: tuple[int, int] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.batch_norm:
            x = args[0] if args else (kwargs or {})["input"]
            self.hw = (int(x.shape[-2]), int(x.shape[-1]))
            raise _Stop
        return func(*args, **(kwargs or {}))


class _Stop(Exception):
    pass


@functools.lru_cache(maxsize=512)
def first_map_side(arch: str, in_channels: int, small_input: bool, side: int) -> int:
    """The smaller side of the first map ``arch`` normalizes (its stem's output) on a side x side input,
    from a forward on the meta device. A reduced pass keeps each conv's output size on the downsampled
    input (dynds_core.pooled_conv), so this is the reduced pass's first map too.

    >>> first_map_side("resnet20", 3, False, 2), first_map_side("resnet18", 3, False, 2)
    (2, 1)
    """
    model = _meta_model(arch, 10, in_channels, small_input)
    watch = _FirstMap()
    try:
        with torch.no_grad(), watch:
            model(torch.zeros(1, in_channels, side, side, device="meta"))
    except _Stop:
        pass
    if watch.hw is None:
        raise ValueError(f"{arch} has no BatchNorm: its first feature map cannot be found")
    return min(watch.hw)


def smallest_reduced_side(arch: str, in_channels: int = 3, small_input: bool = False) -> int:
    """The smallest side of a reduced input whose first feature map is at least ``MIN_FIRST_MAP_SIDE``.

    >>> smallest_reduced_side("resnet20"), smallest_reduced_side("resnet18"), smallest_reduced_side("resnet18", small_input=True)
    (2, 3, 2)
    """
    side = 1
    while first_map_side(arch, in_channels, small_input, side) < MIN_FIRST_MAP_SIDE:
        side += 1
    return side


def reduced_input_problem(spec: JobSpec, chw: tuple[int, int, int]) -> str | None:
    """Why the spec's reduced input (its (C, H, W) images downsampled by ``dynds.input.factor``) is too small
    for its network, naming the largest factor and the smallest image size that work; or None.

    Measured on every arch: training never fails on small maps (BatchNorm needs two values per channel and a
    batch holds >= 2 images), but on a first map of 1x1 the reduced step trains on one pixel per image.
    """
    if spec.dynds.schedule.kind in RELATIVE_KINDS:
        return None  # the relatives' sizes are not the factor's: relative_input_problem
    c, h, w = chw
    factor, arch = spec.dynds.input.factor, spec.model.arch
    need = smallest_reduced_side(arch, c, spec.model.small_input)
    if min(h, w) // factor >= need:
        return None
    largest = max((f for f in range(2, factor) if min(h, w) // f >= need), default=None)
    fix = f"use dynds.input.factor {largest} or less" if largest is not None else "no dynds.input.factor works at this size"
    if spec.data.dataset == "synthetic":
        fix += f", or data.image_size {max(need * factor, 8)} or more"
    return (
        f"the reduced input is {h // factor}x{w // factor} ({h}x{w} images / dynds.input.factor {factor}): {arch}'s first "
        f"layer would see a {first_map_side(arch, c, spec.model.small_input, min(h, w) // factor)}-pixel-wide map, where every "
        f"kernel tap but the centre multiplies padding; it needs a reduced input of at least {need}x{need}: {fix}"
    )


def relative_input_problem(spec: JobSpec, chw: tuple[int, int, int], smallest: tuple[int, int]) -> tuple[str, str] | None:
    """(key path, why) when a relative's smallest input size (progressive's initial_scale, mixsize's
    smallest scale, of (C, H, W) images) is too small for its network (as :func:`reduced_input_problem`); or None."""
    c, h, w = chw
    arch, kind = spec.model.arch, spec.dynds.schedule.kind
    need = smallest_reduced_side(arch, c, spec.model.small_input)
    if min(smallest) >= need:
        return None
    key = "dynds.schedule.initial_scale" if kind == "progressive" else "dynds.schedule.scales"
    return key, (
        f"the smallest {kind} input is {smallest[0]}x{smallest[1]} (of {h}x{w} images): {arch} needs a reduced input of at "
        f"least {need}x{need} (its first map would be too small to train its kernels); raise {key.rsplit('.', 1)[1]}"
    )
