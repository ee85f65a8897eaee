"""``dynds train SPEC``: run a job spec locally, with progress bars, a summary table and the result JSON.

    dynds train examples/quick.yaml --out result.json
    dynds train examples/synthetic.yaml --epochs 1 --quiet      # result JSON on stdout

Relative paths inside a spec (``data.root``) are taken relative to the current directory, as
every other path on the command line is. Progress and the table go to stderr, so stdout carries
only the JSON when no ``--out`` is given. A bad spec, missing data or a model that cannot take a
reduced pass exits with status 2 and a short message; Ctrl-C stops the run after the current
step and still writes what finished (status 130).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="run a job spec (DynDS run, paired baseline, equal-time baseline) on this machine",
        description="Train the job in SPEC (YAML or JSON) and report time saving, accuracy delta and FLOPs.",
    )
    p.add_argument("spec", metavar="SPEC", help="job spec file (.yaml or .json); relative paths in it are relative to the current directory")
    p.add_argument("--out", metavar="FILE", help="write the JobResult JSON here (atomically) instead of printing it")
    p.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    p.add_argument(
        "--threads", type=positive_int, metavar="N", help="torch threads (default: train.num_threads, else $OMP_NUM_THREADS, else all cores)"
    )
    p.add_argument("--cache-dir", metavar="DIR", help="where decoded data sets are cached (default: $DYNDS_CACHE_DIR or ~/.cache/dynds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument(
        "--checkpoint-dir", metavar="DIR",
        help="write checkpoints here every train.checkpoint_every_s seconds and at Ctrl-C, so that --resume DIR can continue the job",
    )  # fmt: skip
    p.add_argument(
        "--resume", metavar="DIR", help="continue from the newest valid checkpoint in DIR (or from that checkpoint file); checkpoints go on into it"
    )
    p.set_defaults(func=run_train)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the error into a usage message and exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def apply_overrides(spec: Any, *, device: str | None, epochs: int | None, source: str) -> Any:
    """The spec with command-line overrides, validated like the file itself."""
    from .spec import JobSpec

    if device is None and epochs is None:
        return spec
    data = spec.canonical()
    if device is not None:
        data["train"]["device"] = device
    if epochs is not None:
        data["train"]["epochs"] = epochs
    return JobSpec.parse(data, source=f"{source} (with command-line overrides)")


def choose_threads(spec_threads: int | None, cli_threads: int | None) -> int:
    """One process owns the machine: all cores unless the spec, the flag or OMP_NUM_THREADS says otherwise."""
    if cli_threads is not None:
        return cli_threads
    if spec_threads is not None:
        return spec_threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def out_path_problem(path: str | Path) -> str | None:
    """Why the result could not be written to ``path`` (checked before hours of training), or None."""
    path = Path(path)
    if path.is_dir():
        return f"--out {path} is a directory; give a file name, e.g. {path / 'result.json'}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--out {path}: cannot create the folder {path.parent} ({exc.strerror or exc}); choose another path"
    if not os.access(path.parent, os.W_OK):
        return f"--out {path}: the folder {path.parent} is not writable; choose another path"
    return None


def _fail(console, message: str) -> int:
    console.print(f"[bold red]dynds train:[/] {message}", highlight=False, soft_wrap=True)
    return EXIT_BAD_INPUT


def run_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    # Not a terminal (a log file, CI): rich would assume 80 columns and truncate the table.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    from .spec import JobSpec, SpecError

    try:
        spec = JobSpec.from_file(args.spec)
        spec = apply_overrides(spec, device=args.device, epochs=args.epochs, source=args.spec)
    except SpecError as exc:
        return _fail(console, str(exc))
    problem = out_path_problem(args.out) if args.out else None
    if problem:
        return _fail(console, problem)

    import torch

    from .data import DataError
    from .reduced import ReducedPassError
    from .trainer import ProcessSettings, train
    from .training.checkpoint import CheckpointError
    from .training.progress import InterruptFlag, ProgressCallback

    threads = choose_threads(spec.train.num_threads, args.threads)
    torch.set_num_threads(threads)
    stop = InterruptFlag()
    progress = None if args.quiet else ProgressCallback(console)
    callbacks = [stop] + ([progress] if progress else [])
    try:
        with stop.installed():
            if progress:
                progress.start()
            try:
                # a command-line run owns its process: the measured speed settings on (ProcessSettings)
                result = train(
                    spec, callbacks, cache_dir=args.cache_dir, process=ProcessSettings.measured(),
                    checkpoint_dir=args.checkpoint_dir, resume_from=args.resume,
                )  # fmt: skip
            finally:
                if progress:
                    progress.stop()
    except SpecError as exc:
        # raised by the trainer for settings the data or machine rule out (e.g. a batch larger than the data)
        return _fail(console, f"invalid spec in {args.spec}: " + "; ".join(f"{k}: {m}" for k, m in exc.errors))
    except DataError as exc:
        return _fail(console, f"{args.spec}: data (dataset {spec.data.dataset!r}, root {spec.data.root!r}): {exc}")
    except ReducedPassError as exc:
        return _fail(console, f"{args.spec}: model.arch {spec.model.arch!r} cannot take a reduced pass: {exc}")
    except CheckpointError as exc:
        return _fail(console, f"--resume {args.resume}: {exc}")

    text = json.dumps(result.model_dump(mode="json"), indent=2)
    if args.out:
        write_atomic(args.out, text + "\n")
    else:
        print(text)
    if not args.quiet:
        console.print(summary_table(result))
        if args.out:
            console.print(f"result written to {args.out}", highlight=False)
        where = args.checkpoint_dir or args.resume
        if stop.stopped and where:
            console.print(f"stopped; continue with: dynds train {args.spec} --resume {where}", highlight=False)
    return EXIT_INTERRUPTED if stop.stopped else 0


def _fmt(v: float | None, fmt: str, scale: float = 1.0, unit: str = "", missing: str = "n/a") -> str:
    return missing if v is None else f"{v * scale:{fmt}}{unit}"


def format_flops(v: float | None) -> str:
    """1.23e12 -> '1.23 TFLOP'."""
    if v is None:
        return "n/a"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}FLOP"
    return f"{v:.3g} FLOP"


SIZING_LABELS = {
    "lockstep_baseline": "the lockstep baseline's steps paired with DynDS's",
    "own_full_steps": "the DynDS run's own full steps",
    "paired_baseline": "the baseline run's time",
    "flop_ratio": "the FLOP ratio",
}
PAIRING_LABELS = {
    "lockstep": "lockstep: the DynDS run and its baseline ran one step of each in turn in this process, so both saw the same machine",
    "sequential": "sequential: the baseline ran first, then the DynDS run; a change of the machine's load between them skews this figure",
}


def summary_lines(result: Any) -> list[str]:
    """Every headline figure with what it means, and the verdict (one sentence) first."""
    lines = []
    if result.cancelled:
        lines.append("Cancelled: the figures below are partial.")
    if result.verdict_sentence:
        lines.append(f"Verdict: {result.verdict_sentence}")
    if result.time_saving is not None and result.pairing == "lockstep":
        lines.append(
            f"time saving {result.time_saving:+.1%}: 1 - DynDS train time / paired baseline train time, from each DynDS step "
            f"against the baseline's steps around it (the median per batch type; {PAIRING_LABELS['lockstep']})"
        )
        if result.time_saving_total is not None:
            lines.append(
                f"total-time saving {result.time_saving_total:+.1%}: the same ratio from the two runs' total train times, as the clock read "
                "them; far from the time saving when a burst of load hit part of the job"
            )
    elif result.time_saving is not None:
        lines.append(
            f"time saving {result.time_saving:+.1%}: 1 - DynDS train time / paired baseline train time "
            f"({PAIRING_LABELS.get(result.pairing, result.pairing)})"
        )
    else:
        lines.append("time saving: not measured (no paired baseline ran; set baseline: true)")
    if result.time_saving_interleaved is not None:
        lines.append(
            f"cross-check {result.time_saving_interleaved:+.1%}: the same saving estimated from the DynDS run's own full steps, "
            "timed between its reduced ones"
        )
    if result.timing_noisy:
        lines.append(f"timing noisy: {result.timing_noise}; do not rely on the time saving of this job")
    if result.acc_delta is not None:
        lines.append(f"accuracy delta {result.acc_delta:+.2f} pt: DynDS's final validation accuracy minus the baseline's (percentage points)")
    if result.flop_saving is not None:
        lines.append(f"FLOP saving {result.flop_saving:+.1%}: 1 - FLOPs of DynDS's training steps / the baseline's (forward and backward)")
    if result.equal_time_gap is not None:
        sizing = SIZING_LABELS.get(result.equal_time_sizing, result.equal_time_sizing)
        lines.append(
            f"equal-time gap {result.equal_time_gap:+.2f} pt: DynDS's accuracy minus the baseline trained for DynDS's train time "
            f"(its steps cut to match, sized by {sizing}); above 0, DynDS beats simply training less"
        )
    elif not result.cancelled:
        lines.append("equal-time gap: not run (set equal_time_baseline: true to compare with the baseline trained for the same time)")
    if result.target_accuracy is not None:
        set_in_spec = result.spec.get("train", {}).get("target_accuracy") is not None
        chosen = "set by train.target_accuracy" if set_in_spec else "the lowest final accuracy among the runs"
        lines.append(f"time to target: train time until the validation accuracy first reached {result.target_accuracy:.2f}% ({chosen})")
    return lines


def summary_table(result: Any):
    """Baseline vs DynDS vs equal-time: time, accuracy, FLOPs; then the headline figures, each explained."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .training.progress import RUN_LABELS

    table = Table(title=f"{result.spec.get('name', 'job')} on {result.device}")
    for col in ("run", "steps full/reduced", "train time", "val acc", "best", "FLOPs", "time to target"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for kind in ("baseline", "dynds", "equal_time"):
        r = getattr(result, kind)
        if r is None:
            continue
        table.add_row(
            RUN_LABELS[kind] + (" (cancelled)" if r.cancelled else ""),
            f"{r.steps_full}/{r.steps_reduced}",
            _fmt(r.train_time_s, ".1f", unit=" s"),
            _fmt(r.final_val_acc, ".2f", unit="%", missing="not evaluated"),
            _fmt(r.best_val_acc, ".2f", unit="%", missing="not evaluated"),
            format_flops(r.total_flops),
            _fmt(r.time_to_target_s, ".1f", unit=" s", missing="not reached"),
        )
    return Group(table, Text("\n".join(summary_lines(result))))
