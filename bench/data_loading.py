"""Data loading cost: producing a training batch, decoding the shared CIFAR-10 archive, loading its cache.

Claim: an augmented batch of 128 32x32 images (random crop with 4-pixel padding + flip, normalized
float32) costs a small fraction of a ResNet-20 training step (~380 ms on these CPUs, METHOD.md),
so loading is never the bottleneck of a CPU epoch.
Conditions: CPU, 1 torch thread, data set of 50,000 uint8 images held in memory (as BatchLoader does).
Measured (2-core machine, load average ~9 from other work): augmented batch 1.4-1.9 ms NCHW, 2.3 ms
channels_last (<1% of a step); archive decode + cache 33 s (about 20 s when the machine is quiet),
cached load 0.15-0.8 s.
Decoders (--decode-compare, load average 2.4-3.0, medians): the 60,000 JPEGs in 4.13 s with Pillow, 2.31 s
with torchvision's batched decode_jpeg (1.79x) in one process; 7.23 s / 3.76 s (1.92x) with 2 worker
processes (slower than one on this loaded machine, for both); pixels identical. Reading the archive: ~4 s.

    .venv/bin/python bench/data_loading.py            # batch cost only (seconds)
    .venv/bin/python bench/data_loading.py --decode   # also decode the archive into a fresh cache (~20 s)
    .venv/bin/python bench/data_loading.py --decode-compare [--repeats 3] [--workers N]
        # Pillow (before) vs torchvision's batched decode_jpeg (after) on the archive's 60,000 JPEGs, read
        # once, decoded alternately in this process (same workers), medians; pixels compared
    --archive PATH: another ImageFolder archive (default: ../shared/data/cifar10-jpeg75.tar.gz from the repo root)
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

# The shared data folder of this project's machines (see ../shared/data/README.md): the bench's default, not the library's.
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


def decode_compare(archive: Path, repeats: int, workers: int | None) -> None:
    """Time Pillow against torchvision on the same encoded images, alternating, and compare the pixels."""
    import numpy as np

    from dynds_core.data import imagefolder

    t = time.perf_counter()
    files = imagefolder._scan_archive(archive)
    scan_s = time.perf_counter() - t
    workers = workers or imagefolder.default_decode_workers()
    times: dict[str, list[float]] = {"pillow": [], "torchvision": []}
    out = {}
    for r in range(repeats):
        for jpeg in ("pillow", "torchvision") if r % 2 == 0 else ("torchvision", "pillow"):
            t = time.perf_counter()
            out[jpeg] = imagefolder.decode_all(files, workers=workers, jpeg=jpeg)
            times[jpeg].append(time.perf_counter() - t)
    same = all(np.array_equal(a, b) for a, b in zip(out["pillow"], out["torchvision"], strict=True))
    print(
        f"  {archive.name}: {len(files)} images read from the archive in {scan_s:.1f} s; decode with {workers} "
        f"worker(s), {repeats} alternating repeats, load average {os.getloadavg()[0]:.1f}:"
    )
    for jpeg, ts in times.items():
        print(f"    {jpeg:12s} median {statistics.median(ts):5.2f} s  ({', '.join(f'{v:.2f}' for v in ts)})")
    print(f"    speed-up {statistics.median(times['pillow']) / statistics.median(times['torchvision']):.2f}x; pixels identical: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", action="store_true", help="decode the archive into a fresh cache and time it")
    parser.add_argument("--decode-compare", action="store_true", help="Pillow vs torchvision decode of the archive, alternating")
    parser.add_argument("--repeats", type=int, default=3, help="--decode-compare: repeats of each decoder")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: the library's default)")
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help=f"an ImageFolder archive (default {ARCHIVE})")
    args = parser.parse_args()
    if args.decode_compare:
        decode_compare(args.archive, args.repeats, args.workers)
        return
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (50_000,), generator=g)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, batch 128 of 3x32x32, 50,000 images, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machines: other work inflates these)"
    )
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
        spec = DataSpec(dataset="imagefolder", root=str(args.archive))
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            ds = load_dataset(spec, cache_dir=cache, decode_workers=args.workers)
            decode_s = time.perf_counter() - t
            t = time.perf_counter()
            load_dataset(spec, cache_dir=cache)
            cached_s = time.perf_counter() - t
        means = ", ".join(f"{255 * m:.1f}" for m in ds.mean)
        print(
            f"  {args.archive.name}: decode + cache {decode_s:.1f} s, cached load {cached_s:.2f} s "
            f"({len(ds.train_x)} + {len(ds.val_x)} images, channel means {means})"
        )


if __name__ == "__main__":
    main()
