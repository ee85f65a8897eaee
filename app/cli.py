"""The `dynds` command. Each subcommand lives with the code it drives and registers itself here.

`dynds train` belongs to dynds_core (no service needed); `serve`, `worker`, `submit` and `token`
belong to the service. Heavy imports happen inside the commands, so `dynds --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# module -> it defines add_parsers(subparsers); each parser sets `func` (args -> exit code)
COMMAND_MODULES = ("dynds_core.cli", "app.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynds", description="Dynamic input and kernel downsampling: train, serve, submit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
