"""``load_dataset``: a spec's ``data`` section in, a :class:`Dataset` out (subsets applied)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..spec import DataSpec
from .base import DataError, Dataset, data_root
from .cifar import load_cifar
from .fashion_mnist import load_fashion_mnist
from .imagefolder import load_imagefolder
from .limits import DEFAULT_LIMITS, DataLimits, current_policy, normalize_roots
from .subset import stratified_subset
from .synthetic import make_synthetic

VAL_SUBSET_SEED = 0  # the same validation images for every training seed: accuracies stay comparable


def load_dataset(
    data: DataSpec,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    allowed_roots: Sequence[str | os.PathLike] | None = None,
    limits: DataLimits | None = None,
    decode_workers: int | None = None,
) -> Dataset:
    """Load the data set a spec names, then take its seeded, stratified subsets.

    >>> ds = load_dataset(DataSpec(dataset="synthetic", synthetic_size=64), seed=0)
    >>> ds.train_x.dtype, ds.train_x.shape, ds.val_x.shape[0]
    (torch.uint8, torch.Size([64, 3, 32, 32]), 16)

    Raises :class:`DataError` (a ValueError) for a missing or malformed data set, saying where it
    looked and what to provide.

    ``allowed_roots``: every file read (default roots included, symlinks resolved) must lie inside one
    of them; ``limits``: the :class:`DataLimits` of this load. Either left None takes what an enclosing
    :func:`data_policy` set, else no restriction and the default limits. ``decode_workers``: processes
    that decode an image folder (None: torch's thread setting, at most the CPUs this process may use).
    """
    ctx_roots, ctx_limits = current_policy()
    roots = normalize_roots(allowed_roots) if allowed_roots is not None else ctx_roots
    limits = limits or ctx_limits or DEFAULT_LIMITS
    root = Path(data.root).expanduser() if data.root else None
    if data.dataset == "synthetic":
        ds = make_synthetic(data.synthetic_size, image_size=data.image_size, num_classes=data.num_classes, max_bytes=limits.max_total_bytes)
    elif data.dataset in ("cifar10", "cifar100"):
        ds = load_cifar(data.dataset, data_root(data.root), download=data.download, allowed_roots=roots, limits=limits)
    elif data.dataset == "imagefolder":
        ds = load_imagefolder(root, cache_dir=cache_dir, allowed_roots=roots, limits=limits, decode_workers=decode_workers)
    elif data.dataset == "fashion-mnist":
        ds = load_fashion_mnist(root, allowed_roots=roots, limits=limits)
    else:  # the spec's Literal makes this unreachable unless DATASETS grows without a loader
        raise DataError(f"no loader for dataset {data.dataset!r}")
    if data.train_subset is not None:
        ds.train_x, ds.train_y = _subset(ds, "train", data.train_subset, seed)
    if data.val_subset is not None:
        ds.val_x, ds.val_y = _subset(ds, "val", data.val_subset, VAL_SUBSET_SEED)
    return ds


def _subset(ds: Dataset, split: str, size: int, seed: int):
    x, y = (ds.train_x, ds.train_y) if split == "train" else (ds.val_x, ds.val_y)
    if size > len(y):
        raise DataError(
            f"data.{split}_subset is {size}, but {ds.name} has only {len(y)} {split} images "
            f"(from {ds.source}); lower data.{split}_subset to at most {len(y)} or remove it."
        )
    if size == len(y):
        return x, y
    index = stratified_subset(y, size, seed)
    ds.notes.append(f"{split}_subset: {size} of {len(y)} (stratified, seed {seed})")
    return x[index], y[index]
