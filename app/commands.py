"""The service's commands: `dynds serve`, `dynds worker`, `dynds submit`, `dynds token`.

    dynds serve --port 8000                                  # API + embedded executor (no broker set)
    DYNDS_BROKER_URL=redis://localhost:6379/0 dynds worker --queue gpu
    dynds submit job.yaml --server http://host:8000 --wait --min-time-saving 0.1 --max-acc-drop 0.5
    dynds token create --name ci

`dynds submit` exit codes: 0 the job succeeded and met the thresholds; 1 it failed, was cancelled,
timed out or missed a threshold; 2 the spec was refused, or the server could not be reached or
refused the token. Heavy imports happen inside the commands so that `dynds --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_JOB, EXIT_USAGE = 0, 1, 2
FINAL_STATES = ("succeeded", "failed", "cancelled")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the API (and, with no broker configured, the job executor)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    add_log_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a Celery worker that executes jobs (needs DYNDS_BROKER_URL)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1: one per GPU)")
    p.add_argument("--queue", default=None, help="queue to consume (default: DYNDS_QUEUE, 'dynds')")
    p.add_argument("--name", default=WORKER_NAME, metavar="NAME",
                   help="the worker's Celery node name (default %(default)s, %%h: the host name); two workers on one host "
                        "need different names, or they share one control queue and answer pings for each other")
    add_log_arguments(p, old_spelling="--loglevel")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("submit", help="submit a job spec to a server; with --wait, follow it (for CI)")
    p.add_argument("spec", help="the job spec, a YAML or JSON file")
    p.add_argument("--server", default=os.environ.get("DYNDS_SERVER", "http://127.0.0.1:8000"), help="the server's URL")
    p.add_argument("--token", default=None, help="API token (default: $DYNDS_TOKEN)")
    p.add_argument("--force", action="store_true", help="run even if an identical job exists")
    p.add_argument("--wait", action="store_true", help="follow the job to its end; the exit code tells the outcome")
    p.add_argument("--min-time-saving", type=float, default=None, metavar="X",
                   help="fail unless time_saving >= X (a fraction, e.g. 0.1)")
    p.add_argument("--max-acc-drop", type=float, default=None, metavar="Y",
                   help="fail if accuracy drops by more than Y percentage points against the baseline")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="with --wait: give up after S seconds")
    p.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("token", help="manage API tokens (writes need one once any exists)")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token and print it (only once)")
    t.add_argument("--name", required=True)
    t.set_defaults(func=cmd_token_create)
    t = tsub.add_parser("list", help="list tokens (names, never the tokens)")
    t.set_defaults(func=cmd_token_list)
    t = tsub.add_parser("revoke", help="revoke (delete) every token with this name")
    t.add_argument("--name", required=True)
    last = t.add_mutually_exclusive_group()
    last.add_argument("--force", action="store_true",
                      help="revoke the last token(s) too; writes then stay closed until `dynds token create` makes a new one")
    last.add_argument("--open-writes", action="store_true",
                      help="revoke the last token(s) and open writes to anyone without a token (as a fresh install)")
    t.set_defaults(func=cmd_token_revoke)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_log_arguments(p: argparse.ArgumentParser, old_spelling: str | None = None) -> None:
    """--log-level and --log-format, the same on `dynds serve` and `dynds worker` (app/logs.py)."""
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS, type=str.lower,
                   help="console log level (default: $DYNDS_LOG_LEVEL, else info); jobs store INFO and above regardless")
    if old_spelling:  # the earlier name, still accepted
        p.add_argument(old_spelling, dest="log_level", default=None, choices=LOG_LEVELS, type=str.lower, help=argparse.SUPPRESS)
    p.add_argument("--log-format", default=None, choices=("text", "json"),
                   help="console log format: text, or json (one object per line) (default: $DYNDS_LOG_FORMAT, else text)")


def setup_logging(args: argparse.Namespace, settings) -> dict[str, str]:
    """The process's one logging configuration, from the flags, else the settings."""
    from app.logs import configure_logging

    return configure_logging(args.log_level or settings.log_level, args.log_format or settings.log_format)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- serve


class ServeLockHeld(RuntimeError):
    """Another `dynds serve` with an embedded executor uses the database; the message names it."""


