"""What checkpointing costs a job: milliseconds per save, and that as a share of training time at the default
cadence (``train.checkpoint_every_s``): target under 2 %.

Each architecture runs a short DynDS job in lockstep with its baseline (two models, two optimizers: the
largest checkpoint a job writes) through ``train()``, checkpointing after every round, so every save is a
real one: the runs' state gathered (weights, BatchNorm sets, optimizer, schedule, tallies, metrics, RNGs),
serialised, hashed (sha256), written to a temporary file, fsynced, renamed, the directory fsynced, the
oldest beyond the last two removed. The share is the median save's seconds over the cadence: a job saves
once per cadence, whatever its step time. Synthetic data (the cost does not depend on the images), batch
and image size small so that both architectures run in a few minutes.

    .venv/bin/python bench/checkpoint_cost.py                 # ResNet-20 and ResNet-50, 2 threads
    .venv/bin/python bench/checkpoint_cost.py --arch resnet20 --saves 4

Conditions (device, threads, checkpoint size, directory, load average) are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynds_core import trainer
from dynds_core.spec import JobSpec, TrainSpec
from dynds_core.trainer import train
from dynds_core.training.checkpoint import Checkpointer, list_checkpoints


class TimedCheckpointer(Checkpointer):
    """Checkpointer whose instances are kept, so that their saves' times can be read after train()."""

    made: list[TimedCheckpointer] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.made.append(self)
        self.gather_s: list[float] = []


def measure(arch: str, saves: int, batch: int, size: int, directory: Path) -> dict:
    spec = JobSpec.parse(
        {
            "name": f"checkpoint-cost-{arch}",
            "model": {"arch": arch, "small_input": True},
            "data": {"dataset": "synthetic", "image_size": size, "synthetic_size": batch * saves},
            "train": {"epochs": 1, "batch_size": batch, "device": "cpu", "checkpoint_every_s": 1e-9},
            "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
            "baseline": True,
            "equal_time_baseline": False,
        }
    )
    TimedCheckpointer.made.clear()
    payload = trainer._JobState.payload

    def timed_payload(self, *args, **kwargs):  # gathering the state (CUDA: reading pending steps) counts too
        t0 = time.perf_counter()
        out = payload(self, *args, **kwargs)
        TimedCheckpointer.made[-1].gather_s.append(time.perf_counter() - t0)
        return out

    trainer.Checkpointer, trainer._JobState.payload = TimedCheckpointer, timed_payload  # type: ignore[misc, method-assign]
    try:
        start = time.perf_counter()
        result = train(spec, checkpoint_dir=directory)
        wall = time.perf_counter() - start
    finally:
        trainer.Checkpointer, trainer._JobState.payload = Checkpointer, payload  # type: ignore[misc, method-assign]
    (saver,) = TimedCheckpointer.made
    per_save = [w + g for w, g in zip(saver.saves, saver.gather_s, strict=True)]
    size_mb = list_checkpoints(directory)[0].stat().st_size / 1e6
    steps = result.dynds.steps + result.baseline.steps if result.baseline else result.dynds.steps
    train_time = result.dynds.train_time_s + (result.baseline.train_time_s if result.baseline else 0.0)
    return {
        "arch": arch,
        "saves": len(per_save),
        "save_ms": 1000 * statistics.median(per_save),
        "save_max_ms": 1000 * max(per_save),
        "size_mb": size_mb,
        "step_s": train_time / max(steps, 1),
        "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", action="append", help="resnet20, resnet50 (default: both)")
    p.add_argument("--saves", type=int, default=6, help="lockstep rounds, one save after each")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dir", help="where to write the checkpoints (default: a temporary directory)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cadence = TrainSpec().checkpoint_every_s
    print(
        f"# checkpoint cost: CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, lockstep (DynDS + baseline), "
        f"batch {args.batch}, {args.size}x{args.size} synthetic, default cadence {cadence:g} s"
    )
    print(f"{'arch':<10} {'saves':>5} {'ms/save':>9} {'max ms':>8} {'MB':>7} {'s/step':>7} {'share @ cadence':>16}")
    for arch in args.arch or ["resnet20", "resnet50"]:
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            r = measure(arch, args.saves, args.batch, args.size, Path(d))
            where = d
        share = r["save_ms"] / 1000 / cadence
        print(f"{arch:<10} {r['saves']:>5} {r['save_ms']:>9.0f} {r['save_max_ms']:>8.0f} {r['size_mb']:>7.1f} {r['step_s']:>7.3f} {share:>15.3%}")
    print(f"# checkpoints written under {os.path.dirname(where)}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
