"""`dynds retention [--dry-run]`: expire finished jobs' step archives, step points, checkpoints and weights
past the ages the settings give (app/storage/retention.py); a queued or running job is never touched.

    DYNDS_STEP_ARCHIVE_RETENTION_DAYS=90 DYNDS_METRIC_POINTS_RETENTION_DAYS=365 dynds retention --dry-run
    dynds retention                      # e.g. daily from cron or a Kubernetes CronJob
"""

from __future__ import annotations

import argparse

from dynds.commands.common import EXIT_OK, add_database_argument, database_problem, fail, load_settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retention",
        help="delete finished jobs' step archives, step points, checkpoints and weights past their retention settings",
        description="Apply DYNDS_STEP_ARCHIVE_RETENTION_DAYS, DYNDS_METRIC_POINTS_RETENTION_DAYS, DYNDS_CHECKPOINT_RETENTION_DAYS "
        "and DYNDS_ARTIFACT_RETENTION_DAYS / DYNDS_ARTIFACT_KEEP_LAST (days since a job finished; unset: kept). "
        "Queued and running jobs are never touched.",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted (count and bytes per tier), delete nothing")
    add_database_argument(p)
    p.set_defaults(func=cmd_retention)


def cmd_retention(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if (problem := database_problem(settings.database_url)) is not None:
        return fail(problem)
    from app.core.db import get_engine, session_factory
    from app.storage import retention

    with session_factory(get_engine(settings.database_url))() as session:
        done = retention.plan(session, settings) if args.dry_run else retention.apply(session, settings)
    for e in done:
        print(e.line(dry_run=args.dry_run))
    if args.dry_run:
        print("dry run: nothing deleted")
    return EXIT_OK