class ServeLock:
    """One embedded `dynds serve` per database: held for the life of the process, released by the OS (or
    PostgreSQL) when the process ends, however it ends, so a killed server never leaves it behind.

    SQLite: an exclusive ``flock`` on ``<database file>.serve-lock``, which holds the holder's host, pid,
    address and start time. PostgreSQL: a session-level advisory lock on a connection kept open, named
    (``application_name``) after the holder; pg_stat_activity tells who holds it. In Celery mode the API
    runs no jobs, and any number of API processes may share the database (no lock is taken).
    """

    PG_KEY = 0x64796E6473  # "dynds"

    def __init__(self, database_url: str, *, label: str):
        self.database_url = database_url
        self.label = label  # who we are, for the next one's message
        self._file = None
        self._conn = None
        self._engine = None

    def acquire(self) -> "ServeLock":
        from sqlalchemy.engine import make_url

        from app.core.db import normalize_url

        url = make_url(normalize_url(self.database_url))
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                self._acquire_file(Path(url.database).expanduser())
        elif url.get_backend_name() == "postgresql":
            self._acquire_pg()
        return self

    def _acquire_file(self, db_path: Path) -> None:
        import fcntl

        path = db_path.with_name(db_path.name + ".serve-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not written its name yet"
            f.close()
            raise ServeLockHeld(holder) from None
        f.seek(0)
        f.truncate()
        f.write(self.label + "\n")
        f.flush()
        self._file = f

    def _acquire_pg(self) -> None:
        from sqlalchemy import text

        from app.core.db import make_engine

        self._engine = make_engine(self.database_url)  # one connection of its own, held
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": self.label[:63]})
        if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.PG_KEY}).scalar():
            self._conn = conn
            return
        row = conn.execute(
            text(
                "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() "
                "AND l.classid = :high AND l.objid = :low"
            ),
            {"high": self.PG_KEY >> 32, "low": self.PG_KEY & 0xFFFFFFFF},
        ).first()
        conn.close()
        self._engine.dispose()
        holder = f"{row[0] or 'a client'} (connected from {row[1] or 'a local socket'} since {row[2]:%Y-%m-%d %H:%M:%S})" if row else "another session"
        raise ServeLockHeld(holder)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = None


