"""The study: time saving against accuracy of DynDS settings, with statistics over seeds, the verdict, and the budget frontier.

Claim checked: the paper reports up to 23% less training time at minimal accuracy loss. We look for
settings that save >= 30% train time within 0.5 pt of the paired baseline's accuracy, and, what decides,
whether a setting beats the equal-time baseline (the same recipe trained for the DynDS run's time: what a
user would do instead). Every figure is a mean over seeds with its 95 % interval (Student t over seeds,
``dynds_core.stats.mean_ci95``); the verdict is ``dynds_core.verdict.judge`` on the equal-time gap's interval.

Conditions (defaults, METHOD.md's budget): shared CIFAR-10 JPEGs (../shared/data/cifar10-jpeg75.tar.gz),
stratified 10,000-image training subset, full 10,000-image test set, CIFAR ResNet-20, 12 epochs, batch 128,
SGD nesterov, one-cycle to 0.2, weight decay 5e-4, crop + flip, channels_last, CPU, seeds 0, 1, 2.

Every setting is one job run through ``dynds_core.train(spec)`` exactly as the service runs a job: its own
paired baseline in lockstep (``train.pairing: lockstep``: one step of each in turn in one process, so a load
change hits both alike) and its own equal-time baseline. The budget frontier: the baseline recipe alone
(schedule none) at 25/50/75/100 % of the epochs per seed; each setting's point (1 - time saving, accuracy)
is placed against that band (above / within / below). ``--print-specs`` writes the jobs' specs (JSON lines)
for submitting the same study to the service, whose leaderboard then shows the same cells.

Cells are built by the leaderboard's own pure functions (``app.leaderboard.build_leaderboard`` and
``build_frontier`` over rows made from the JobResults as the service makes them), so the study and the
leaderboard share one aggregation; where that module lacks them, ``dynds_core.stats`` directly (said so).

    python bench/tradeoff.py --jobs 2 --threads 1 --out /work/study/tradeoff.jsonl --resume   # the table of docs/figures.md
    python bench/tradeoff.py --table-only --out /work/study/tradeoff.jsonl                   # its table again
    python bench/tradeoff.py --quick --out /tmp/quick.jsonl                                  # a smoke run, minutes
    python bench/tradeoff.py --methods dynds,progressive,mixsize,fixres --jobs 2 --out /work/study/relatives.jsonl --resume
    python bench/tradeoff.py --data fashion-mnist --methods dynds,progressive --jobs 2 --out bench/results/tradeoff-fashion.jsonl --resume
                                             # the same on Fashion-MNIST (apt-get install dataset-fashion-mnist)
                                             # the relatives beside DynDS, same budget and baselines (docs/library.md)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing as mp
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"
FRONTIER_FRACTIONS = (0.25, 0.5, 0.75, 1.0)

# name -> the spec's `dynds` section (kernel defaults: avg 2x2 stride 1, scale sum, alternate pad side).
# "baseline" is not a DynDS setting: it is the baseline recipe alone at the frontier's budgets.
SETTINGS: dict[str, dict | None] = {
    "baseline": None,
    "input-only": {"kernel": {"mode": "none"}, "schedule": {"kind": "stochastic", "p": 0.5}},
    "phase-first50": {"schedule": {"kind": "phase", "start": 0.0, "end": 0.5}},
    "default": {"schedule": {"kind": "stochastic", "p": 0.5}},
    "p0.5-last20full": {"schedule": {"kind": "stochastic", "p": 0.5, "final_full_fraction": 0.2}},
    "anneal-0.8to0": {"schedule": {"kind": "stochastic", "p": 0.8, "p_end": 0.0}},
    "periodic-RF": {"schedule": {"kind": "periodic", "pattern": "RF"}},
    "adaptive": {"schedule": {"kind": "adaptive"}},
    # DynDS's relatives (docs/library.md), each with its source's defaults, on the same budget and baselines
    "progressive": {"schedule": {"kind": "progressive"}},
    "mixsize": {"schedule": {"kind": "mixsize"}},
    "progressive-pooled": {"schedule": {"kind": "progressive", "kernels": "pooled"}},  # DynDS's 2x2 kernels at 16 px
    "progressive-fixres": {"schedule": {"kind": "progressive"}, "bn_recalibration": {"batches": 50}},
    "mixsize-fixres": {"schedule": {"kind": "mixsize"}, "bn_recalibration": {"batches": 50}},
    "default-fixres": {"schedule": {"kind": "stochastic", "p": 0.5}, "bn_recalibration": {"batches": 50}},
}
# --methods: each method's settings, added to --settings (the baseline frontier always comes with them).
METHODS: dict[str, list[str]] = {
    "dynds": ["input-only", "phase-first50", "default"],
    "progressive": ["progressive", "progressive-pooled"],  # Composer's ProgressiveResizing defaults; + pooled kernels
    "mixsize": ["mixsize"],  # Mix&Match (Hoffer et al. 2019), sizes clamped to the data's 32 px
    "fixres": ["progressive-fixres", "mixsize-fixres", "default-fixres"],  # FixRes BN recalibration on each
}
# How a setting's point reads against the baseline's band (app.leaderboard.position's words).
BAND_WORDS = {
    "above": "above the baseline's band",
    "within": "within the baseline's band",
    "below": "below the baseline's band",
    "unknown": "outside the band's budgets (no baseline that short or that long)",
}
LABELS = {
    "baseline": "baseline",
    "input-only": "input /2 only (3x3 kernels)",
    "phase-first50": "phase: first 50% reduced, 2x2 kernels",
    "default": "default: p=0.5, 2x2 avg kernels, BN frozen",
    "p0.5-last20full": "p=0.5, last 20% full",
    "anneal-0.8to0": "p annealed 0.8 -> 0",
    "periodic-RF": "periodic RF",
    "adaptive": "adaptive",
    "progressive": "progressive resizing (Composer defaults)",
    "mixsize": "Mix&Match sizes 16/24/32 px",
    "progressive-pooled": "progressive, 2x2 pooled kernels at 16 px",
    "progressive-fixres": "progressive + FixRes BN recalibration",
    "mixsize-fixres": "Mix&Match + FixRes BN recalibration",
    "default-fixres": "default + FixRes BN recalibration",
}


# ---------------------------------------------------------------- the jobs


DATA_NAMES = {"imagefolder": "CIFAR-10 JPEG", "fashion-mnist": "Fashion-MNIST"}
FASHION = "fashion-mnist"  # --data fashion-mnist: the Debian package dataset-fashion-mnist (28 px, grey)


def data_section(args) -> dict:
    """The spec's data: the shared CIFAR-10 JPEG archive (or another image-folder archive), or Fashion-MNIST."""
    if str(args.data) == FASHION:
        return {"dataset": FASHION, "train_subset": args.subset, "val_subset": args.val_subset}
    return {"dataset": "imagefolder", "root": str(args.data), "train_subset": args.subset, "val_subset": args.val_subset}


