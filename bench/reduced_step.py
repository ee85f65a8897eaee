"""Per-step cost of a full versus a reduced DynDS training step, for each kernel mode.

Claim under test (METHOD.md): a reduced step (input /2, 3x3 -> 2x2 avg kernels) needs 8.9x fewer
FLOPs than a full step on CIFAR ResNet-20; a naive explicit pad turned that into about 5x of
speed on our CPUs. Target: at least 6x for the default reduced pass.

Conditions: CPU, ``--threads`` torch threads (2 by default), batch 128 of random 32x32 images
(timing does not depend on the values), SGD with Nesterov momentum, forward + backward + step.
Variants run interleaved (round-robin over every model copy, memory format and step type, for
``--repeats`` rounds after a warm-up) so that load from other processes on a shared machine hits
them alike; figures are medians. Speed-ups are against the full step in the SAME memory format,
and (``vs best full``) against the fastest full step of either format: the honest baseline.
FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one step's forward and backward.
Activation memory: the bytes of the tensors autograd saves for backward during the forward
(``torch.autograd.graph.saved_tensors_hooks``, unique storages, parameters excluded), i.e. what a
step holds at its peak between forward and backward.

    python bench/reduced_step.py                 # ResNet-20 and ResNet-56, NCHW and channels_last
    python bench/reduced_step.py --quick         # smoke test in seconds
    python bench/reduced_step.py --threads 1 --cpu-time   # on a busy shared machine
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dynds_core.models import create_model
from dynds_core.ops import downsample_input
from dynds_core.reduced import reduced_pass

# Step types: None is the full step; otherwise the kernel settings of the reduced pass.
STEP_TYPES: dict[str, dict | None] = {
    "full": None,
    "reduced none (input /2 only)": {"mode": "none"},
    "reduced avg s1 (default)": {"mode": "avg"},
    "reduced avg s2": {"mode": "avg", "stride": 2},
    "reduced max": {"mode": "max", "scale": "none"},
    "reduced resize 2x2": {"mode": "resize", "size": (2, 2)},
}
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class Setup:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    memory_format: torch.memory_format


def make_setup(arch: str, memory_format: torch.memory_format, batch: int, seed: int = 0) -> Setup:
    torch.manual_seed(seed)
    model = create_model(arch).to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))
    return Setup(model, optimizer, x, y, memory_format)


def forward_loss(s: Setup, kernel: dict | None) -> torch.Tensor:
    if kernel is None:
        return F.cross_entropy(s.model(s.x), s.y)
    x_small = downsample_input(s.x, 2).contiguous(memory_format=s.memory_format)
    with reduced_pass(s.model, kernel):
        return F.cross_entropy(s.model(x_small), s.y)


def train_step(s: Setup, kernel: dict | None) -> None:
    s.optimizer.zero_grad(set_to_none=True)
    forward_loss(s, kernel).backward()
    s.optimizer.step()


def step_flops(s: Setup, kernel: dict | None) -> int:
    s.optimizer.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        forward_loss(s, kernel).backward()
    s.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def saved_activation_bytes(s: Setup, kernel: dict | None) -> int:
    params = {p.untyped_storage().data_ptr() for p in s.model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    s.optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward_loss(s, kernel)
    loss.backward()
    s.optimizer.zero_grad(set_to_none=True)
    return sum(storages.values())


def interleaved_times(
    runs: dict[str, Callable[[], None]], repeats: int, warmup: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Round-robin over ``runs``; each round starts one later so no variant always follows the same one."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            start = clock()
            runs[name]()
            times[name].append(clock() - start)
    return times


def bench_model(
    arch: str, formats: list[str], step_types: dict[str, dict | None], batch: int, repeats: int, warmup: int, cpu_time: bool
) -> None:
    setups = {f: make_setup(arch, FORMATS[f], batch) for f in formats}
    runs = {(f, t): (lambda s=setups[f], k=k: train_step(s, k)) for f in formats for t, k in step_types.items()}
    keyed = {f"{f}|{t}": run for (f, t), run in runs.items()}
    times = interleaved_times(keyed, repeats, warmup, time.thread_time if cpu_time else time.perf_counter)
    medians = {key: statistics.median(v) for key, v in times.items()}
    ref = setups[formats[0]]
    flops = {t: step_flops(ref, k) for t, k in step_types.items()}
    memory = {t: saved_activation_bytes(ref, k) for t, k in step_types.items()}
    best_full = min(medians[f"{f}|full"] for f in formats)
    clock = "CPU time of the main thread" if cpu_time else "wall time"
    print(f"\n{arch}, batch {batch}, {torch.get_num_threads()} threads, {repeats} interleaved rounds (medians of {clock})")
    print(f"{'format':<14}{'step':<30}{'ms/step':>9}{'speed-up':>10}{'vs best full':>14}{'GFLOP':>8}{'FLOP ratio':>12}{'act. MB':>9}{'mem ratio':>11}")
    for f in formats:
        for t in step_types:
            m = medians[f"{f}|{t}"]
            print(
                f"{f:<14}{t:<30}{m * 1e3:>9.1f}{medians[f'{f}|full'] / m:>9.2f}x{best_full / m:>13.2f}x"
                f"{flops[t] / 1e9:>8.2f}{flops['full'] / flops[t]:>11.2f}x{memory[t] / 2**20:>9.1f}{memory['full'] / memory[t]:>10.2f}x"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--models", default="resnet20,resnet56", help="comma-separated architectures")
    parser.add_argument("--formats", default="nchw,channels_last", help="comma-separated: nchw, channels_last")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds; figures are medians")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--default-only", action="store_true", help="only the full and the default reduced step")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time steps by the main thread's CPU time (needs --threads 1): robust when other processes share the cores",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: resnet20, batch 8, one round")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        parser.error(f"unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time measures one thread: use it with --threads 1")
    step_types = STEP_TYPES
    if args.default_only:
        step_types = {t: STEP_TYPES[t] for t in ("full", "reduced avg s1 (default)")}
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batch, repeats, warmup = args.batch, args.repeats, args.warmup
    if args.quick:
        models, batch, repeats, warmup = ["resnet20"], 8, 1, 1
    print(f"DynDS reduced-step benchmark: torch {torch.__version__}, CPU, {args.threads} threads, input 32x32 -> 16x16 (avg)")
    for arch in models:
        bench_model(arch, formats, step_types, batch, repeats, warmup, args.cpu_time)


if __name__ == "__main__":
    main()
