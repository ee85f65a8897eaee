"""`dynds submit SPEC [--wait]`: submit a job to a server and, for CI, follow it and judge its outcome.

Exit codes: 0 the job succeeded and met the thresholds; 1 it failed, was cancelled, timed out or missed a
threshold; 2 the spec was refused, or the server could not be reached (after retrying: dynds/client.py)
or refused the token. Needs only httpx and the spec reader (no server code, no torch).

With ``--require worth-it|no-worse`` (and ``--wait``) it gates on a decision over seeds instead (POST /gate,
app/gate.py): 0 pass; 1 fail; 2 as above; 3 inconclusive (--max-seeds reached without a decision); 4 the gate
could not decide (a seed's job failed or was cancelled, seeds ran on unlike hardware, or --timeout passed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from dynds.commands.common import EXIT_JOB, EXIT_OK, EXIT_USAGE, fail

DEFAULT_SERVER = "http://127.0.0.1:8000"
# --require's exit codes, by the gate's decision (0, 1 and 2 mean what they mean without it).
EXIT_INCONCLUSIVE, EXIT_UNDECIDED = 3, 4
GATE_EXIT = {"pass": EXIT_OK, "fail": EXIT_JOB, "inconclusive": EXIT_INCONCLUSIVE, "error": EXIT_UNDECIDED, "undecided": EXIT_UNDECIDED}
EXIT_CODES_HELP = """exit codes:
  0  the job succeeded and met the thresholds; with --require: the gate passed
  1  the job failed, was cancelled, timed out or missed a threshold; with --require: the gate failed
     (the interval shows the requirement does not hold)
  2  the spec or the flags were refused, or the server could not be reached or refused the token
  3  with --require: inconclusive (--max-seeds seeds ran and the interval still spans the threshold)
  4  with --require: the gate could not decide (a seed's job failed or was cancelled, seeds ran on
     unlike hardware, or --timeout passed first)