def base_spec(args, seed: int, epochs: int) -> dict:
    return {
        "name": "tradeoff",
        "model": {"arch": args.arch},
        "data": data_section(args),
        "train": {
            "epochs": epochs,
            "batch_size": 128,
            "optimizer": "sgd",
            "lr": 0.2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            "lr_schedule": "onecycle",
            "seed": seed,
            "device": args.device,
            "channels_last": True,
            "num_threads": args.threads,
            "pairing": "lockstep",
        },
    }


def frontier_epochs(epochs: int) -> list[int]:
    """25/50/75/100 % of ``epochs``, rounded half up, at least 1, distinct (as app.leaderboard.frontier_epochs)."""
    return sorted({max(1, int(epochs * f + 0.5)) for f in FRONTIER_FRACTIONS})


def plan_jobs(args) -> list[dict]:
    """Every job of the study: per seed, the settings' jobs, then the baseline budgets (longest first)."""
    jobs = []
    for seed in args.seeds:
        for name in args.settings:
            if SETTINGS[name] is None:
                continue
            spec = {
                **base_spec(args, seed, args.epochs),
                "name": f"tradeoff-{name}-s{seed}",
                "dynds": SETTINGS[name],
                "baseline": True,
                "equal_time_baseline": True,
            }
            jobs.append({"key": f"{name}/s{seed}/e{args.epochs}", "setting": name, "seed": seed, "epochs": args.epochs, "spec": spec})
        if "baseline" in args.settings:
            for e in sorted(frontier_epochs(args.epochs), reverse=True):
                spec = {
                    **base_spec(args, seed, e),
                    "name": f"tradeoff-baseline-e{e}-s{seed}",
                    "dynds": {"schedule": {"kind": "none"}},
                    "baseline": False,
                    "equal_time_baseline": False,
                }
                jobs.append({"key": f"baseline/s{seed}/e{e}", "setting": "baseline", "seed": seed, "epochs": e, "spec": spec})
    return jobs


