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
    python bench/reduced_step.py --allocator plain        # glibc as it comes (train() retains freed memory)

Host memory: like ``dynds_core.train``, the benchmark keeps freed memory in the process
(``dynds_core.training.allocator``) unless ``--allocator plain``; a process cannot switch back, so
compare the two in separate runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dynds_core.models import create_model
from dynds_core.ops import downsample_input
from dynds_core.reduced import reduced_pass
from dynds_core.training.allocator import retain_freed_memory

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


# Operator classes of the --breakdown (torch.profiler's self CPU time per aten op, grouped).
OP_CLASSES = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::convolution"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::batch_norm"),
    "relu + residual add": (
        "aten::relu",
        "aten::relu_",
        "aten::clamp_min",
        "aten::clamp_min_",
        "aten::threshold_backward",
        "aten::add",
        "aten::add_",
    ),
    "pads and copies": ("aten::constant_pad_nd", "aten::fill_", "aten::copy_"),
    "kernel pooling": ("aten::bmm", "aten::matmul", "aten::mm"),
    "input downsampling": ("aten::avg_pool2d",),
}


def op_breakdown(s: Setup, kernel: dict | None, steps: int = 5) -> dict[str, float]:
    """Milliseconds per step by operator class (profiled: the profiler itself adds a little per op)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(s, kernel)
    out = {name: 0.0 for name in OP_CLASSES}
    out["other"] = 0.0
    for e in prof.key_averages():
        if not e.key.startswith("aten::") and e.key != "Optimizer.step#SGD.step":
            continue  # autograd and record_function wrappers: their ops are counted themselves
        cls = next((c for c, ops in OP_CLASSES.items() if e.key in ops), "other")
        out[cls] += e.self_cpu_time_total / 1e3 / steps
    return out


def print_breakdown(arch: str, memory_format: str, s: Setup) -> None:
    """Profile the timed benchmark's own (already warm) model and optimizer."""
    full, reduced = None, STEP_TYPES["reduced avg s1 (default)"]
    a, b = op_breakdown(s, full), op_breakdown(s, reduced)
    print(f"\n{arch}, {memory_format}: where a step's time goes (profiled, ms/step), full vs default reduced")
    print(f"{'operators':<22}{'full':>9}{'reduced':>9}{'ratio':>8}")
    for cls in a:
        ratio = f"{a[cls] / b[cls]:>7.2f}x" if b[cls] > 0.005 else f"{'-':>8}"
        print(f"{cls:<22}{a[cls]:>9.2f}{b[cls]:>9.2f}{ratio}")
    ta, tb = sum(a.values()), sum(b.values())
    print(f"{'total':<22}{ta:>9.2f}{tb:>9.2f}{ta / tb:>7.2f}x")
    # Amdahl: with the reduced pass's own overheads (pad, pooling, downsampling) gone, and convolutions
    # at their FLOP ratio, what would the rest allow?
    own = sum(b[c] for c in ("pads and copies", "kernel pooling", "input downsampling"))
    print(f"  the reduced pass's own overheads (pad, kernel pooling, input downsampling): {own:.2f} ms; without them {ta / (tb - own):.2f}x")


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
) -> dict[str, Setup]:
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
    print(
        f"{'format':<14}{'step':<30}{'ms/step':>9}{'speed-up':>10}{'vs best full':>14}{'GFLOP':>8}{'FLOP ratio':>12}{'act. MB':>9}{'mem ratio':>11}"
    )
    for f in formats:
        for t in step_types:
            m = medians[f"{f}|{t}"]
            print(
                f"{f:<14}{t:<30}{m * 1e3:>9.1f}{medians[f'{f}|full'] / m:>9.2f}x{best_full / m:>13.2f}x"
                f"{flops[t] / 1e9:>8.2f}{flops['full'] / flops[t]:>11.2f}x{memory[t] / 2**20:>9.1f}{memory['full'] / memory[t]:>10.2f}x"
            )
    return setups


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
    parser.add_argument("--breakdown", action="store_true", help="also profile where a step's time goes, by operator class")
    parser.add_argument(
        "--allocator",
        choices=("retained", "plain"),
        default="retained",
        help="retained: keep freed memory as dynds_core.train does (default); plain: glibc's adaptive thresholds",
    )
    args = parser.parse_args(argv)
    retained = args.allocator == "retained" and retain_freed_memory()
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
    print(
        f"DynDS reduced-step benchmark: torch {torch.__version__}, CPU, {args.threads} threads, input 32x32 -> 16x16 (avg), "
        f"host allocator {'retaining freed memory' if retained else 'as it comes'}"
    )
    for arch in models:
        setups = bench_model(arch, formats, step_types, batch, repeats, warmup, args.cpu_time)
        if args.breakdown:
            print_breakdown(arch, formats[-1], setups[formats[-1]])


if __name__ == "__main__":
    main()
