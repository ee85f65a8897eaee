"""`dynds submit SPEC [--wait]`: submit a job to a server and, for CI, follow it and judge its outcome.

Exit codes: 0 the job succeeded and met the thresholds; 1 it failed, was cancelled, timed out or missed a
threshold; 2 the spec was refused, or the server could not be reached (after retrying: dynds/client.py)
or refused the token. Needs only httpx and the spec reader (no server code, no torch).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from dynds.commands.common import EXIT_JOB, EXIT_OK, EXIT_USAGE, fail

DEFAULT_SERVER = "http://127.0.0.1:8000"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a job spec to a server; with --wait, follow it (for CI)",
        description="Submit a job spec to a dynds server. With --wait, follow the job to its end; the "
        "exit code then says whether it succeeded and met the thresholds.",
    )
    p.add_argument("spec", help="the job spec, a YAML or JSON file (a relative data.root is made absolute here)")
    p.add_argument("--server", default=None, metavar="URL", help=f"the server's URL (default: $DYNDS_SERVER, else {DEFAULT_SERVER})")
    p.add_argument("--token", default=None, help="the API token (default: $DYNDS_TOKEN, else none)")
    p.add_argument("--force", action="store_true", help="run even if an identical job exists (default: reuse it)")
    p.add_argument("--wait", action="store_true", help="follow the job to its end; the exit code tells the outcome (default: return at once)")
    p.add_argument(
        "--min-time-saving",
        type=float,
        default=None,
        metavar="X",
        help="with --wait: fail unless time_saving >= X, a fraction, e.g. 0.1 (default: not checked)",
    )
    p.add_argument(
        "--max-acc-drop",
        type=float,
        default=None,
        metavar="Y",
        help="with --wait: fail if accuracy drops by more than Y points against the baseline (default: not checked)",
    )
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="with --wait: give up after S seconds (default: none)")
    p.add_argument(
        "--retry-for",
        type=float,
        default=120.0,
        metavar="S",
        help="keep retrying an unreachable server (or 502/503/504) for S seconds in a row (default: %(default)s)",
    )
    p.set_defaults(func=cmd_submit)


def validation_lines(problem: Any) -> list[str]:
    """A 422's errors, one line per key path ('train.epochs: ...'): from a problem body's ``errors``
    (docs/api.md), or a list of errors as such; anything else as one line."""
    if isinstance(problem, dict):
        errors = problem.get("errors")
        if not isinstance(errors, list):
            return [str(problem.get("detail") or problem)]
        problem = errors
    if not isinstance(problem, list):
        return [str(problem)]
    lines = []
    for err in problem:
        if not isinstance(err, dict):
            lines.append(f"  <spec>: {err}")
            continue
        loc = [str(p) for p in err.get("loc", [])]
        if loc[:2] == ["body", "spec"]:
            loc = loc[2:]
        elif loc[:1] == ["body"]:
            loc = loc[1:]
        lines.append(f"  {'.'.join(loc) or '<spec>'}: {err.get('msg', err)}")
    return lines


def threshold_failures(summary: dict[str, Any] | None, *, min_time_saving: float | None, max_acc_drop: float | None) -> list[str]:
    """Which of the CI thresholds a finished job missed, in words (empty: all met)."""
    summary = summary or {}
    failures = []
    if min_time_saving is not None:
        ts = summary.get("time_saving")
        if ts is None:
            failures.append("time_saving is unknown (the job ran no baseline): cannot check --min-time-saving")
        elif ts < min_time_saving:
            failures.append(f"time_saving {ts:.4f} is below --min-time-saving {min_time_saving}")
    if max_acc_drop is not None:
        delta = summary.get("acc_delta")
        if delta is None:
            failures.append("acc_delta is unknown (the job ran no baseline): cannot check --max-acc-drop")
        elif -delta > max_acc_drop:
            failures.append(f"accuracy dropped by {-delta:.2f} points, more than --max-acc-drop {max_acc_drop}")
    return failures


def format_summary(job: dict[str, Any]) -> str:
    s = job.get("summary") or {}

    def fmt(key: str, pattern: str) -> str:
        return pattern.format(s[key]) if s.get(key) is not None else "n/a"

    result = job.get("result") or {}
    pairing = result.get("pairing")
    line = (
        f"job {job['id']} {job['status']}: time_saving {fmt('time_saving', '{:.1%}')}"
        + (f" ({pairing})" if pairing else "")
        + (f", total-time {result['time_saving_total']:.1%}" if result.get("time_saving_total") is not None else "")
        + f", cross-check {fmt('time_saving_interleaved', '{:.1%}')}, "
        f"acc_delta {fmt('acc_delta', '{:+.2f} pt')}, flop_saving {fmt('flop_saving', '{:.1%}')}, "
        f"dynds_acc {fmt('dynds_acc', '{:.2f}%')}, baseline_acc {fmt('baseline_acc', '{:.2f}%')}, "
        f"equal_time_gap {fmt('equal_time_gap', '{:+.2f} pt')}"
    )
    if s.get("timing_noisy"):
        line += f"\ntiming noisy: {result.get('timing_noise') or 'the savings disagreed or the step times varied'}; do not rely on time_saving"
    if result.get("verdict_sentence"):
        line += f"\nverdict: {result['verdict_sentence']}"
    return line


def eta_words(seconds: float | None) -> str:
    """``ETA 3 min 20 s``-style words; empty when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return ""
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return "ETA " + (f"{h} h {m} min" if h else f"{m} min {sec} s" if m else f"{sec} s")


