"""API tokens: only a SHA-256 of each token is stored; the token itself is shown once.

    token = create_token(session=session, name="ci")    # print it now: it cannot be recovered
    verify_token(session=session, token=token)          # -> ApiToken (last_used_at updated) or None

A server with no token at all is open (a fresh, local install). Revoking the last token does not go
back to that: ``revoke_token`` refuses it (``LastToken``) unless ``close_writes`` (then a closed marker
stays: a row whose hash matches no token, so writes need a token and none is valid until
``create_token`` makes one) or ``open_writes`` (the server is deliberately open again).

The door (``dynds serve``): on a loopback address a server with no token stays open (the quick start); beyond
loopback it needs a token, or a setting saying it is meant to be open. The first token may come as a secret:

    is_loopback("0.0.0.0")                                           # False: every interface
    ensure_bootstrap_token(session=session, token=secret)            # "created", then "unchanged" at each restart
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.models import ApiToken, utcnow

TOKEN_PREFIX = "dynds_"
# last_used_at is a hint for people auditing tokens; writing it on every request would make reads write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The name of the marker that keeps writes closed after the last token was revoked (not a token name
# anyone can give: names are stripped, and this one starts with a NUL-free reserved prefix).
CLOSED_MARKER = "(writes closed: no token)"


class LastToken(ValueError):
    """Revoking these tokens would leave the server without any."""


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("a token needs a non-empty name, e.g. --name ci")
    if "\x00" in name or not name.isprintable():
        raise ValueError("a token name must be printable text (no NUL bytes or control characters)")
    if len(name) > 200:
        raise ValueError(f"a token name has at most 200 characters (got {len(name)})")
    if name == CLOSED_MARKER:
        raise ValueError(f"{name!r} is reserved")
    return name


def create_token(*, session: Session, name: str) -> str:
    """Store a new token named ``name``; returns the plaintext token (the only time it exists)."""
    name = check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.execute(delete(ApiToken).where(col(ApiToken.name) == CLOSED_MARKER))
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    session.commit()
    return token


def has_tokens(*, session: Session) -> bool:
    return session.exec(select(func.count()).select_from(ApiToken)).one() > 0


def verify_token(*, session: Session, token: str) -> ApiToken | None:
    digest = hash_token(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    # The lookup is by hash (an index), the compare constant-time anyway.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = utcnow()
    last = row.last_used_at
    if last is None or (now - (last if last.tzinfo else last.replace(tzinfo=now.tzinfo))) > LAST_USED_RESOLUTION:
        session.execute(update(ApiToken).where(col(ApiToken.id) == row.id).values(last_used_at=now))
        session.commit()
    return row


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).where(col(ApiToken.name) != CLOSED_MARKER).order_by(col(ApiToken.id))).all())


def writes_closed(*, session: Session) -> bool:
    """No token exists but the closed marker: writes are refused until a token is created."""
    return session.exec(select(func.count()).select_from(ApiToken).where(col(ApiToken.name) == CLOSED_MARKER)).one() > 0


def revoke_token(*, session: Session, name: str, close_writes: bool = False, open_writes: bool = False) -> int:
    """Delete every token named ``name``; returns how many there were.

    When they are the last tokens: ``LastToken`` (nothing revoked) unless ``close_writes`` (a closed
    marker stays: writes are refused until a new token exists) or ``open_writes`` (no marker: the server
    takes writes from anyone, as a fresh install does)."""
    if name == CLOSED_MARKER:
        return 0
    named = session.exec(select(func.count()).select_from(ApiToken).where(col(ApiToken.name) == name)).one()
    others = session.exec(select(func.count()).select_from(ApiToken).where(col(ApiToken.name) != name, col(ApiToken.name) != CLOSED_MARKER)).one()
    if named and not others:
        if not (close_writes or open_writes):
            raise LastToken(f"{name!r} is the last API token")
        if close_writes and not open_writes:
            session.add(ApiToken(name=CLOSED_MARKER, token_hash=hash_token(secrets.token_urlsafe(32))))
    res = session.execute(delete(ApiToken).where(col(ApiToken.name) == name))
    if named and not others and open_writes:
        session.execute(delete(ApiToken).where(col(ApiToken.name) == CLOSED_MARKER))
    session.commit()
    return res.rowcount


# ---------------------------------------------------------------- the door: loopback, and the first token


BOOTSTRAP_NAME = "bootstrap"
MIN_BOOTSTRAP_CHARS = 16  # a secret someone could guess is no door; `openssl rand -hex 32` gives 64


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` can be reached from this machine only: 127.0.0.0/8, ::1 (also
    IPv4-mapped), or ``localhost``. Any other name may resolve to an outside interface: not loopback."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # "%eth0": an IPv6 zone
    except ValueError:
        return False  # a host name, or "" (every interface)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_bootstrap_token(token: str) -> str:
    """The token as given, or a ValueError saying what a usable one is (the token itself is never named)."""
    if len(token) < MIN_BOOTSTRAP_CHARS:
        raise ValueError(f"the bootstrap token is too short: at least {MIN_BOOTSTRAP_CHARS} characters (e.g. `openssl rand -hex 32`)")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError("the bootstrap token must be printable text without spaces (e.g. `openssl rand -hex 32`)")
    return token


def ensure_bootstrap_token(*, session: Session, token: str) -> str:
    """Make ``token`` (a secret given at start) a valid API token named "bootstrap", stored as its hash like
    any other. Idempotent: "created" the first time, "unchanged" at every restart with the same secret,
    "replaced" when the secret changed (the old one stops working: a rotated secret must not stay valid)."""
    digest = hash_token(check_bootstrap_token(token))
    if session.exec(select(func.count()).select_from(ApiToken).where(col(ApiToken.token_hash) == digest)).one():
        return "unchanged"
    replaced = session.execute(delete(ApiToken).where(col(ApiToken.name) == BOOTSTRAP_NAME)).rowcount
    session.execute(delete(ApiToken).where(col(ApiToken.name) == CLOSED_MARKER))  # as create_token: a valid token exists now
    session.add(ApiToken(name=BOOTSTRAP_NAME, token_hash=digest))
    try:
        session.commit()
    except IntegrityError:  # another API process, starting with the same secret, stored it first
        session.rollback()
        return "unchanged"
    return "replaced" if replaced else "created"
