"""What every data set loader returns, the one error they raise, and where data and caches live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DataError  # noqa: F401  (re-exported: loaders import it from here)

DEFAULT_DATA_ROOT = Path("~/.cache/dynds/data")


@dataclass
class Dataset:
    """A whole data set in memory as uint8 images (N, C, H, W) and int64 labels (N,).

    ``mean`` and ``std`` are per channel in 0..1 units, taken on the full training set (before any
    ``train_subset``), so every seed and subset normalizes alike.

    >>> ds = load_dataset(DataSpec(dataset="synthetic", synthetic_size=64))  # doctest: +SKIP
    >>> ds.train_x.shape, ds.num_classes, ds.image_size
    (torch.Size([64, 3, 32, 32]), 10, (32, 32))
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""  # where the images came from (a path, or "generated")
    notes: list[str] = field(default_factory=list)  # e.g. "train_subset: 10000 of 50000 (stratified, seed 0)"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.train_x.shape)}, val={tuple(self.val_x.shape)}, "
            f"classes={self.num_classes}, source={self.source!r})"
        )


def channel_stats(x: torch.Tensor | np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (0..1 units) of uint8 images (N, C, H, W).

    Counts the 256 pixel values per channel instead of summing floats: exact, and no float copy
    of a 150 MB data set.
    """
    a = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(f"channel_stats expects uint8 images (N, C, H, W), got {a.dtype} {a.shape}")
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(a.shape[1]):
        counts = np.zeros(256, dtype=np.float64)
        for start in range(0, len(a), 4096):
            counts += np.bincount(a[start : start + 4096, c].reshape(-1), minlength=256)
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        var = float((counts * (values - mean) ** 2).sum() / n)
        means.append(round(mean, 6))
        stds.append(round(var**0.5, 6) or 1.0)  # a constant channel would divide by zero
    return tuple(means), tuple(stds)


def data_root(root: str | None) -> Path:
    """The folder a spec's ``data.root`` names, or the default data folder."""
    return Path(root).expanduser() if root else DEFAULT_DATA_ROOT.expanduser()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where decoded arrays are cached: ``cache_dir``, else ``$DYNDS_CACHE_DIR``, else ``~/.cache/dynds``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("DYNDS_CACHE_DIR")
    return Path(env).expanduser() if env else Path("~/.cache/dynds").expanduser()
