"""Does ``torch.compile`` (inductor) make the full or the reduced training step faster here?

Claim checked: eager against inductor-compiled ResNet-20 training steps (forward, backward, SGD step),
full (32x32) and reduced (16x16 input, 2x2 pooled kernels, BatchNorm frozen), batch 128,
channels_last, on this machine's CPU with ``--threads`` torch threads. The four variants run
interleaved in one process, round after round (a load change hits all of them alike); medians of
``--rounds`` rounds of ``--steps`` steps each, after compiling and warming every variant.

    python bench/compile_step.py --threads 2 --rounds 5 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dynds_core import create_model, downsample_input, reduced_pass  # noqa: E402
from dynds_core.training.allocator import retain_freed_memory  # noqa: E402


def make_step(model, forward, optimizer, x, y, reduced: bool):
    x_small = downsample_input(x)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if reduced:
            with reduced_pass(model):
                loss = F.cross_entropy(forward(x_small), y)
        else:
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    ap.add_argument("--arch", default="resnet20")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    retain_freed_memory()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    variants = {}
    for backend in ("eager", "inductor"):
        model = create_model(args.arch).to(memory_format=torch.channels_last).train()
        forward = model if backend == "eager" else torch.compile(model, backend="inductor")
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for reduced in (False, True):
            variants[(backend, "reduced" if reduced else "full")] = make_step(model, forward, opt, x, y, reduced)
    t0 = time.perf_counter()
    for step in variants.values():  # compile (inductor) and warm up every variant, untimed
        for _ in range(3):
            step()
    print(
        f"# {args.arch}, batch {args.batch}, channels_last, {args.threads} threads, torch {torch.__version__}; "
        f"compile + warm-up {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    times: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for kind in ("full", "reduced"):
        e, i = med[("eager", kind)], med[("inductor", kind)]
        print(
            f"{kind:8s} step: eager {e:7.1f} ms, inductor {i:7.1f} ms, inductor speed-up {e / i:.2f}x "
            f"(rounds: eager {', '.join(f'{t * 1000:.0f}' for t in times[('eager', kind)])}; "
            f"inductor {', '.join(f'{t * 1000:.0f}' for t in times[('inductor', kind)])})"
        )
    print(
        f"reduced over full: eager {med[('eager', 'full')] / med[('eager', 'reduced')]:.2f}x, "
        f"inductor {med[('inductor', 'full')] / med[('inductor', 'reduced')]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