def cmd_serve(args: argparse.Namespace) -> int:
    import socket
    from datetime import datetime, timezone

    import uvicorn

    from app.core.config import get_settings
    from app.main import create_app

    settings = get_settings()
    chosen = setup_logging(args, settings)
    executor = None
    lock = None
    if settings.embedded:
        from worker.embedded import EmbeddedExecutor

        # One embedded server per database: a second one would run jobs beside the first and, stopping
        # (its port taken, say), interrupt them. It refuses to start instead, naming the first.
        label = (f"dynds serve on {socket.gethostname()} pid {os.getpid()} port {args.port} "
                 f"since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
        try:
            lock = ServeLock(settings.database_url, label=label).acquire()
        except ServeLockHeld as held:
            return _fail(
                f"the database {_redact(settings.database_url)} is in use by another dynds serve: {held}. "
                "Stop that one first, or give this one its own DYNDS_HOME / DYNDS_DATABASE_URL; to share a "
                "database between several servers, run jobs on Celery workers (DYNDS_BROKER_URL).",
                EXIT_JOB,
            )
        executor = EmbeddedExecutor(settings)
    # The app's start-up migrates the database, recovers the jobs an earlier embedded server left running
    # (holding the lock proves it is gone), then starts the executor; with a broker set it dispatches
    # through Celery instead. SIGTERM or Ctrl-C: uvicorn's graceful shutdown stops the executor, whose
    # running job ends its current step and is requeued.
    app = create_app(settings, dispatcher=executor, recover_executor_jobs=lock is not None)
    print(
        f"dynds serve: http://{args.host}:{args.port} (database {_redact(settings.database_url)}, "
        f"jobs {'embedded executor' if executor else 'via ' + _redact(settings.broker_url)})",
        flush=True,
    )
    try:
        # log_config=None: uvicorn's loggers keep the configuration above (through the root logger).
        uvicorn.run(app, host=args.host, port=args.port, log_level=chosen["level"], log_config=None)  # stops the executor on exit
    finally:
        if lock is not None:
            lock.release()
    return EXIT_OK


def _redact(url: str | None) -> str:
    """A URL without its password, for printing."""
    if not url or "@" not in url or "://" not in url:
        return url or ""
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url


# ---------------------------------------------------------------- worker


WORKER_NAME = "dynds@%h"  # docker-compose's health check pings dynds@$HOSTNAME


def cmd_worker(args: argparse.Namespace) -> int:
    from app.core.config import get_settings

    if args.concurrency < 1:
        return _fail(f"--concurrency must be at least 1: {args.concurrency}")
    settings = get_settings()
    if not settings.broker_url:
        return _fail("no broker configured: set DYNDS_BROKER_URL (e.g. redis://localhost:6379/0); "
                     "without one, `dynds serve` runs jobs itself")
    chosen = setup_logging(args, settings)  # the pool's children inherit it (worker/celery_app.py)
    problem = broker_problem(settings.broker_url)
    if problem:
        return _fail(problem)
    if settings.worker_threads is None:
        # Each child process trains one job: share the cores between them (read in worker_process_init).
        from worker.embedded import available_cores

        os.environ["DYNDS_WORKER_THREADS"] = str(max(1, available_cores() // args.concurrency))
        get_settings.cache_clear()
        settings = get_settings()
    from worker.celery_app import make_celery

    celery = make_celery(settings)
    queue = args.queue or settings.queue
    print(f"dynds worker: queue {queue!r} on {_redact(settings.broker_url)}, concurrency {args.concurrency}, "
          f"{settings.worker_threads} torch threads per job", flush=True)
    celery.worker_main([
        "worker", f"--concurrency={args.concurrency}", f"--queues={queue}", f"--loglevel={chosen['level'].upper()}",
        f"--hostname={args.name}", "--without-gossip", "--without-mingle",
    ])
    return EXIT_OK


def broker_problem(url: str, timeout_s: float = 3.0) -> str | None:
    """Why the broker cannot be used, or None. Only Redis is checked here; Celery reports the rest."""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping()
    except redis.RedisError as exc:
        return f"cannot reach the broker at {_redact(url)}: {exc}"
    return None


# ---------------------------------------------------------------- submit


def load_spec_file(path: str) -> dict[str, Any]:
    """The spec as a mapping (the server validates it); ValueError says what is wrong with the file."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the spec file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of spec sections, got {type(data).__name__}")
    return data


def api_base(server: str) -> str:
    server = server.rstrip("/")
    return server if server.endswith("/api/v1") else server + "/api/v1"


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


def _json_or_text(resp) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def threshold_failures(summary: dict[str, Any] | None, *, min_time_saving: float | None,
                       max_acc_drop: float | None) -> list[str]:
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
    line = (f"job {job['id']} {job['status']}: time_saving {fmt('time_saving', '{:.1%}')}"
            + (f" ({pairing})" if pairing else "")
            + f", cross-check {fmt('time_saving_interleaved', '{:.1%}')}, "
            f"acc_delta {fmt('acc_delta', '{:+.2f} pt')}, flop_saving {fmt('flop_saving', '{:.1%}')}, "
            f"dynds_acc {fmt('dynds_acc', '{:.2f}%')}, baseline_acc {fmt('baseline_acc', '{:.2f}%')}, "
            f"equal_time_gap {fmt('equal_time_gap', '{:+.2f} pt')}")
    if s.get("timing_noisy"):
        line += f"\ntiming noisy: {result.get('timing_noise') or 'paired and interleaved savings disagree'}; do not rely on time_saving"
    if result.get("verdict_sentence"):
        line += f"\nverdict: {result['verdict_sentence']}"
    return line


def format_progress(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    if not p:
        return f"job {job['id']}: {job['status']}"
    return (f"job {job['id']}: {job['status']} {p.get('run', '')} epoch {p.get('epoch', 0) + 1}/{p.get('epochs', '?')} "
            f"step {p.get('step', 0)}/{p.get('total_steps', '?')} ({p.get('fraction', 0):.0%})")


def cmd_submit(args: argparse.Namespace) -> int:
    import httpx

    from dynds_core.spec import resolve_data_root

    try:
        spec = resolve_data_root(load_spec_file(args.spec), os.getcwd())
    except ValueError as exc:
        return _fail(str(exc))
    base = api_base(args.server)
    token = args.token or os.environ.get("DYNDS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(headers=headers, timeout=30.0) as client:
            resp = client.post(f"{base}/jobs", json={"spec": spec, "force": args.force})
            if resp.status_code == 422:
                print(f"error: the server refused the spec {args.spec}:", file=sys.stderr)
                for line in validation_lines(_json_or_text(resp)):
                    print(line, file=sys.stderr)
                return EXIT_USAGE
            if resp.status_code in (401, 403):
                hint = "pass --token or set DYNDS_TOKEN" if not token else "the token was refused; check it"
                return _fail(f"{resp.status_code} from {base}/jobs: {_detail(resp)} ({hint})")
            if resp.status_code not in (200, 201):
                return _fail(f"{resp.status_code} from {base}/jobs: {_detail(resp)}")
            job = resp.json()
            note = " (an identical job already exists; --force runs it again)" if job.get("deduplicated") else ""
            print(f"job {job['id']} {job['status']}: {base}/jobs/{job['id']}{note}", flush=True)
            if not args.wait:
                return EXIT_OK
            try:
                job = follow_job(client, base, job, timeout_s=args.timeout, poll_s=args.poll_interval)
            except KeyboardInterrupt:
                return _fail(f"stopped following job {job['id']}; it keeps running on the server", 130)
    except httpx.TransportError as exc:
        return _fail(f"cannot reach the server at {args.server}: {exc or type(exc).__name__}")
    except httpx.HTTPStatusError as exc:
        return _fail(f"{exc.response.status_code} from {exc.request.url}: {_detail(exc.response)}")

    if job["status"] not in FINAL_STATES:
        return _fail(f"job {job['id']} did not finish within --timeout {args.timeout} s (still {job['status']})", EXIT_JOB)
    if job["status"] != "succeeded":
        reason = f": {job['error']}" if job.get("error") else ""
        return _fail(f"job {job['id']} {job['status']}{reason}", EXIT_JOB)
    print(format_summary(job), flush=True)
    failures = threshold_failures(job.get("summary"), min_time_saving=args.min_time_saving, max_acc_drop=args.max_acc_drop)
    for failure in failures:
        print(f"threshold missed: {failure}", file=sys.stderr)
    return EXIT_JOB if failures else EXIT_OK


def _detail(resp) -> Any:
    try:
        return resp.json().get("detail", resp.text)
    except ValueError:
        return resp.text


def follow_job(client, base: str, job: dict[str, Any], *, timeout_s: float | None, poll_s: float = 1.0) -> dict[str, Any]:
    """Poll the job until it ends (or the timeout), printing progress when it changes; returns the last state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_line = None
    while True:
        line = format_progress(job)
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if job["status"] in FINAL_STATES:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            return job
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
        resp = client.get(f"{base}/jobs/{job['id']}")
        resp.raise_for_status()
        job = resp.json()


# ---------------------------------------------------------------- token


def _token_session():
    from app.core.config import get_settings
    from app.core.db import get_engine, init_db, session_factory

    engine = get_engine(get_settings().database_url)
    init_db(engine)  # tokens may be made before the first `dynds serve`
    return session_factory(engine)()


def cmd_token_create(args: argparse.Namespace) -> int:
    from app import security

    with _token_session() as session:
        try:
            token = security.create_token(session=session, name=args.name)
        except ValueError as exc:
            return _fail(str(exc))
    print(token)
    print(f"token {args.name.strip()!r} created; it is shown only this once: store it now", file=sys.stderr)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    from app import security

    with _token_session() as session:
        tokens = security.list_tokens(session=session)
        closed = not tokens and security.writes_closed(session=session)
    if closed:
        print("no tokens, and writes are closed (the last token was revoked with --force): `dynds token create --name NAME` makes one")
        return EXIT_OK
    if not tokens:
        print("no tokens: writes are open to everyone (`dynds token create --name NAME` to require one)")
        return EXIT_OK
    for t in tokens:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        print(f"{t.id}\t{t.name}\tcreated {t.created_at:%Y-%m-%d %H:%M}\tlast used {used}")
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from app import security

    force, open_writes = getattr(args, "force", False), getattr(args, "open_writes", False)
    with _token_session() as session:
        try:
            revoked = security.revoke_token(session=session, name=args.name, close_writes=force, open_writes=open_writes)
        except security.LastToken as exc:
            return _fail(
                f"{exc}: revoking it would leave the server without any token. Create the next one first "
                "(`dynds token create --name NAME`), or pass --force to revoke it and keep writes closed until a "
                "token is created, or --open-writes to revoke it and let anyone write"
            )
    if not revoked:
        return _fail(f"no token named {args.name!r} (see `dynds token list`)", EXIT_JOB)
    print(f"{revoked} token(s) named {args.name!r} revoked")
    if force:
        print("that was the last token: writes are closed until `dynds token create` makes a new one", file=sys.stderr)
    elif open_writes:
        print("that was the last token: writes are now open to anyone (no token needed)", file=sys.stderr)
    return EXIT_OK