--require decides over seeds (POST /api/v1/gate): it reuses the finished jobs of the same recipe, setting
and hardware, runs the first --min-seeds seeds at once and one more after each look that does not decide,
up to --max-seeds. Each look's interval is corrected for looking again (Bonferroni over the planned looks),
so a wrong pass or fail happens at most 5 % of the time. worth-it: the equal-time gap's interval lies above
0 (DynDS beats the baseline trained for the same time); no-worse: the accuracy delta's interval lies above
-Y (--max-acc-drop, default 0.5)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a job spec to a server; with --wait, follow it (for CI)",
        description="Submit a job spec to a dynds server. With --wait, follow the job to its end; the "
        "exit code then says whether it succeeded and met the thresholds. With --require, gate on a decision "
        "over seeds instead.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        help="with --wait: fail if accuracy drops by more than Y points against the baseline (default: not checked); "
        "with --require no-worse: the drop the accuracy delta's interval must stay within (default: 0.5)",
    )
    p.add_argument(
        "--require",
        choices=("worth-it", "no-worse"),
        default=None,
        help="with --wait: decide over seeds (POST /api/v1/gate): worth-it: DynDS beats the baseline trained for the same "
        "time; no-worse: accuracy drops by at most --max-acc-drop (see exit codes below; default: no gate over seeds)",
    )
    p.add_argument("--min-seeds", type=int, default=3, metavar="N", help="with --require: seeds of the first look (default: %(default)s)")
    p.add_argument(
        "--max-seeds", type=int, default=None, metavar="N", help="with --require: the most seeds to run (default: 5, or --min-seeds if larger)"
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


def gate_flag_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with --require's companions (None: nothing)."""
    if args.require is None:
        return None
    if not args.wait:
        return "--require needs --wait (the decision comes once the seeds have run)"
    if args.force:
        return "--require reuses finished seeds; it does not take --force"
    if args.min_time_saving is not None:
        return "--min-time-saving checks one job; --require judges the interval over seeds (leave one out)"
    if args.max_acc_drop is not None and args.require != "no-worse":
        return "--max-acc-drop goes with --require no-worse (worth-it compares with the equal-time baseline)"
    if args.max_acc_drop is not None and args.max_acc_drop < 0:
        return f"--max-acc-drop must be >= 0 (points): {args.max_acc_drop}"
    if args.min_seeds < 2:
        return f"--min-seeds must be >= 2 (one seed has no interval): {args.min_seeds}"
    if args.max_seeds is not None and args.max_seeds < args.min_seeds:
        return f"--max-seeds must be >= --min-seeds ({args.min_seeds}): {args.max_seeds}"
    return None


def format_gate(g: Mapping[str, Any]) -> str:
    """The gate's answer in a few lines: the decision and its reason, then one line per seed that ran or runs."""
    lines = [f"gate {g['decision']}: {g['reason']}"]
    for s in g["seeds"]:
        if s["status"] in ("missing", "not_needed"):
            continue
        value = f" {g['metric']} {s['value']:+.2f} pt" if s.get("value") is not None else ""
        jobs = ", ".join(f"job {i}" for i in s["job_ids"])
        lines.append(f"  seed {s['seed']}: {s['status']}{value} ({jobs})")
    lines += [f"  note: {n}" for n in g.get("notes") or []]
    return "\n".join(lines)


class GateReporter:
    """Prints the gate's answers as ``dynds submit --require`` follows it: a line when the decision or the seeds
    change (not at every ask), and each pending job's progress through a ProgressReporter of its own."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stdout
        self._last: tuple | None = None
        self._job: int | None = None
        self._progress: ProgressReporter | None = None

    def gate(self, g: Mapping[str, Any]) -> None:
        self.end()
        key = (g["decision"], tuple((s["seed"], s["status"], tuple(s["job_ids"])) for s in g["seeds"]))
        if key != self._last and g["decision"] == "undecided":
            print(f"gate undecided: {g['reason']}", file=self.stream, flush=True)
        self._last = key

    def state(self, job: dict[str, Any]) -> None:
        if job.get("id") != self._job:
            self.end()
            self._job, self._progress = job.get("id"), ProgressReporter(self.stream)
        assert self._progress is not None
        self._progress(job)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.end()


def cmd_submit(args: argparse.Namespace) -> int:
    from dynds.client import FINAL_STATES, ApiError, Client, Retry, Unreachable, dashboard_url
    from dynds_core.spec import SpecError, read_spec_file, resolve_data_root

    problem = gate_flag_problem(args)
    if problem:
        return fail(problem)
    try:
        spec = resolve_data_root(read_spec_file(args.spec), os.getcwd())
    except SpecError as exc:
        return fail(str(exc))
    server = args.server or os.environ.get("DYNDS_SERVER") or DEFAULT_SERVER
    token = args.token or os.environ.get("DYNDS_TOKEN")

    def note(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    if args.require is not None:
        return gate_command(args, spec, server, token, note)

    try:
        with Client(server, token, retry=Retry(retry_for_s=args.retry_for), note=note) as api:
            try:
                job = api.submit(spec, force=args.force)
            except ApiError as exc:
                code = refused(exc, args.spec, token)
                if code is not None:
                    return code
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


def refused(exc: Any, spec_path: str, token: str | None) -> int | None:
    """The exit code and message for a 422 or a refused token (None: another error)."""
    if exc.status_code == 422:
        print(f"error: the server refused the spec {spec_path}:", file=sys.stderr)
        for line in validation_lines(exc.body):
            print(line, file=sys.stderr)
        return EXIT_USAGE
    if exc.status_code in (401, 403):
        hint = "pass --token or set DYNDS_TOKEN" if not token else "the token was refused; check it"
        return fail(f"{exc} ({hint})")
    return None


def gate_command(args: argparse.Namespace, spec: dict[str, Any], server: str, token: str | None, note: Any) -> int:
    """``dynds submit --wait --require ...``: ask POST /gate until it decides; the exit code is the decision's."""
    from dynds.client import ApiError, Client, Retry, Unreachable

    reporter = GateReporter()
    try:
        with Client(server, token, retry=Retry(retry_for_s=args.retry_for), note=note) as api:
            print(f"gate: {args.require}, asking {api.base}/gate", flush=True)
            try:
                g = api.follow_gate(
                    spec,
                    require=args.require,
                    max_acc_drop=args.max_acc_drop,
                    min_seeds=args.min_seeds,
                    max_seeds=args.max_seeds,
                    timeout_s=args.timeout,
                    on_gate=reporter.gate,
                    on_state=reporter.state,
                )
            except KeyboardInterrupt:
                reporter.end()
                return fail("stopped asking the gate; its seeds keep running on the server (ask again: it reuses them)", 130)
    except Unreachable as exc:
        reporter.end()
        return fail(f"cannot reach the server at {server}: {exc}")
    except ApiError as exc:
        reporter.end()
        code = refused(exc, args.spec, token)
        return code if code is not None else fail(str(exc))
    reporter.end()
    for warning in g.get("warnings") or []:
        note(warning)
    print(format_gate(g), flush=True)
    if g["decision"] == "undecided":
        return fail(f"the gate did not decide within --timeout {args.timeout} s", EXIT_UNDECIDED)
    return GATE_EXIT[g["decision"]]
