"""A synthetic, learnable image data set for tests and quick runs: generated, never downloaded.

Each class has a smooth colour pattern (mirror-symmetric, so horizontal flips keep it); an image is
its class pattern plus a smooth per-image nuisance and pixel noise. Low frequencies survive input
downsampling, so both full and reduced batches can learn it. The generator is fixed: the same
settings give the same images whatever the training seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DataError, Dataset, channel_stats

GENERATOR_SEED = 1910_06548  # fixed on purpose: the data must not change with the training seed
MAX_BYTES = 2 * 1024**3
_CHUNK = 2048  # images generated at a time (bounds the float32 working memory)


def make_synthetic(size: int, image_size: int = 32, num_classes: int = 10, *, max_bytes: int | None = None) -> Dataset:
    """``size`` training images and ``size // 4`` validation images, balanced over ``num_classes``.

    >>> ds = make_synthetic(64, image_size=16, num_classes=4)
    >>> ds.train_x.shape, ds.val_x.shape
    (torch.Size([64, 3, 16, 16]), torch.Size([16, 3, 16, 16]))
    """
    val_size = max(size // 4, 1)
    total = size + val_size
    nbytes = total * 3 * image_size * image_size
    limit = MAX_BYTES if max_bytes is None else min(max_bytes, MAX_BYTES)
    if nbytes > limit:
        raise DataError(
            f"the synthetic data set asked for ({total} images of 3x{image_size}x{image_size}) would take "
            f"{nbytes / 1024**3:.1f} GiB of memory (limit {limit / 1024**3:.3g} GiB); "
            "lower data.synthetic_size or data.image_size."
        )
    g = torch.Generator().manual_seed(GENERATOR_SEED)
    protos = torch.randn(num_classes, 3, 4, 4, generator=g)
    protos = (protos + protos.flip(-1)) / 2  # mirror-symmetric: a flipped image keeps its class pattern
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bicubic", align_corners=False)
    protos = protos / protos.flatten(1).std(dim=1).view(-1, 1, 1, 1)  # every class equally strong

    def labels(n: int) -> torch.Tensor:
        y = torch.arange(n) % num_classes
        return y[torch.randperm(n, generator=g)]

    def images(y: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(y), 3, image_size, image_size, dtype=torch.uint8)
        for start in range(0, len(y), _CHUNK):
            yc = y[start : start + _CHUNK]
            nuisance = torch.randn(len(yc), 3, 2, 2, generator=g)
            nuisance = F.interpolate(nuisance, size=(image_size, image_size), mode="bilinear", align_corners=False)
            noise = torch.randn(len(yc), 3, image_size, image_size, generator=g)
            x = 128 + 40 * protos[yc] + 30 * nuisance + 30 * noise
            out[start : start + len(yc)] = x.round_().clamp_(0, 255).to(torch.uint8)
        return out

    train_y = labels(size)
    train_x = images(train_y)
    val_y = labels(val_size)
    val_x = images(val_y)
    mean, std = channel_stats(train_x)
    return Dataset(
        name="synthetic",
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        classes=[f"class{k}" for k in range(num_classes)],
        mean=mean,
        std=std,
        source="generated",
    )
