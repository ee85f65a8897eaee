"""Lockstep against sequential pairing: does a load change on a shared machine still skew the time saving?

Claim checked: timed in lockstep (``train.pairing: lockstep``: the DynDS run and its paired baseline in one
process, one step of each in turn), a job's time saving moves by less than 2 points from repeat to repeat
when another process takes the cores partway through; timed one after the other (``sequential``: baseline,
then DynDS, as before issue 8) it moves by 10 points or more, because the load lands on one run and not on
the other. The interleaved estimate (the DynDS run's reduced steps against its own full steps) is printed
beside both: it needs no second run, so pairing cannot change it.

Conditions (defaults): this project's CPU machine (2 cores, shared), torch threads 2, the shared CIFAR-10
JPEGs (../shared/data/cifar10-jpeg75.tar.gz), a stratified 4,000-image training subset, 1,000 test images,
CIFAR ResNet-20, 6 epochs, batch 128, SGD nesterov, one-cycle to 0.2, channels_last, DynDS default setting
(p=0.5 reduced, input /2, 2x2 avg kernels, BN frozen), no equal-time run. The same job runs ``--repeats``
times (3) in each order, the orders alternating (sequential, lockstep, sequential, ...). In every job a
burner (one spinning child process per core, ``--burn-procs``) starts once a fraction of the job's steps
is done and stops ``--burn-seconds`` later (wall clock). That fraction differs from repeat to repeat
(``--burn-start``, cycled), as load on a shared machine arrives at any time; repeat i uses the same start
in both orders. Spread = max - min over the repeats, in percentage points.

    python bench/pairing.py                          # 3 repeats per order, about 12 minutes
    python bench/pairing.py --repeats 2 --subset 1000 --epochs 1 --burn-seconds 2   # a smoke run
    python bench/pairing.py --out pairing.jsonl      # also every job's JobResult, one JSON line each
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"
ORDERS = ("sequential", "lockstep")
TARGET_LOCKSTEP_SPREAD_PT = 2.0
TARGET_SEQUENTIAL_SPREAD_PT = 10.0

# A spinner: burns one core until its deadline, then exits by itself (bounded even if never killed).
_SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


class Burner:
    """``procs`` child processes spinning for at most ``seconds`` each; ``stop()`` kills those still running.

    Each child ends on its own at its deadline, so a burner left behind by a crash cannot outlive it by more.
    """

    def __init__(self, procs: int, seconds: float):
        self.procs, self.seconds = procs, seconds
        self.children: list[subprocess.Popen] = []
        self.started_at: float | None = None

    def start(self) -> None:
        if self.children:
            return
        self.started_at = time.monotonic()
        for _ in range(self.procs):
            self.children.append(subprocess.Popen([sys.executable, "-c", _SPIN, str(self.seconds)], stdin=subprocess.DEVNULL))

    def expired(self) -> bool:
        return self.started_at is not None and time.monotonic() - self.started_at >= self.seconds

    def running(self) -> int:
        return sum(1 for c in self.children if c.poll() is None)

    def stop(self) -> None:
        for c in self.children:
            if c.poll() is None:
                c.kill()  # by its own pid: only what this burner started
        for c in self.children:
            try:
                c.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait for anything
                pass


def make_trigger(burner: Burner, job_steps: int, start_fraction: float):
    """A training callback that starts ``burner`` after ``start_fraction`` of the job's steps (all runs together)."""
    from dynds_core.callbacks import Callback

    class BurnAt(Callback):
        def __init__(self):
            self.steps = 0

        def on_step(self, m):  # outside the timed intervals (train() reads finished steps between them)
            self.steps += 1
            if self.steps >= start_fraction * job_steps:
                burner.start()
            if burner.expired():
                burner.stop()

    return BurnAt()


def job_spec(args, pairing: str) -> dict:
    return {
        "name": f"pairing-{pairing}",
        "model": {"arch": args.arch},
        "data": {"dataset": "imagefolder", "root": str(args.data), "train_subset": args.subset, "val_subset": args.val_subset},
        "train": {
            "epochs": args.epochs,
            "batch_size": 128,
            "optimizer": "sgd",
            "lr": 0.2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            "lr_schedule": "onecycle",
            "seed": 0,
            "device": "cpu",
            "channels_last": True,
            "num_threads": args.threads,
            "pairing": pairing,
        },
        "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
        "baseline": True,
        "equal_time_baseline": False,
    }