class ProgressReporter:
    """Follows a job's states as ``dynds submit --wait`` prints them.

    On a terminal: one live line (run, epoch, step, percent, ETA), rewritten in place, ended when the job
    is. In a log (CI, a pipe): a line when the job moves by ``every_fraction`` (5 %) or after ``every_s`` (60 s)
    with news, and at each change of status or run: about 20 lines for a job, not one per poll (114 before).
    The ETA extrapolates the job's fraction done from when this command first saw it move.
    """

    def __init__(
        self, stream: Any = None, *, interactive: bool | None = None, every_fraction: float = 0.05, every_s: float = 60.0, clock: Any = None
    ):
        import time

        from dynds.client import FINAL_STATES

        self.final_states = FINAL_STATES
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.every_fraction, self.every_s = every_fraction, every_s
        self.clock = clock or time.monotonic
        self._start: tuple[float, float] | None = None  # (time, fraction) when progress was first seen
        self._printed: tuple[float, float, str, str] | None = None  # (time, fraction, status, run) of the last line
        self._live = False  # a live line is on the terminal, not yet ended

    def eta_s(self, fraction: float, now: float) -> float | None:
        if self._start is None or fraction <= self._start[1]:
            return None
        t0, f0 = self._start
        return (now - t0) * (1 - fraction) / (fraction - f0)

    def line(self, job: dict[str, Any], now: float) -> str:
        p = job.get("progress") or {}
        if not p or job.get("status") != "running":
            return f"job {job['id']}: {job['status']}"
        eta = eta_words(self.eta_s(float(p.get("fraction") or 0.0), now))
        return (
            f"job {job['id']}: running {p.get('run', '')} epoch {p.get('epoch', 0) + 1}/{p.get('epochs', '?')} "
            f"step {p.get('step', 0)}/{p.get('total_steps', '?')} ({float(p.get('fraction') or 0):.0%})" + (f", {eta}" if eta else "")
        )

    def __call__(self, job: dict[str, Any]) -> None:
        now = self.clock()
        p = job.get("progress") or {}
        fraction = float(p.get("fraction") or 0.0)
        if p and self._start is None:
            self._start = (now, fraction)
        status, run = str(job.get("status")), str(p.get("run", ""))
        text = self.line(job, now)
        if self.interactive:
            self.stream.write("\r\x1b[2K" + text)
            self._live = True
            if status in self.final_states:
                self.end()
            self.stream.flush()
            return
        last = self._printed
        due = (
            last is None
            or (status, run) != (last[2], last[3])
            or fraction - last[1] >= self.every_fraction
            or (now - last[0] >= self.every_s and fraction > last[1])
        )
        if due:
            print(text, file=self.stream, flush=True)
            self._printed = (now, fraction, status, run)

    def end(self) -> None:
        """End the live line (a terminal's), so what follows starts on its own line."""
        if self._live:
            self.stream.write("\n")
            self.stream.flush()
            self._live = False


