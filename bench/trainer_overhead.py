"""Overhead of ``dynds_core.train`` over a minimal hand-written PyTorch loop: target within 5%.

One full-resolution epoch (schedule none, no paired runs) through ``train`` versus the loop
below on the same in-memory data, model, initial weights, batches (the same seeded BatchLoader,
augmentation on), optimizer and memory format; the two are interleaved, alternating which goes
first, over several repeats, and the median ratio is reported. ``train``'s own train time
(evaluation excluded) and the wall time of the whole ``train`` call minus evaluation are both shown.

    .venv/bin/python bench/trainer_overhead.py                # CIFAR-10 subset of 2,560 images, 3 repeats
    .venv/bin/python bench/trainer_overhead.py --quick        # synthetic data, seconds

Conditions are printed with the figures (device, threads, data, batch).

Both sides get the same untimed warm-up (train() runs two steps of each pass type on a throwaway
copy before timing). Without it the hand loop paid one-off kernel set-up costs in its first steps
and came out 14-18% slower than train() in earlier runs. Figures: docs/figures.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn

from dynds_core.data import BatchLoader, load_dataset
from dynds_core.models import create_model
from dynds_core.spec import JobSpec
from dynds_core.trainer import ProcessSettings, train
from dynds_core.training.allocator import retain_freed_memory
from dynds_core.training.loop import seed_everything
from dynds_core.training.recipe import lr_at


def hand_loop(spec: JobSpec, ds, device: torch.device) -> float:
    """The smallest honest loop: same data, model, init, recipe; returns the epoch's seconds."""
    t = spec.train
    seed_everything(t.seed)
    model = create_model(spec.model.arch, num_classes=ds.num_classes, in_channels=ds.in_channels)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    crit = nn.CrossEntropyLoss()
    loader = BatchLoader(ds.train_x, ds.train_y, batch_size=t.batch_size, device=device, mean=ds.mean, std=ds.std,
                         augment=spec.data.augment, seed=t.seed, channels_last=t.channels_last)  # fmt: skip
    total = len(loader)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # The same untimed warm-up train() does (2 steps on a throwaway copy): one-off kernel set-up
    # costs would otherwise be charged to this loop only.
    warm = copy.deepcopy(model)
    x0, y0 = next(iter(loader.epoch(0)))
    for _ in range(2):
        crit(warm(x0), y0).backward()
    del warm
    sync()
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader.epoch(0)):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, peak=t.lr, kind=t.lr_schedule)
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return time.perf_counter() - start


def via_train(spec: JobSpec, ds) -> tuple[float, float]:
    """(train time reported by train, wall time of the call minus its evaluation)."""
    evals = []

    from dynds_core.training import loop

    original = loop.evaluate

    def timed_evaluate(*a, **k):
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            evals.append(time.perf_counter() - t0)

    loop.evaluate = timed_evaluate
    try:
        t0 = time.perf_counter()
        res = train(spec, dataset=ds, process=ProcessSettings.measured())
        wall = time.perf_counter() - t0
    finally:
        loop.evaluate = original
    return res.dynds.train_time_s, wall - sum(evals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="synthetic data, 1 repeat: a smoke run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--subset", type=int, default=2560, help="CIFAR-10 training images (20 batches of 128)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="auto")
    ap.add_argument("--root", default="../shared/data/cifar10-jpeg75.tar.gz")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # train() keeps freed host memory in the process (a process-wide setting): the hand loop gets it from the start too.
    retain_freed_memory()

    if args.quick:
        data = {"dataset": "synthetic", "synthetic_size": 512, "image_size": 32}
        args.repeats = 1
    else:
        data = {"dataset": "imagefolder", "root": args.root, "train_subset": args.subset, "val_subset": 100}
    spec = JobSpec.parse({
        "name": "trainer-overhead", "data": data, "baseline": False,
        "train": {"epochs": 1, "batch_size": 128, "device": args.device, "channels_last": True},
        "dynds": {"schedule": {"kind": "none"}},
    })  # fmt: skip
    ds = load_dataset(spec.data, seed=0)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    print(f"# trainer overhead: resnet20, batch 128, channels_last, {len(ds.train_y)} training images ({ds.name}), "
          f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip

    hand_loop(spec, ds, device)  # warm-up (allocator, kernels)
    hand, reported, wall = [], [], []
    for r in range(args.repeats):
        order = ("hand", "train") if r % 2 == 0 else ("train", "hand")
        for which in order:
            if which == "hand":
                hand.append(hand_loop(spec, ds, device))
            else:
                a, b = via_train(spec, ds)
                reported.append(a)
                wall.append(b)
        print(f"repeat {r}: hand {hand[-1]:.2f} s   train (reported) {reported[-1]:.2f} s   train call minus eval {wall[-1]:.2f} s")
    h, t_rep, t_wall = statistics.median(hand), statistics.median(reported), statistics.median(wall)
    print(
        f"median: hand loop {h:.2f} s, train's epoch {t_rep:.2f} s ({t_rep / h - 1:+.1%}), "
        f"whole train call minus eval {t_wall:.2f} s ({t_wall / h - 1:+.1%}; includes model build and FLOP counting)"
    )
    print(f"target: train's epoch within 5% of the hand loop -> {'met' if t_rep / h - 1 <= 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