def _init_worker(threads: int) -> None:
    # A job process dies with the study (Linux: the parent-death signal): a study killed mid-run must not leave
    # its jobs training on, taking the cores from whatever runs next.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the job ends on its own
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run_job(job: dict) -> dict:
    """One job, as the service's worker runs it: ``train(JobSpec.parse(spec))``; the record to store."""
    from dynds_core import JobSpec, train
    from dynds_core.trainer import ProcessSettings

    t0 = time.perf_counter()
    res = train(JobSpec.parse(job["spec"]), process=ProcessSettings.measured())  # as a Celery worker runs it
    return {
        **{k: job[k] for k in ("key", "setting", "seed", "epochs")},
        "wall_s": time.perf_counter() - t0,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "result": res.model_dump(mode="json"),
    }


def done_keys(path: Path | None) -> set[str]:
    if path is None or not path.exists():
        return set()
    return {rec["key"] for rec in read_records(path)}


def read_records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: the job runs again with --resume
            continue
        # Records of the earlier script (--out before the study's rewrite) lack these.
        rec.setdefault("epochs", rec["result"]["spec"]["train"]["epochs"])
        rec.setdefault("key", f"{rec['setting']}/s{rec['seed']}/e{rec['epochs']}")
        rec.setdefault("wall_s", 0.0)
        records.append(rec)
    return records


def one_line(rec: dict) -> str:
    r = rec["result"]
    d = r["dynds"]
    if rec["setting"] == "baseline":
        return f"{rec['key']:>24}: {d['final_val_acc']:.2f}% in {d['train_time_s']:.0f} s (wall {rec['wall_s']:.0f} s)"

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def pt(x):
        return "n/a" if x is None else f"{x:+.2f} pt"

    return (
        f"{rec['key']:>24}: {d['final_val_acc']:.2f}% in {d['train_time_s']:.0f} s, saving {pct(r['time_saving'])} "
        f"(interleaved {pct(r['time_saving_interleaved'])}, pairing {r.get('pairing')}), delta {pt(r['acc_delta'])}, "
        f"equal-time gap {pt(r['equal_time_gap'])}{', NOISY' if r.get('timing_noisy') else ''} (wall {rec['wall_s']:.0f} s)"
    )


# ---------------------------------------------------------------- rows and cells


def leaderboard_module():
    """app.leaderboard (the service's own cells and frontier), or None where the service extra is not installed."""
    try:
        from app import leaderboard as lb
    except ImportError:  # `pip install dynds` without [service]: dynds_core.stats directly
        return None
    return lb


