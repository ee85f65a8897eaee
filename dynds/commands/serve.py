"""`dynds serve`: the API, and with no broker configured the embedded executor that runs the jobs.

The door: listening beyond loopback (``--host 0.0.0.0``, ``::``, a LAN address), a server with no API token
refuses to start, saying the ways out (``door_problem``): a token given as a secret (DYNDS_BOOTSTRAP_TOKEN or
DYNDS_BOOTSTRAP_TOKEN_FILE, stored hashed as "bootstrap"), one made beforehand (`dynds token create`), one
made now and printed once (``--create-token``), or ``--open`` (DYNDS_OPEN_WRITES=true: open on purpose, and
logged so). On loopback a server with no token stays open, as the quick start needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC

from dynds.commands.common import (
    EXIT_JOB,
    EXIT_OK,
    UsageError,
    add_process_arguments,
    database_problem,
    fail,
    load_settings,
    redact,
    setup_logging,
)

log = logging.getLogger("dynds.serve")
FIRST_TOKEN_NAME = "first"  # what --create-token calls the token it makes


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the API and dashboard (and, with no broker configured, the job executor)",
        description="Run the REST API and the dashboard. With no broker configured, jobs run in this "
        "process (the embedded executor, one server per database); with one, on `dynds worker`s.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: %(default)s; 0.0.0.0 for all: beyond loopback the server needs an API token, or --open)",
    )
    p.add_argument("--port", type=int, default=8000, help="the port to listen on (default: %(default)s)")
    p.add_argument(
        "--open",
        action="store_true",
        help="accept writes without an API token even when listening beyond loopback: the server is meant to be "
        "open (default: $DYNDS_OPEN_WRITES, else false; beyond loopback a server with no token refuses to start)",
    )
    p.add_argument(
        "--create-token",
        action="store_true",
        help=f"if the server has no API token yet, create one named {FIRST_TOKEN_NAME!r} and print it once "
        "(only its hash is stored); a no-op once any token exists (default: off)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API processes sharing the port (default: $DYNDS_SERVE_WORKERS, else 1). More than one needs a broker "
        "(--broker-url): the embedded executor runs jobs in the one server process. Each keeps its own results cache.",
    )
    add_process_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import socket
    from datetime import datetime

    import uvicorn

    from app.core.db import make_engine
    from app.core.serve_lock import ServeLock, ServeLockHeld
    from app.main import create_app

    settings = load_settings(args)
    chosen = setup_logging(args, settings)
    problem = database_problem(settings.database_url)
    if problem:
        return fail(problem)
    workers = settings.serve_workers if args.workers is None else args.workers
    if not 1 <= workers <= 64:
        return fail(f"--workers {workers}: give 1 to 64 API processes")
    if workers > 1 and settings.embedded:
        return fail(
            f"--workers {workers} needs a broker: with none configured, jobs run in the one server process (the embedded "
            "executor). Give one (--broker-url redis://HOST:6379/0 or DYNDS_BROKER_URL) and run `dynds worker`s, or serve "
            "with one process (--workers 1)."
        )
    engine = make_engine(settings.database_url)
    try:
        open_writes = args.open or settings.open_writes
        first_token = open_door(engine, settings, host=args.host, port=args.port, open_writes=open_writes, create=args.create_token)
    except UsageError as exc:
        engine.dispose()
        return fail(str(exc))
    executor = None
    lock = None
    if settings.embedded:
        from worker.embedded import EmbeddedExecutor

        # One embedded server per database: a second one would run jobs beside the first and, stopping
        # (its port taken, say), interrupt them. It refuses to start instead, naming the first.
        label = f"dynds serve on {socket.gethostname()} pid {os.getpid()} port {args.port} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        try:
            lock = ServeLock(settings.database_url, label=label).acquire()
        except ServeLockHeld as held:
            return fail(
                f"the database {redact(settings.database_url)} is in use by another dynds serve: {held}. "
                "Stop that one first, or give this one its own DYNDS_HOME / --database-url; to share a "
                "database between several servers, run jobs on Celery workers (--broker-url).",
                EXIT_JOB,
            )
        executor = EmbeddedExecutor(settings)
    # The app's start-up migrates the database, recovers the jobs an earlier embedded server left running
    # (holding the lock proves it is gone), then starts the executor; with a broker set it dispatches
    # through Celery instead. SIGTERM or Ctrl-C: uvicorn's graceful shutdown stops the executor, whose
    # running job ends its current step and is requeued.
    if workers > 1:
        engine.dispose()  # each API process makes its own
    else:
        app = create_app(settings, dispatcher=executor, engine=engine, recover_executor_jobs=lock is not None)
    print(
        f"dynds serve: http://{args.host}:{args.port} (database {redact(settings.database_url)}, "
        f"jobs {'embedded executor' if executor else 'via ' + redact(settings.broker_url)}" + (f", {workers} API processes)" if workers > 1 else ")"),
        flush=True,
    )
    if first_token:
        print(
            f"dynds serve: the server had no API token: created {FIRST_TOKEN_NAME!r}, shown only this once "
            "(only its hash is stored; store it now, send it as 'Authorization: Bearer <token>'):",
            file=sys.stderr,
            flush=True,
        )
        print(first_token, flush=True)
    try:
        if workers > 1:
            # Processes of their own, started by uvicorn on the one socket; each builds its app from the
            # environment (load_settings put the URL flags there; the door was decided above, here).
            os.environ.update(DYNDS_LOG_LEVEL=chosen["level"], DYNDS_LOG_FORMAT=chosen["format"])
            factory = "dynds.commands.serve:worker_app"
            uvicorn.run(factory, factory=True, workers=workers, host=args.host, port=args.port, log_level=chosen["level"], log_config=None)
        else:
            # log_config=None: uvicorn's loggers keep the configuration above (through the root logger).
            uvicorn.run(app, host=args.host, port=args.port, log_level=chosen["level"], log_config=None)  # stops the executor on exit
    finally:
        if lock is not None:
            lock.release()
    return EXIT_OK


def worker_app():
    """One API process of `dynds serve --workers N` (uvicorn's factory): settings and logging from the environment
    the command prepared."""
    from app.core.config import get_settings
    from app.logs import configure_logging
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def door_problem(host: str, port: int, *, has_token: bool, open_writes: bool) -> str | None:
    """Why a server on ``host`` must not start as it is, with the ways out; None: it may.

    Refuse to start, not start and refuse writes: a server that answered every write 401 would look healthy
    (its health check green, its dashboard up) and say what is wrong only to whoever tries to submit; at start
    it is said once, where the operator is looking. The listening address decides, not each request's peer:
    behind a reverse proxy every request comes from loopback. Jupyter's rule (a token unless turned off on
    purpose); it makes one and prints it unasked, which here is --create-token, asked for: printing a
    secret into a deployment's logs should be a decision.
    """
    from app.security import is_loopback

    if has_token or open_writes or is_loopback(host):
        return None
    return (
        f"dynds serve would listen on {host or 'every address'} (beyond this machine) with no API token: anyone who "
        f"can reach port {port} could queue jobs and delete results. Choose one:\n"
        "  - give it a first token as a secret: DYNDS_BOOTSTRAP_TOKEN_FILE=/run/secrets/dynds_token (a file "
        "holding it) or DYNDS_BOOTSTRAP_TOKEN (e.g. the output of `openssl rand -hex 32`);\n"
        "  - create one beforehand on the same database: dynds token create NAME;\n"
        "  - let this start create one and print it once: dynds serve --create-token ...;\n"
        "  - listen on this machine only: --host 127.0.0.1;\n"
        "  - or, if it is meant to be open to everyone who can reach it: dynds serve --open (DYNDS_OPEN_WRITES=true)."
    )


def open_door(engine, settings, *, host: str, port: int, open_writes: bool, create: bool) -> str | None:
    """Migrate, store the bootstrap token if one is given, and decide whether this server may start
    (``door_problem``; a UsageError if not). Returns the token ``create`` made (to print once), else None."""
    from sqlmodel import Session

    from app import security
    from app.core.db import init_db

    try:
        secret = settings.bootstrap_secret()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    init_db(engine)  # the app's start-up migrates too (a no-op then); the token table is needed now
    with Session(engine) as session:
        if secret:
            source = "DYNDS_BOOTSTRAP_TOKEN_FILE" if settings.bootstrap_token_file else "DYNDS_BOOTSTRAP_TOKEN"
            try:
                outcome = security.ensure_bootstrap_token(session=session, token=secret)
            except ValueError as exc:
                raise UsageError(f"{source}: {exc}") from None
            # Never the token: its name, where it came from, what happened.
            log.info("API token %r from %s: %s", security.BOOTSTRAP_NAME, source, outcome)
        made = security.create_token(session=session, name=FIRST_TOKEN_NAME) if create and not security.has_tokens(session=session) else None
        has_token = security.has_tokens(session=session)
    problem = door_problem(host, port, has_token=has_token, open_writes=open_writes)
    if problem:
        raise UsageError(problem)
    if not has_token and not security.is_loopback(host):
        log.warning(
            "WRITES ARE OPEN: dynds serve listens on %s with no API token, on purpose (--open / DYNDS_OPEN_WRITES): "
            "anyone who can reach port %s can queue jobs and delete results; `dynds token create NAME` closes them",
            host or "every address",
            port,
        )
    return made
