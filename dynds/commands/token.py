"""`dynds token create|list|revoke NAME`: the API tokens writes need once any exists."""

from __future__ import annotations

import argparse
import sys

from dynds.commands.common import EXIT_JOB, EXIT_OK, UsageError, add_database_argument, fail, load_settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="manage API tokens (writes need one once any exists)")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token and print it (only once)")
    _name_argument(t, "the token's name, e.g. the CI pipeline that will use it")
    add_database_argument(t)
    t.set_defaults(func=cmd_token_create)
    t = tsub.add_parser("list", help="list tokens (names, never the tokens)")
    add_database_argument(t)
    t.set_defaults(func=cmd_token_list)
    t = tsub.add_parser("revoke", help="revoke (delete) every token with this name")
    _name_argument(t, "the name given to `dynds token create`")
    last = t.add_mutually_exclusive_group()
    last.add_argument(
        "--force", action="store_true", help="revoke the last token(s) too; writes then stay closed until `dynds token create` makes a new one"
    )
    last.add_argument(
        "--open-writes", action="store_true", help="revoke the last token(s) and open writes to anyone without a token (as a fresh install)"
    )
    add_database_argument(t)
    t.set_defaults(func=cmd_token_revoke)


def _name_argument(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("name", nargs="?", metavar="NAME", help=help)
    p.add_argument("--name", dest="name_flag", default=None, help=argparse.SUPPRESS)  # the earlier spelling, still accepted


def _name(args: argparse.Namespace) -> str | None:
    if args.name and args.name_flag and args.name != args.name_flag:
        raise UsageError(f"two names given ({args.name!r} and --name {args.name_flag!r}): give one")
    return args.name or args.name_flag


def _token_session(args: argparse.Namespace):
    from app.core.db import get_engine, init_db, session_factory

    engine = get_engine(load_settings(args).database_url)
    init_db(engine)  # tokens may be made before the first `dynds serve`
    return session_factory(engine)()


def cmd_token_create(args: argparse.Namespace) -> int:
    from app import security

    name = _name(args)
    if not name:
        return fail("give the token a name: dynds token create NAME")
    with _token_session(args) as session:
        try:
            token = security.create_token(session=session, name=name)
        except ValueError as exc:
            return fail(str(exc))
    print(token)
    print(f"token {name.strip()!r} created; it is shown only this once: store it now", file=sys.stderr)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    from app import security

    with _token_session(args) as session:
        tokens = security.list_tokens(session=session)
        closed = not tokens and security.writes_closed(session=session)
    if closed:
        print("no tokens, and writes are closed (the last token was revoked with --force): `dynds token create NAME` makes one")
        return EXIT_OK
    if not tokens:
        print(
            "no tokens: writes are open to everyone (`dynds token create NAME` to require one); "
            "`dynds serve` starts so only on loopback or with --open"
        )
        return EXIT_OK
    for t in tokens:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        print(f"{t.id}\t{t.name}\tcreated {t.created_at:%Y-%m-%d %H:%M}\tlast used {used}")
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from app import security

    name = _name(args)
    if not name:
        return fail("name the token to revoke: dynds token revoke NAME (see `dynds token list`)")
    with _token_session(args) as session:
        try:
            revoked = security.revoke_token(session=session, name=name, close_writes=args.force, open_writes=args.open_writes)
        except security.LastToken as exc:
            return fail(
                f"{exc}: revoking it would leave the server without any token. Create the next one first "
                "(`dynds token create NAME`), or pass --force to revoke it and keep writes closed until a "
                "token is created, or --open-writes to revoke it and let anyone write"
            )
    if not revoked:
        return fail(f"no token named {name!r} (see `dynds token list`)", EXIT_JOB)
    print(f"{revoked} token(s) named {name!r} revoked")
    if args.force:
        print("that was the last token: writes are closed until `dynds token create` makes a new one", file=sys.stderr)
    elif args.open_writes:
        print(
            "that was the last token: writes are now open to anyone (no token needed); a `dynds serve` listening beyond "
            "loopback keeps running, but starts again only with --open (DYNDS_OPEN_WRITES=true) or a new token",
            file=sys.stderr,
        )
    return EXIT_OK