def row_of(rec: dict, job_id: int, lb) -> dict:
    """A leaderboard row from one stored JobResult, with the columns the service stores (app.crud.job_columns,
    SUMMARY_ROW_COLUMNS, frontier_rows' step counts)."""
    from dynds_core import JobResult

    res = JobResult.model_validate(rec["result"])
    spec = res.spec
    row = {
        "id": job_id,
        "job_id": job_id,
        "name": spec["name"],
        "arch": spec["model"]["arch"],
        "dataset": spec["data"]["dataset"],
        "schedule_kind": spec["dynds"]["schedule"]["kind"],
        "setting": spec["dynds"],
        "seed": spec["train"]["seed"],
        **res.summary(),
        "dynds_steps": res.dynds.steps,
        "baseline_steps": res.baseline.steps if res.baseline else None,
        "equal_time_steps": res.equal_time.steps if res.equal_time else None,
        "reduced_fraction": res.dynds.steps_reduced / max(res.dynds.steps, 1),
        "study_setting": rec["setting"],
        "epochs": rec["epochs"],
    }
    if lb is not None:
        row.update(
            {
                "track": lb.track_of(spec),
                "recipe_hash": lb.recipe_hash(spec),
                "recipe": lb.recipe_of(spec),
                "frontier_key": lb.frontier_key(spec),
                "setting_key": lb.setting_key(spec["dynds"]),
            }
        )
    else:
        row.update({"track": f"{spec['model']['arch']}/{spec['data']['dataset']}/e{spec['train']['epochs']}", "setting_key": rec["setting"]})
    return row


def _direct_cells(rows: list[dict], min_seeds: int) -> dict[str, dict]:
    """Without the leaderboard's API: the same statistics from dynds_core.stats and dynds_core.verdict."""
    from dynds_core.stats import mean_ci95
    from dynds_core.verdict import judge

    cells = {}
    for name in {r["study_setting"] for r in rows if r["time_saving"] is not None}:
        rs = [r for r in rows if r["study_setting"] == name and r["time_saving"] is not None]
        cell = {"n_seeds": len({r["seed"] for r in rs}), "n_noisy": sum(bool(r["timing_noisy"]) for r in rs)}
        for field, key in (
            ("time_saving", "time_saving"),
            ("acc_delta", "acc_delta"),
            ("equal_time_gap", "equal_time_gap"),
            ("dynds_acc", "dynds_acc"),
        ):
            mean, ci = mean_ci95([r[field] for r in rs if r[field] is not None])
            cell[f"{key}_mean"], cell[f"{key}_ci95"] = mean, list(ci) if ci else None
        gaps = [r["equal_time_gap"] for r in rs if r["equal_time_gap"] is not None]
        v = judge(
            time_saving=cell["time_saving_mean"],
            acc_delta=cell["acc_delta_mean"],
            gap_mean=cell["equal_time_gap_mean"],
            gap_ci95=tuple(cell["equal_time_gap_ci95"]) if cell["equal_time_gap_ci95"] else None,
            n_seeds=len(gaps),
            min_seeds=min_seeds,
            timing_noisy=cell["n_noisy"] > 0,
        )
        cell["verdict"], cell["verdict_sentence"] = v.kind, v.sentence
        cells[name] = cell
    return cells


def _direct_frontier(rows: list[dict], full_epochs: int, cells: dict[str, dict]) -> tuple[list[dict], dict[str, str]]:
    from dynds_core.stats import mean_ci95

    points = []
    for e in frontier_epochs(full_epochs):
        accs = [r["dynds_acc"] for r in rows if r["study_setting"] == "baseline" and r["epochs"] == e]
        if accs:
            mean, ci = mean_ci95(accs)
            points.append(
                {
                    "time_fraction": e / full_epochs,
                    "acc_mean": mean,
                    "acc_ci95": list(ci) if ci else None,
                    "n_seeds": len(accs),
                    "sources": ["baseline_only"],
                }
            )
    positions = {}
    for name, c in cells.items():
        x, acc = 1 - c["time_saving_mean"], c["dynds_acc_mean"]
        xs = [p["time_fraction"] for p in points]
        if not points or not xs[0] <= x <= xs[-1]:
            positions[name] = "unknown"
            continue
        i = max(j for j in range(len(xs)) if xs[j] <= x)
        j = min(i + 1, len(xs) - 1)
        t = 0 if j == i else (x - xs[i]) / (xs[j] - xs[i])
        band = [(p["acc_ci95"] or [p["acc_mean"]] * 2) for p in (points[i], points[j])]
        lo, hi = band[0][0] + t * (band[1][0] - band[0][0]), band[0][1] + t * (band[1][1] - band[0][1])
        positions[name] = "above" if acc > hi else "below" if acc < lo else "within"
    return points, positions


