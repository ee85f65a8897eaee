"""`dynds serve`: the API, and with no broker configured the embedded executor that runs the jobs."""

from __future__ import annotations

import argparse
import os
from datetime import UTC

from dynds.commands.common import (
    EXIT_JOB,
    EXIT_OK,
    add_process_arguments,
    fail,
    load_settings,
    redact,
    setup_logging,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the API and dashboard (and, with no broker configured, the job executor)",
        description="Run the REST API and the dashboard. With no broker configured, jobs run in this "
        "process (the embedded executor, one server per database); with one, on `dynds worker`s.",
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="the port to listen on (default: %(default)s)")
    add_process_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import socket
    from datetime import datetime

    import uvicorn

    from app.core.serve_lock import ServeLock, ServeLockHeld
    from app.main import create_app

    settings = load_settings(args)
    chosen = setup_logging(args, settings)
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
    app = create_app(settings, dispatcher=executor, recover_executor_jobs=lock is not None)
    print(
        f"dynds serve: http://{args.host}:{args.port} (database {redact(settings.database_url)}, "
        f"jobs {'embedded executor' if executor else 'via ' + redact(settings.broker_url)})",
        flush=True,
    )
    try:
        # log_config=None: uvicorn's loggers keep the configuration above (through the root logger).
        uvicorn.run(app, host=args.host, port=args.port, log_level=chosen["level"], log_config=None)  # stops the executor on exit
    finally:
        if lock is not None:
            lock.release()
    return EXIT_OK