def progress_printer() -> ProgressReporter:
    """The reporter ``dynds submit --wait`` follows a job with (see ProgressReporter)."""
    return ProgressReporter()


def cmd_submit(args: argparse.Namespace) -> int:
    from dynds.client import FINAL_STATES, ApiError, Client, Retry, Unreachable, dashboard_url
    from dynds_core.spec import SpecError, read_spec_file, resolve_data_root

    try:
        spec = resolve_data_root(read_spec_file(args.spec), os.getcwd())
    except SpecError as exc:
        return fail(str(exc))
    server = args.server or os.environ.get("DYNDS_SERVER") or DEFAULT_SERVER
    token = args.token or os.environ.get("DYNDS_TOKEN")

    def note(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    try:
        with Client(server, token, retry=Retry(retry_for_s=args.retry_for), note=note) as api:
            try:
                job = api.submit(spec, force=args.force)
            except ApiError as exc:
                if exc.status_code == 422:
                    print(f"error: the server refused the spec {args.spec}:", file=sys.stderr)
                    for line in validation_lines(exc.body):
                        print(line, file=sys.stderr)
                    return EXIT_USAGE
                if exc.status_code in (401, 403):
                    hint = "pass --token or set DYNDS_TOKEN" if not token else "the token was refused; check it"
                    return fail(f"{exc} ({hint})")
                raise
            dedup = ""
            if job.get("deduplicated"):
                hw = job.get("hardware_key")
                # Where its figures were measured: a spec that should run elsewhere pins train.hardware instead.
                where = f", measured on {hw}" if hw else " (not run yet)" if job.get("status") == "queued" else ""
                dedup = f" (an identical job already exists{where}; --force runs it again, train.hardware pins other hardware)"
            print(f"job {job['id']} {job['status']}: {dashboard_url(server, job['id'])}{dedup}", flush=True)
            print(f"  API: {api.base}/jobs/{job['id']}", flush=True)
            for warning in job.get("warnings") or []:  # e.g. no live worker serves the hardware it asks for: it waits
                note(warning)
            if not args.wait:
                return EXIT_OK
            reporter = progress_printer()
            try:
                job = api.follow(job, timeout_s=args.timeout, on_state=reporter)
            except KeyboardInterrupt:
                reporter.end()
                return fail(f"stopped following job {job['id']}; it keeps running on the server", 130)
            reporter.end()
    except Unreachable as exc:
        return fail(f"cannot reach the server at {server}: {exc}")
    except ApiError as exc:
        return fail(str(exc))

    if job["status"] not in FINAL_STATES:
        return fail(f"job {job['id']} did not finish within --timeout {args.timeout} s (still {job['status']})", EXIT_JOB)
    if job["status"] != "succeeded":
        reason = f": {job['error']}" if job.get("error") else ""
        return fail(f"job {job['id']} {job['status']}{reason}", EXIT_JOB)
    print(format_summary(job), flush=True)
    failures = threshold_failures(job.get("summary"), min_time_saving=args.min_time_saving, max_acc_drop=args.max_acc_drop)
    for failure in failures:
        print(f"threshold missed: {failure}", file=sys.stderr)
    return EXIT_JOB if failures else EXIT_OK
