"""Time saving versus accuracy of DynDS schedule settings, against the paired and equal-time baselines.

Claim checked: the paper reports up to 23% less training time at minimal accuracy loss. We look for
settings that save >= 30% train time while staying within 0.5 pt of the paired baseline's accuracy
(mean over seeds), and report every setting's gap to the equal-time baseline (the same recipe trained
for the DynDS run's time), which is what a user would do instead.

Conditions (defaults): shared CIFAR-10 JPEGs (../shared/data/cifar10-jpeg75.tar.gz), stratified
training subset, full 10,000-image test set, CIFAR ResNet-20, batch 128, SGD nesterov, one-cycle to
0.2, weight decay 5e-4, crop + flip, channels_last, CPU, torch threads = 2 (the whole machine).

Per seed, runs are interleaved on one machine: the paired baseline first, then each setting's
DynDS run followed at once by its equal-time baseline, so a load change hits neighbours alike.

    python bench/tradeoff.py                                   # the table of the README
    python bench/tradeoff.py --subset 10000 --epochs 12 --seeds 0 --settings default   # METHOD.md's budget
    python bench/tradeoff.py --quick                           # a smoke run in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"

# name -> the spec's `dynds` section (kernel defaults: avg 2x2 stride 1, scale sum, alternate pad side)
SETTINGS: dict[str, dict] = {
    "default": {"schedule": {"kind": "stochastic", "p": 0.5}},
    "input-only": {"kernel": {"mode": "none"}, "schedule": {"kind": "stochastic", "p": 0.5}},
    "p0.5-last20full": {"schedule": {"kind": "stochastic", "p": 0.5, "final_full_fraction": 0.2}},
    "phase-first50": {"schedule": {"kind": "phase", "start": 0.0, "end": 0.5}},
    "anneal-0.8to0": {"schedule": {"kind": "stochastic", "p": 0.8, "p_end": 0.0}},
    "periodic-RF": {"schedule": {"kind": "periodic", "pattern": "RF"}},
    "adaptive": {"schedule": {"kind": "adaptive"}},
}


def base_spec(args, seed: int) -> dict:
    return {
        "name": "tradeoff",
        "model": {"arch": args.arch},
        "data": {"dataset": "imagefolder", "root": str(args.data), "train_subset": args.subset, "val_subset": args.val_subset},
        "train": {
            "epochs": args.epochs, "batch_size": 128, "optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": True,
            "weight_decay": 5e-4, "lr_schedule": "onecycle", "seed": seed, "device": args.device,
            "channels_last": True, "num_threads": args.threads,
        },
        "baseline": False,
        "equal_time_baseline": True,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--subset", type=int, default=5000, help="stratified training images")
    p.add_argument("--val-subset", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--settings", default="default,input-only,p0.5-last20full,phase-first50,anneal-0.8to0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="write every run's JobResult as JSON lines")
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 images, 1 epoch, 1 seed, 2 settings")
    p.add_argument("--summarize", type=Path, default=None, help="only print the table from a JSON-lines file written by --out")
    args = p.parse_args()
    if args.summarize:
        return summarize(args.summarize)
    if args.quick:
        args.subset, args.val_subset, args.epochs, args.seeds, args.settings = 1000, 1000, 1, "0", "default,input-only"
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from dynds_core import JobSpec, train
    from dynds_core.data import load_dataset

    torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    print(f"# tradeoff: {args.arch}, CIFAR-10 JPEG, train_subset={args.subset}, val={args.val_subset or 'all'}, "
          f"epochs={args.epochs}, seeds={seeds}, threads={args.threads}, device={args.device}, torch {torch.__version__}")
    rows: dict[str, list[dict]] = {n: [] for n in ["baseline", *names]}
    out = args.out.open("a") if args.out else None
    for seed in seeds:
        spec0 = JobSpec.parse({**base_spec(args, seed), "dynds": {"schedule": {"kind": "none"}}, "equal_time_baseline": False})
        ds = load_dataset(spec0.data, seed=seed)
        t0 = time.perf_counter()
        base = train(spec0, dataset=ds).dynds.model_copy(update={"run": "baseline"})
        print(f"seed {seed} baseline: {base.final_val_acc:.2f}% in {base.train_time_s:.0f} s "
              f"(wall {time.perf_counter() - t0:.0f} s)", flush=True)
        rows["baseline"].append({"acc": base.final_val_acc, "time": base.train_time_s})
        for name in names:
            spec = JobSpec.parse({**base_spec(args, seed), "dynds": SETTINGS[name]})
            res = train(spec, dataset=ds, baseline_run=base)
            if out:
                out.write(json.dumps({"setting": name, "seed": seed, "result": res.model_dump(mode="json")}) + "\n")
                out.flush()
            rows[name].append(row_of(res))
            r = rows[name][-1]
            print(f"seed {seed} {name:>18}: {r['acc']:.2f}% in {r['time']:.0f} s, saving {r['saving']:.1%} "
                  f"(interleaved {r['saving_il']:.1%}), delta {r['delta']:+.2f} pt, equal-time {r['eq_acc']:.2f}% "
                  f"(gap {r['eq_gap']:+.2f} pt)", flush=True)
    print_table(rows, names)
    return 0


def row_of(res) -> dict:
    """One setting's figures from its JobResult.

    ``saving_il`` is the interleaved estimate: the DynDS run's own full steps, timed between its reduced
    ones, stand in for the baseline's steps. Unlike the paired saving it cannot be skewed by a load change
    between the baseline run and the DynDS run on a shared machine.
    """
    from dynds_core.trainer import estimated_baseline_time

    d = res.dynds
    il = res.time_saving_interleaved
    if il is None and d.steps_full and d.steps_reduced:  # results written before JobResult carried it
        il = 1 - d.train_time_s / estimated_baseline_time(d, d.steps)
    return {
        "acc": d.final_val_acc, "time": d.train_time_s, "saving": res.time_saving, "saving_il": il,
        "delta": res.acc_delta, "eq_gap": res.equal_time_gap, "eq_acc": res.equal_time.final_val_acc if res.equal_time else None,
        "reduced": d.steps_reduced / max(d.steps, 1), "flop_saving": res.flop_saving, "base_acc": res.baseline.final_val_acc,
    }


def print_table(rows: dict[str, list[dict]], names: list[str]) -> None:
    def ms(values):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        mean = statistics.fmean(values)
        return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"

    print("\n| setting | reduced batches | FLOP saving | time saving, paired (%) | time saving, interleaved (%) | acc (%) "
          "| acc delta (pt) | gap to equal-time (pt) | >=30% and >=-0.5 pt |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = rows.get("baseline") or [{"acc": r["base_acc"]} for r in rows[names[0]]]
    print(f"| baseline | 0% | 0% | 0 | 0 | {ms([r['acc'] for r in base])} | | | |")
    for name in names:
        r = rows[name]
        saving = statistics.fmean(x["saving"] for x in r)
        delta = statistics.fmean(x["delta"] for x in r)
        ok = "yes" if saving >= 0.30 and delta >= -0.5 else "no"
        print(f"| {name} | {statistics.fmean(x['reduced'] for x in r):.0%} | {statistics.fmean(x['flop_saving'] for x in r):.0%} "
              f"| {ms([100 * x['saving'] for x in r])} | {ms([100 * x['saving_il'] for x in r])} | {ms([x['acc'] for x in r])} "
              f"| {ms([x['delta'] for x in r])} | {ms([x['eq_gap'] for x in r])} | {ok} |")


def summarize(path: Path) -> int:
    """Re-print the table from the JSON lines a run wrote with --out."""
    from dynds_core import JobResult

    rows: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rows.setdefault(rec["setting"], []).append(row_of(JobResult.model_validate(rec["result"])))
    print_table(rows, list(rows))


if __name__ == "__main__":
    sys.exit(main())
