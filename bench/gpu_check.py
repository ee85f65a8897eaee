"""The CUDA figures the documentation (docs/figures.md) still lacks, in one run of under 8 minutes (run it through bench/gpu_check.sh).

1. Reduced versus full training-step speed-ups on CUDA for CIFAR ResNet-20 and ResNet-56 at batch 128 and
   512, in fp32 NCHW, fp32 channels_last and bf16 autocast (channels_last), with the FLOP ratio beside them
   (``torch.utils.flop_counter``; the machinery of bench/reduced_step.py: its step types, ``train_step``,
   ``step_flops`` and its round-robin ``interleaved_times``). A timed sample is ``--steps-per-sample``
   steps between two ``torch.cuda.synchronize()``; figures are medians over ``--repeats`` interleaved rounds
   after a warm-up (``cudnn.benchmark`` on). ``vs best full``: against the fastest full step of any precision
   and layout, the honest baseline.
2. One job through ``dynds_core.train`` exactly as the service runs it: the full CIFAR-10 training set
   (shared JPEGs), full test set, ResNet-20, ``--job-epochs`` epochs (5), batch 128, SGD nesterov, one-cycle
   to 0.2, DynDS default setting, ``train.pairing: lockstep``, paired and equal-time baselines on. Prints the
   time saving, the interleaved estimate, acc delta, equal-time gap, the verdict sentence and the card.

Without CUDA (or with ``--cpu``) it prints ``no CUDA: CPU fallback`` and does the same at tiny sizes on the
CPU (a smoke run: the figures mean nothing), and exits 0.

    bash bench/gpu_check.sh                    # on a GPU machine
    bash bench/gpu_check.sh --cpu --threads 1  # the CPU fallback, as tests/bench runs it
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ARCHIVE_CANDIDATES = (
    ROOT / "shared" / "data" / "cifar10-jpeg75.tar.gz",  # a device machine's copy of the working tree
    ROOT.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz",  # this project's checkouts
)
# (label, autocast dtype or None, memory format)
PRECISIONS = (
    ("fp32 nchw", None, "nchw"),
    ("fp32 channels_last", None, "channels_last"),
    ("bf16 channels_last", "bfloat16", "channels_last"),
)
STEPS = ("full", "reduced none (input /2 only)", "reduced avg s1 (default)")


def find_archive(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("DYNDS_CIFAR10_ARCHIVE")
    if env:
        return Path(env)
    return next((p for p in ARCHIVE_CANDIDATES if p.exists()), None)


def step_speedups(args, device) -> None:
    import reduced_step as rs
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def clock() -> float:
        sync()
        return time.perf_counter()

    print(
        f"\n## reduced vs full training step on {device.type} ({args.steps_per_sample} steps per sample, median of {args.repeats} interleaved rounds)"
    )
    print(f"{'model':<10}{'batch':>6}  {'precision':<20}{'step':<30}{'ms/step':>9}{'speed-up':>10}{'vs best full':>14}{'FLOP ratio':>12}")
    for arch in args.models:
        for batch in args.batches:
            setups, runs = {}, {}
            for label, dtype, fmt in PRECISIONS:
                s = rs.make_setup(arch, rs.FORMATS[fmt], batch)
                s.model.to(device)
                s.optimizer = torch.optim.SGD(s.model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
                s.x, s.y = s.x.to(device).contiguous(memory_format=s.memory_format), s.y.to(device)
                setups[label] = s
                cast = (lambda dt=dtype: torch.autocast(device.type, dtype=getattr(torch, dt))) if dtype else contextlib.nullcontext
                for step in STEPS:

                    def run(s=s, k=rs.STEP_TYPES[step], cast=cast):
                        for _ in range(args.steps_per_sample):
                            with cast():
                                rs.train_step(s, k)

                    runs[f"{label}|{step}"] = run
            times = rs.interleaved_times(runs, args.repeats, args.warmup, clock)
            ms = {k: statistics.median(v) / args.steps_per_sample * 1e3 for k, v in times.items()}
            ref = setups[PRECISIONS[0][0]]
            flops = {step: rs.step_flops(ref, rs.STEP_TYPES[step]) for step in STEPS}
            best_full = min(ms[f"{label}|full"] for label, _, _ in PRECISIONS)
            for label, _, _ in PRECISIONS:
                for step in STEPS:
                    m = ms[f"{label}|{step}"]
                    print(
                        f"{arch:<10}{batch:>6}  {label:<20}{step:<30}{m:>9.2f}{ms[f'{label}|full'] / m:>9.2f}x"
                        f"{best_full / m:>13.2f}x{flops['full'] / flops[step]:>11.2f}x",
                        flush=True,
                    )
            del setups, runs
            if device.type == "cuda":
                torch.cuda.empty_cache()


def lockstep_job(args, device, *, subset=None, epochs=None):
    from dynds_core import JobSpec, train
    from dynds_core.trainer import ProcessSettings

    subset = args.job_subset if subset is None else subset
    epochs = args.job_epochs if epochs is None else epochs
    archive = find_archive(args.data)
    if archive is not None and archive.exists():
        data = {"dataset": "imagefolder", "root": str(archive), "train_subset": subset, "val_subset": args.job_val_subset}
        where = f"CIFAR-10 JPEGs {archive}"
    else:
        data = {"dataset": "synthetic", "synthetic_size": subset or 2048}
        where = "no CIFAR-10 archive found (set DYNDS_CIFAR10_ARCHIVE or --data): SYNTHETIC data"
    spec = JobSpec.parse(
        {
            "name": "gpu-check-lockstep",
            "model": {"arch": "resnet20"},
            "data": data,
            "train": {
                "epochs": epochs,
                "batch_size": args.job_batch,
                "optimizer": "sgd",
                "lr": 0.2,
                "momentum": 0.9,
                "nesterov": True,
                "weight_decay": 5e-4,
                "lr_schedule": "onecycle",
                "seed": 0,
                "device": "cuda" if device.type == "cuda" else "cpu",
                "channels_last": True,
                "num_threads": args.threads,
                "pairing": "lockstep",
            },
            "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
            "baseline": True,
            "equal_time_baseline": True,
        }
    )
    n = "all" if subset is None else subset
    print(
        f"\n## one lockstep job on {device.type}: resnet20, {where}, train images {n}, test images {args.job_val_subset or 'all'}, "
        f"{epochs} epochs, batch {args.job_batch}",
        flush=True,
    )
    t0 = time.perf_counter()
    res = train(spec, process=ProcessSettings.measured())

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def pt(x):
        return "n/a" if x is None else f"{x:+.2f} pt"

    print(f"card: {res.device}")
    print(f"hardware: {res.hardware.key if res.hardware else 'n/a'}")
    print(f"pairing: {res.pairing}")
    print(f"time_saving: {pct(res.time_saving)}")
    print(f"time_saving_interleaved: {pct(res.time_saving_interleaved)}")
    print(
        f"acc_delta: {pt(res.acc_delta)} (DynDS {res.dynds.final_val_acc:.2f}%, baseline "
        f"{res.baseline.final_val_acc if res.baseline else float('nan'):.2f}%)"
    )
    print(
        f"equal_time_gap: {pt(res.equal_time_gap)} (equal-time {res.equal_time.final_val_acc if res.equal_time else float('nan'):.2f}%, "
        f"sized by {res.equal_time_sizing})"
    )
    print(f"timing_noisy: {res.timing_noisy}{f' ({res.timing_noise})' if res.timing_noise else ''}")
    print(f"verdict: {res.verdict}: {res.verdict_sentence}")
    print(
        f"train time: DynDS {res.dynds.train_time_s:.1f} s, baseline {res.baseline.train_time_s if res.baseline else float('nan'):.1f} s; "
        f"job wall {time.perf_counter() - t0:.0f} s"
    )
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="take the CPU fallback even where CUDA is present")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 8 with CUDA, 2 on the CPU)")
    p.add_argument("--models", default=None, help="comma-separated (default resnet20,resnet56; CPU fallback resnet20)")
    p.add_argument("--batches", default=None, help="comma-separated (default 128,512; CPU fallback 8)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 7; CPU fallback 1)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 3; CPU fallback 1)")
    p.add_argument("--steps-per-sample", type=int, default=None, help="steps per timed sample (default 10; CPU fallback 1)")
    p.add_argument("--data", default=None, help="CIFAR-10 JPEG archive (default: shared/data or ../shared/data, or $DYNDS_CIFAR10_ARCHIVE)")
    p.add_argument("--job-epochs", type=int, default=None, help="epochs of the lockstep job (default 5; CPU fallback 1)")
    p.add_argument("--job-subset", type=int, default=None, help="training images of the job (default all 50,000; CPU fallback 512)")
    p.add_argument("--job-val-subset", type=int, default=None, help="test images of the job (default all 10,000; CPU fallback 200)")
    p.add_argument("--job-batch", type=int, default=128)
    p.add_argument("--skip-steps", action="store_true", help="only the lockstep job")
    p.add_argument("--skip-job", action="store_true", help="only the step speed-ups")
    p.add_argument(
        "--cpu-job-subset",
        type=int,
        default=4096,
        help="with CUDA: the same lockstep job on the CPU too, on this many training images (default %(default)s; 0: none)",
    )
    args = p.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    fallback = {
        "threads": 2,
        "models": "resnet20",
        "batches": "8",
        "repeats": 1,
        "warmup": 1,
        "steps_per_sample": 1,
        "job_epochs": 1,
        "job_subset": 512,
        "job_val_subset": 200,
    }
    full = {
        "threads": 8,
        "models": "resnet20,resnet56",
        "batches": "128,512",
        "repeats": 7,
        "warmup": 3,
        "steps_per_sample": 10,
        "job_epochs": 5,
        "job_subset": None,
        "job_val_subset": None,
    }
    for key, value in (full if cuda else fallback).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    from dynds_core.training.allocator import retain_freed_memory

    retain_freed_memory()  # as train() does
    if cuda:
        torch.backends.cudnn.benchmark = True
        print(
            f"# gpu_check: CUDA {torch.version.cuda}, card {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
            f"cuDNN {torch.backends.cudnn.version()}, {args.threads} CPU threads"
        )
    else:
        why = "--cpu given" if torch.cuda.is_available() else "torch.cuda.is_available() is False"
        print(f"no CUDA: CPU fallback ({why}): a smoke run at tiny sizes, torch threads {args.threads}; its figures mean nothing")
        print(f"# gpu_check: torch {torch.__version__}, CPU")
    t0 = time.perf_counter()
    if not args.skip_steps:
        step_speedups(args, device)
    if not args.skip_job:
        res = lockstep_job(args, device)
        if cuda and args.cpu_job_subset:
            # The same recipe on this machine's CPU (fewer images, one epoch, so it fits): one saving per hardware.
            cpu = lockstep_job(args, torch.device("cpu"), subset=args.cpu_job_subset, epochs=1)
            print("\n## time saving by hardware (each a lockstep job against its own baseline)")
            for r in (res, cpu):
                saving = "n/a" if r.time_saving is None else f"{100 * r.time_saving:.1f}%"
                print(f"{r.hardware.key if r.hardware else r.device}: {saving}{' (timing noisy)' if r.timing_noisy else ''}")
    print(f"\ngpu_check done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