def spread_pt(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return 100 * (max(values) - min(values)) if len(values) > 1 else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _pt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} pt"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="jobs per order (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the job (default 2: the whole machine)")
    p.add_argument("--subset", type=int, default=4000, help="stratified training images (default 4000)")
    p.add_argument("--val-subset", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument(
        "--burn-start",
        default="0.2,0.5,0.8",
        help="fractions of the job's steps (baseline and DynDS together) after which the burner starts, cycled over repeats",
    )
    p.add_argument("--burn-seconds", type=float, default=12.0, help="how long the burner spins (wall clock; default 12)")
    p.add_argument("--burn-procs", type=int, default=None, help="spinning processes (default: one per core)")
    p.add_argument("--out", type=Path, default=None, help="append every job's JobResult as one JSON line")
    args = p.parse_args(argv)
    starts = [float(s) for s in args.burn_start.split(",") if s.strip()]
    if not starts or any(not 0 <= s < 1 for s in starts):
        p.error("--burn-start: fractions in [0, 1)")
    procs = args.burn_procs or os.cpu_count() or 2
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from dynds_core import JobSpec, train
    from dynds_core.data import load_dataset
    from dynds_core.trainer import ProcessSettings

    torch.set_num_threads(args.threads)
    spec0 = JobSpec.parse(job_spec(args, "lockstep"))
    ds = load_dataset(spec0.data, seed=spec0.train.seed)
    job_steps = 2 * args.epochs * (len(ds.train_y) // 128)  # baseline + DynDS
    print(
        f"# pairing: {args.arch}, CIFAR-10 JPEG, train_subset={args.subset}, val={args.val_subset}, epochs={args.epochs}, "
        f"threads={args.threads}, torch {torch.__version__}, {os.cpu_count()} cores; burner: {procs} spinning processes for "
        f"{args.burn_seconds:g} s from {', '.join(f'{s:.0%}' for s in starts)} of the job's {job_steps} steps (cycled over repeats)",
        flush=True,
    )
    rows: dict[str, list[dict]] = {o: [] for o in ORDERS}
    out = args.out.open("a") if args.out else None
    try:
        for r in range(args.repeats):
            start = starts[r % len(starts)]
            for order in ORDERS:
                spec = JobSpec.parse(job_spec(args, order))
                burner = Burner(procs, args.burn_seconds)
                t0 = time.perf_counter()
                try:
                    res = train(spec, make_trigger(burner, job_steps, start), dataset=ds, process=ProcessSettings.measured())
                finally:
                    burner.stop()
                wall = time.perf_counter() - t0
                used = res.pairing or "?"
                row = {
                    "order": order,
                    "repeat": r,
                    "burn_start": start,
                    "pairing_used": used,
                    "time_saving": res.time_saving,
                    "time_saving_interleaved": res.time_saving_interleaved,
                    "time_saving_total": res.time_saving_total,  # lockstep: the two runs' total times, as the clock read them
                    "acc_delta": res.acc_delta,
                    "dynds_time_s": res.dynds.train_time_s,
                    "baseline_time_s": res.baseline.train_time_s if res.baseline else None,
                    "timing_noisy": res.timing_noisy,
                    "wall_s": wall,
                    "burned": burner.started_at is not None,
                }
                rows[order].append(row)
                if out:
                    out.write(json.dumps({**row, "result": res.model_dump(mode="json")}) + "\n")
                    out.flush()
                warn = "" if used == order else f"  (train() reported pairing {used!r}: it ignored the option)"
                print(
                    f"repeat {r} {order:>10} (burn from {start:.0%}): saving {_pct(row['time_saving'])}"
                    + (f" (total-time {_pct(row['time_saving_total'])})" if row["time_saving_total"] is not None else "")
                    + ", interleaved "
                    f"{_pct(row['time_saving_interleaved'])}, baseline {row['baseline_time_s']:.1f} s, DynDS {row['dynds_time_s']:.1f} s, "
                    f"acc delta {row['acc_delta']:+.2f} pt, noisy={row['timing_noisy']}, wall {wall:.0f} s{warn}",
                    flush=True,
                )
    finally:
        if out:
            out.close()
    return report(rows)


def report(rows: dict[str, list[dict]]) -> int:
    """Print the summary and the target check; 0 if it holds, 1 if not (2 if too few repeats to tell)."""
    print("\n| pairing | time saving per repeat (%) | spread (pt) | interleaved per repeat (%) | spread (pt) |")
    print("|---|---|---|---|---|")
    spreads = {}

    def line(label: str, sav: list, il: list) -> None:
        cells = (", ".join(_pct(v)[:-1] for v in sav), _pt(spread_pt(sav)), ", ".join(_pct(v)[:-1] for v in il), _pt(spread_pt(il)))
        print(f"| {label} | " + " | ".join(cells) + " |")

    for order in ORDERS:
        rs = rows[order]
        sav = [x["time_saving"] for x in rs]
        il = [x["time_saving_interleaved"] for x in rs]
        spreads[order] = spread_pt(sav)
        line(order + (" (steps paired in time)" if order == "lockstep" else ""), sav, il)
        total = [x.get("time_saving_total") for x in rs]
        if order == "lockstep" and any(v is not None for v in total):
            line("lockstep, total times (the clock; not the target's figure)", total, il)
    lock, seq = spreads["lockstep"], spreads["sequential"]
    if lock is None or seq is None:
        print("target: needs at least 2 repeats per order")
        return 2
    ok = lock <= TARGET_LOCKSTEP_SPREAD_PT and seq >= TARGET_SEQUENTIAL_SPREAD_PT
    print(
        f"target: lockstep spread <= {TARGET_LOCKSTEP_SPREAD_PT:g} pt where sequential spreads >= {TARGET_SEQUENTIAL_SPREAD_PT:g} pt: "
        f"lockstep {lock:.1f} pt, sequential {seq:.1f} pt -> {'MET' if ok else 'NOT MET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
