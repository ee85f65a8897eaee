"""`dynds worker`: a Celery worker that runs jobs (the production mode: one per GPU machine, one broker)."""

from __future__ import annotations

import argparse
import os

from dynds.commands.common import (
    EXIT_OK,
    add_process_arguments,
    database_problem,
    fail,
    load_settings,
    redact,
    setup_logging,
)

WORKER_NAME = "dynds@%h"  # docker-compose's health check pings dynds@$HOSTNAME


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run a Celery worker that executes jobs (needs a broker)",
        description="Run a Celery worker that takes jobs from the broker's queue and trains them, "
        "writing metrics and results to the database the server uses.",
    )
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once, each in its own process (default: %(default)s, one per GPU)")
    p.add_argument(
        "--queue",
        default=None,
        metavar="NAMES",
        help="more queues to consume, comma-separated (e.g. gpu,fast), besides those of the hardware this worker detects "
        "(cpu, cpu.<model>, cpu.<model>.t<threads>; cuda, cuda.<model>, cuda.<model>.x<n>) and the default queue "
        "($DYNDS_QUEUE, else 'dynds') that every worker consumes (default: none)",
    )
    p.add_argument(
        "--name",
        default=WORKER_NAME,
        metavar="NAME",
        help="the worker's Celery node name (default: %(default)s, %%h: the host name); two workers on one host "
        "need different names, or they share one control queue and answer pings for each other",
    )
    add_process_arguments(p, old_log_spelling="--loglevel")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        return fail(f"--concurrency must be at least 1: {args.concurrency}")
    settings = load_settings(args)
    if not settings.broker_url:
        return fail(
            "no broker configured: pass --broker-url or set DYNDS_BROKER_URL (e.g. redis://localhost:6379/0); "
            "without one, `dynds serve` runs jobs itself"
        )
    chosen = setup_logging(args, settings)  # the pool's children inherit it (worker/celery_app.py)
    # What a worker authenticates to, and nothing else: the broker and the database, with what their URLs carry.
    problem = broker_problem(settings.broker_url) or database_problem(settings.database_url)
    if problem:
        return fail(problem)
    if settings.worker_threads is None:
        # Each child process trains one job: share the cores between them (read in worker_process_init).
        from worker.embedded import available_cores

        os.environ["DYNDS_WORKER_THREADS"] = str(max(1, available_cores() // args.concurrency))
        settings = load_settings(args)
    from app.fleet.routing import parse_queue_names, worker_queues
    from worker.celery_app import FleetEntry, make_celery
    from worker.fleet import measure_hardware

    try:
        extra = parse_queue_names(args.queue)
    except ValueError as exc:
        return fail(f"--queue: {exc}")
    # Queues follow hardware: the hardware a job will get here (its torch threads included) names them.
    try:
        hardware = measure_hardware(settings.worker_threads)
    except (RuntimeError, ValueError, OSError) as exc:
        return fail(str(exc))
    queues = worker_queues(hardware, default=settings.queue, extra=extra)
    celery = make_celery(settings, fleet=FleetEntry(hardware=hardware, queues=tuple(queues), concurrency=args.concurrency))
    queue = ",".join(queues)
    print(
        f"dynds worker: {hardware.key}, queues {queue} on {redact(settings.broker_url)}, concurrency {args.concurrency}, "
        f"{settings.worker_threads} torch threads per job",
        flush=True,
    )
    celery.worker_main(
        [
            "worker",
            f"--concurrency={args.concurrency}",
            f"--queues={queue}",
            f"--loglevel={chosen['level'].upper()}",
            f"--hostname={args.name}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return EXIT_OK


def broker_problem(url: str, timeout_s: float = 3.0) -> str | None:
    """Why the broker cannot be used, or None. Only Redis is checked here; Celery reports the rest."""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    from app.core.redact import scrub

    try:
        redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping()
    except redis.AuthenticationError as exc:
        return (
            f"the broker at {redact(url)} refused the credentials ({scrub(str(exc), url)}): put the right password "
            "in the URL, e.g. redis://:PASSWORD@host:6379/0 (rediss:// for TLS)"
        )
    except (redis.RedisError, ValueError) as exc:  # ValueError: a URL redis-py cannot read
        return f"cannot reach the broker at {redact(url)}: {scrub(str(exc), url)}"
    return None
