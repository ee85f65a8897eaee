"""What lockstep pairing costs in host memory: peak RSS of one job, lockstep against sequential.

Claim checked (docs/figures.md, "Lockstep pairing"): lockstep holds a second model and optimizer at once, not a second
set of activations or a second copy of the data. Each order runs in a fresh process (peak RSS is per
process): ResNet-20 by default, synthetic 32x32 images, batch 128, one epoch, paired baseline on.

    python bench/pairing_memory.py --arch resnet20 --images 1024
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one(pairing: str, arch: str, images: int, threads: int) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    from dynds_core.spec import JobSpec
    from dynds_core.trainer import ProcessSettings, train

    torch.set_num_threads(threads)
    spec = JobSpec.parse({
        "model": {"arch": arch}, "data": {"dataset": "synthetic", "synthetic_size": images, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 128, "pairing": pairing, "device": "cpu"}, "baseline": True,
    })  # fmt: skip
    train(spec, process=ProcessSettings.measured())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=("lockstep", "sequential"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        one(args.one, args.arch, args.images, args.threads)
        return 0
    peaks = {}
    for pairing in ("sequential", "lockstep"):
        out = subprocess.run(
            [sys.executable, __file__, "--one", pairing, "--arch", args.arch, "--images", str(args.images), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        peaks[pairing] = float(out.strip().splitlines()[-1])
    print(
        f"{args.arch}, {args.images} synthetic 32x32 images, batch 128, 1 epoch: peak RSS sequential "
        f"{peaks['sequential']:,.0f} MB, lockstep {peaks['lockstep']:,.0f} MB ({peaks['lockstep'] - peaks['sequential']:+,.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
