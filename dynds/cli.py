"""The `dynds` command: `train` (the library: dynds_core/cli.py), and `serve`, `worker`, `submit`, `token`
(the service: dynds/commands/). Heavy imports happen inside the commands, so `dynds --help` is instant.

This is the composition root: the one place above both ``app`` and ``worker``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from dynds import __version__
from dynds.commands import SERVICE_COMMANDS
from dynds.commands.common import EXIT_USAGE, UsageError, fail

# module -> it defines add_parsers(subparsers); each parser sets `func` (args -> exit code)
COMMAND_MODULES = ("dynds_core.cli", *SERVICE_COMMANDS)
# What `pip install 'dynds[service]'` adds: a command that needs one of these says so instead of a traceback.
SERVICE_PACKAGES = frozenset(
    {"fastapi", "uvicorn", "starlette", "sqlmodel", "sqlalchemy", "alembic", "psycopg", "celery", "kombu", "redis", "pydantic_settings"}
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynds", description="Dynamic input and kernel downsampling: train, serve, submit.")
    parser.add_argument("--version", action="version", version=f"dynds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        return fail(str(exc))
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVICE_PACKAGES:
            raise
        return fail(f"`dynds {args.command}` needs the service's dependencies ({exc.name} is missing): pip install 'dynds[service]'", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
