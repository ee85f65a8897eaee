"""What the service's commands share: exit codes, errors, the settings and the logging flags."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK, EXIT_JOB, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class UsageError(Exception):
    """A problem the user fixes (a setting, a flag); printed as one line, exit code 2."""


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def redact(url: str | None) -> str:
    """A URL without its password (in the credentials or the query), for printing."""
    from app.core.redact import redact_url

    return redact_url(url)


def database_problem(url: str, timeout_s: float = 5.0) -> str | None:
    """Why the database cannot be used (unreachable, credentials or TLS refused), or None; the password
    never in it. SQLite is not checked: a local file, no credentials (connecting would create it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from app.core.db import normalize_url
    from app.core.redact import redact_url, scrub

    try:
        if make_url(normalize_url(url)).get_backend_name() == "sqlite":
            return None
        engine = create_engine(normalize_url(url), poolclass=NullPool, connect_args={"connect_timeout": max(1, int(timeout_s))})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # a bad URL, a refused password, no server: all said the same way
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        return f"cannot use the database at {redact_url(url)}: {scrub(reason, url)}"
    return None


def add_database_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="the database, e.g. postgresql://user@host/dynds (default: $DYNDS_DATABASE_URL, else sqlite:///$DYNDS_HOME/dynds.db)",
    )


def add_broker_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker-url",
        default=None,
        metavar="URL",
        help="the Celery broker, e.g. redis://host:6379/0 (default: $DYNDS_BROKER_URL, else none: `dynds serve` runs jobs itself)",
    )


def add_process_arguments(p: argparse.ArgumentParser, old_log_spelling: str | None = None) -> None:
    """The flags `dynds serve` and `dynds worker` share: where the database and broker are, how to log."""
    add_database_argument(p)
    add_broker_argument(p)
    add_log_arguments(p, old_log_spelling)


def add_log_arguments(p: argparse.ArgumentParser, old_spelling: str | None = None) -> None:
    """--log-level and --log-format, the same on `dynds serve` and `dynds worker` (app/logs.py)."""
    p.add_argument(
        "--log-level",
        default=None,
        choices=LOG_LEVELS,
        type=str.lower,
        help="console log level (default: $DYNDS_LOG_LEVEL, else info); jobs store INFO and above regardless",
    )
    if old_spelling:  # the earlier name, still accepted
        p.add_argument(old_spelling, dest="log_level", default=None, choices=LOG_LEVELS, type=str.lower, help=argparse.SUPPRESS)
    p.add_argument(
        "--log-format",
        default=None,
        choices=("text", "json"),
        help="console log format: text, or json (one object per line) (default: $DYNDS_LOG_FORMAT, else text)",
    )


def load_settings(args: argparse.Namespace) -> Any:
    """The one settings object, with the URL flags given on the command line put over the environment.

    The flags go into the environment (not only into this object) so that the processes this one starts
    (Celery's pool, the executor's threads reading ``get_settings()``) see the same values. A bad setting
    is a UsageError naming its variable.
    """
    from pydantic import ValidationError

    from app.core.config import get_settings

    for flag, var in (("database_url", "DYNDS_DATABASE_URL"), ("broker_url", "DYNDS_BROKER_URL")):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[var] = value
    get_settings.cache_clear()
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            var = "DYNDS_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "the settings"
            problems.append(f"{var}: {err['msg']}")
        raise UsageError("bad setting: " + "; ".join(problems)) from None


def setup_logging(args: argparse.Namespace, settings: Any) -> dict[str, str]:
    """The process's one logging configuration, from the flags, else the settings."""
    from app.logs import configure_logging

    return configure_logging(args.log_level or settings.log_level, args.log_format or settings.log_format)
