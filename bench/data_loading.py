"""Data loading cost: producing a training batch, decoding the shared CIFAR-10 archive, loading its cache.

Claim: an augmented batch of 128 32x32 images (random crop with 4-pixel padding + flip, normalized
float32) costs a small fraction of a ResNet-20 training step (~380 ms on these CPUs, METHOD.md),
so loading is never the bottleneck of a CPU epoch.
Conditions: CPU, 1 torch thread, data set of 50,000 uint8 images held in memory (as BatchLoader does).
Measured (2-core machine, load average ~9 from other work): augmented batch 1.4-1.9 ms NCHW, 2.3 ms
channels_last (<1% of a step); archive decode + cache 33 s (about 20 s when the machine is quiet),
cached load 0.15-0.8 s.

    .venv/bin/python bench/data_loading.py            # batch cost only (seconds)
    .venv/bin/python bench/data_loading.py --decode   # also decode the archive into a fresh cache (~20 s)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynds_core.data import BatchLoader, load_dataset
from dynds_core.spec import DataSpec

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"


def batch_cost_ms(x: torch.Tensor, y: torch.Tensor, *, batches: int = 100, **options) -> float:
    """Median milliseconds to produce one batch (the loader's epoch iterator, warm)."""
    loader = BatchLoader(x, y, batch_size=128, device="cpu", mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), seed=0, **options)
    it = loader.epoch(0)
    next(it)  # the epoch's permutation and crop draws happen here, once per epoch
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def epoch_setup_ms(x: torch.Tensor, y: torch.Tensor) -> float:
    loader = BatchLoader(x, y, batch_size=128, device="cpu", augment=True, seed=0)
    t = time.perf_counter()
    next(loader.epoch(1))
    return 1000 * (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", action="store_true", help=f"decode {ARCHIVE} into a fresh cache and time it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (50_000,), generator=g)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, batch 128 of 3x32x32, 50,000 images, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machines: other work inflates these)")
    for label, options in [
        ("augment (reflect pad) NCHW", dict(augment=True)),
        ("augment (reflect pad) channels_last", dict(augment=True, channels_last=True)),
        ("augment (zero pad) NCHW", dict(augment=True, pad_mode="zero")),
        ("no augment, shuffled", dict(augment=False)),
        ("evaluation (no shuffle, no augment)", dict(augment=False, shuffle=False, drop_last=False)),
    ]:
        ms = batch_cost_ms(x, y, **options)
        print(f"  {label:40s} {ms:6.2f} ms/batch  ({100 * ms / 380:.1f}% of a 380 ms ResNet-20 step)")
    print(f"  per-epoch setup (permutation + crop draws)  {epoch_setup_ms(x, y):6.2f} ms")
    if args.decode:
        spec = DataSpec(dataset="imagefolder", root=str(ARCHIVE))
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            ds = load_dataset(spec, cache_dir=cache)
            decode_s = time.perf_counter() - t
            t = time.perf_counter()
            load_dataset(spec, cache_dir=cache)
            cached_s = time.perf_counter() - t
        means = ", ".join(f"{255 * m:.1f}" for m in ds.mean)
        print(f"  {ARCHIVE.name}: decode + cache {decode_s:.1f} s, cached load {cached_s:.2f} s "
              f"({len(ds.train_x)} + {len(ds.val_x)} images, channel means {means})")


if __name__ == "__main__":
    main()