def aggregate(records: list[dict], *, min_seeds: int, include_noisy: bool, max_acc_drop: float) -> dict:
    """Cells per study setting, the baseline's accuracy, and the frontier, from stored records."""
    from dynds_core.stats import mean_ci95

    lb = leaderboard_module()
    rows = [row_of(rec, i + 1, lb) for i, rec in enumerate(records)]
    full_epochs = max((r["epochs"] for r in rows if r["study_setting"] != "baseline"), default=max((r["epochs"] for r in rows), default=0))
    main_rows = [r for r in rows if r["epochs"] == full_epochs]
    extra = {}  # figures the leaderboard's cells do not carry: from the rows directly
    for name in {r["study_setting"] for r in main_rows}:
        rs = [
            r
            for r in main_rows
            if r["study_setting"] == name
            and (include_noisy or not r["timing_noisy"] or all(x["timing_noisy"] for x in main_rows if x["study_setting"] == name))
        ]
        extra[name] = {
            "interleaved": mean_ci95([r["time_saving_interleaved"] for r in rs if r["time_saving_interleaved"] is not None]),
            "reduced": mean_ci95([r["reduced_fraction"] for r in rs])[0],
            "flop_saving": mean_ci95([r["flop_saving"] for r in rs if r["flop_saving"] is not None])[0],
        }
    base_accs = [r["dynds_acc"] for r in main_rows if r["study_setting"] == "baseline"]
    out = {
        "rows": rows,
        "full_epochs": full_epochs,
        "extra": extra,
        "aggregation": None,
        "baseline_acc": mean_ci95(base_accs) + (len(base_accs),) if base_accs else None,
    }
    if lb is not None:
        board = lb.build_leaderboard(main_rows, max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy)
        by_key = {r["setting_key"]: r["study_setting"] for r in main_rows}
        cells = {}
        for t in board["tracks"]:
            for e in t["entries"]:
                cells[by_key[e["setting_key"]]] = e
        out["cells"] = cells
        tracks = board["tracks"]
        frontier = (
            lb.build_frontier(rows, track=tracks[0]["track_key"], max_acc_drop=max_acc_drop, min_seeds=min_seeds, include_noisy=include_noisy)
            if len(tracks) == 1
            else None
        )
        if frontier is not None:
            out["frontier"] = frontier["baseline"]
            out["positions"] = {by_key[p["setting_key"]]: p["position"] for p in frontier["dynds"]}
        else:
            out["frontier"], out["positions"] = _direct_frontier(rows, full_epochs, cells)
        out["aggregation"] = "app.leaderboard.build_leaderboard and build_frontier" + (
            "" if frontier is not None else " (frontier: dynds_core.stats, more than one track)"
        )
    else:
        out["cells"] = _direct_cells(main_rows, min_seeds)
        out["frontier"], out["positions"] = _direct_frontier(rows, full_epochs, out["cells"])
        out["aggregation"] = "dynds_core.stats and dynds_core.verdict directly (app.leaderboard lacks build_frontier / min_seeds)"
    return out


# ---------------------------------------------------------------- the table


def _ci(mean, ci, scale=1.0, digits=1) -> str:
    if mean is None:
        return "n/a"
    if ci is None:
        return f"{scale * mean:.{digits}f} (1 seed)"
    return f"{scale * mean:.{digits}f} [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"


def print_table(agg: dict, names: list[str], command: str) -> None:
    cells, extra, pos = agg["cells"], agg["extra"], agg.get("positions", {})
    rows = agg["rows"]
    seeds = sorted({r["seed"] for r in rows})
    print(f"\n    {command}\n")
    print(
        "| setting | seeds | reduced batches | FLOP saving | time saving, lockstep (%) | time saving, interleaved (%) | test acc (%) "
        "| acc delta (pt) | gap to equal-time (pt) | verdict | frontier |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    if agg.get("baseline_acc"):
        mean, ci, n = agg["baseline_acc"]
        print(f"| baseline | {n} | 0% | 0% | 0 | 0 | {_ci(mean, ci, digits=2)} | | | | on it |")
    for name in names:
        if name == "baseline" or name not in cells:
            continue
        c, x = cells[name], extra.get(name, {})
        il = x.get("interleaved", (None, None))
        noisy = f" ({c['n_noisy']} noisy)" if c.get("n_noisy") else ""
        print(
            f"| {LABELS.get(name, name)} | {c['n_seeds']}{noisy} | {x.get('reduced') or 0:.0%} | {x.get('flop_saving') or 0:.0%} "
            f"| {_ci(c['time_saving_mean'], c['time_saving_ci95'], 100)} | {_ci(il[0], il[1], 100)} "
            f"| {_ci(c['dynds_acc_mean'], c['dynds_acc_ci95'], digits=2)} | {_ci(c['acc_delta_mean'], c['acc_delta_ci95'], digits=2)} "
            f"| {_ci(c['equal_time_gap_mean'], c['equal_time_gap_ci95'], digits=2)} | {c['verdict']} | {pos.get(name, 'unknown')} |"
        )
    print(f"\n(mean [95 % interval, Student t over seeds {', '.join(map(str, seeds))}]; cells by {agg['aggregation']}.)")
    for name in names:
        if name in cells:
            print(f"- {LABELS.get(name, name)}: {cells[name]['verdict_sentence']}")
    if agg.get("frontier"):
        print(f"\nBudget frontier: the baseline recipe's test accuracy against its time as a fraction of the {agg['full_epochs']}-epoch budget")
        print("| time fraction | test acc (%) | seeds | from |")
        print("|---|---|---|---|")
        for p in agg["frontier"]:
            print(
                f"| {p['time_fraction']:.2f} | {_ci(p['acc_mean'], p['acc_ci95'], digits=2)} | {p['n_seeds']} | {', '.join(p.get('sources', []))} |"
            )
        for name in names:
            if name in cells and cells[name]["time_saving_mean"] is not None:
                c = cells[name]
                print(
                    f"- {LABELS.get(name, name)}: ({1 - c['time_saving_mean']:.2f}, {c['dynds_acc_mean']:.2f}%): "
                    f"{BAND_WORDS[pos.get(name, 'unknown')]}"
                )


def hardware_of(rec: dict) -> str:
    """The hardware key a study record was measured on (``unknown`` for records from before it was recorded)."""
    hw = rec["result"].get("hardware")
    return hw["key"] if isinstance(hw, dict) and hw.get("key") else "unknown"


def by_hardware(records: list[dict]) -> dict[str, list[dict]]:
    """Records per hardware key: a study is never pooled across machines (a table per key)."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(hardware_of(rec), []).append(rec)
    return groups


def table_from(path: Path, args, command: str | None = None) -> int:
    records = read_records(path)
    if not records:
        print(f"no finished jobs in {path}")
        return 1
    groups = by_hardware(records)
    for key, recs in sorted(groups.items()):
        if len(groups) > 1:
            print(f"\n## on {key}: {len(recs)} of the {len(records)} jobs")
        _table_of(recs, args, command or f"python bench/tradeoff.py --table-only --out {path}")
    return 0


def _table_of(records: list[dict], args, command: str) -> None:
    names = [n for n in SETTINGS if n in {r["setting"] for r in records}]
    agg = aggregate(records, min_seeds=args.min_seeds, include_noisy=args.include_noisy, max_acc_drop=args.max_acc_drop)
    spec = records[0]["result"]["spec"]
    dates = sorted(r["finished_at"][:10] for r in records if r.get("finished_at"))
    walls = sum(r.get("wall_s", 0) for r in records)
    import torch

    data = DATA_NAMES.get(spec["data"]["dataset"], spec["data"]["dataset"])
    print(
        f"# tradeoff: {spec['model']['arch']}, {data}, train_subset={spec['data']['train_subset']}, "
        f"val={spec['data']['val_subset'] or 'all'}, epochs={agg['full_epochs']}, {len(records)} jobs, "
        f"device {records[0]['result']['device']}, hardware {hardware_of(records[0])}, torch {torch.__version__}, "
        f"measured {dates[0]}..{dates[-1]}, {walls / 60:.0f} job-minutes"
    )
    print_table(agg, names, command)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ARCHIVE), help=f"an image-folder archive (default: the shared CIFAR-10 JPEGs) or {FASHION!r}")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--subset", type=int, default=10000, help="stratified training images (default 10000)")
    p.add_argument("--val-subset", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--settings",
        default="baseline,input-only,phase-first50,default",
        help=f"comma-separated, from {', '.join(SETTINGS)} (baseline: the recipe alone at 25/50/75/100 %% of the epochs)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated, from {', '.join(METHODS)}: their settings (and the baseline frontier) added to --settings",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores // jobs)")
    p.add_argument("--jobs", type=int, default=1, help="jobs run at once, in separate processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="JSON lines, one per finished job, appended as each finishes")
    p.add_argument("--resume", action="store_true", help="skip the jobs already in --out")
    p.add_argument("--table-only", action="store_true", help="only print the table from --out")
    p.add_argument("--print-specs", action="store_true", help="print the jobs' specs (JSON lines, for the service) and exit")
    p.add_argument("--min-seeds", type=int, default=3, help="seeds a verdict needs (as the leaderboard)")
    p.add_argument("--include-noisy", action="store_true", help="count jobs flagged timing_noisy (left out by default, as the leaderboard)")
    p.add_argument("--max-acc-drop", type=float, default=0.5)
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 images, 500 test images, 2 epochs, seeds 0,1, baseline and default")
    args = p.parse_args(argv)
    if args.quick:
        args.subset, args.val_subset, args.epochs, args.seeds, args.settings = 1000, 500, 2, "0,1", "baseline,default"
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in methods if m not in METHODS]
        if bad:
            p.error(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        extra = ["baseline"] + [name for m in methods for name in METHODS[m]]
        args.settings += [name for name in extra if name not in args.settings]
    unknown = [n for n in args.settings if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 2) // args.jobs)
    command = "python bench/tradeoff.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.table_only:
        if args.out is None:
            p.error("--table-only needs --out (the JSON lines of a study)")
        return table_from(args.out, args)

    jobs = plan_jobs(args)
    if args.print_specs:
        for job in jobs:
            print(json.dumps(job["spec"]))
        return 0
    done = done_keys(args.out) if args.resume else set()
    todo = [j for j in jobs if j["key"] not in done]
    print(
        f"# tradeoff study: {len(jobs)} jobs ({len(jobs) - len(todo)} already in {args.out}), {args.jobs} at once, "
        f"{args.threads} torch threads each; started {dt.datetime.now().isoformat(timespec='seconds')}",
        flush=True,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    finished = []
    ctx = mp.get_context("spawn")  # fresh interpreters: no torch state (threads, allocator) inherited
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.threads,)) as pool:
        futures = {pool.submit(run_job, job): job for job in todo}
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # one failed job must not lose the others
                print(f"{job['key']:>24}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            finished.append(rec)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            print(one_line(rec), flush=True)
    if args.out:
        return table_from(args.out, args, command)
    for key, recs in sorted(by_hardware(finished).items()):
        print(f"\n## on {key}")
        agg = aggregate(recs, min_seeds=args.min_seeds, include_noisy=args.include_noisy, max_acc_drop=args.max_acc_drop)
        print_table(agg, args.settings, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
