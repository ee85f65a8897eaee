"""API tokens: only a SHA-256 of each token is stored; the token itself is shown once.

    token = create_token(session=session, name="ci")    # print it now: it cannot be recovered
    verify_token(session=session, token=token)          # -> ApiToken (last_used_at updated) or None
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from app.models import ApiToken, utcnow

TOKEN_PREFIX = "dynds_"
# last_used_at is a hint for people auditing tokens; writing it on every request would make reads write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, name: str) -> str:
    """Store a new token named ``name``; returns the plaintext token (the only time it exists)."""
    name = name.strip()
    if not name:
        raise ValueError("a token needs a non-empty name, e.g. --name ci")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
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
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def revoke_token(*, session: Session, name: str) -> int:
    """Delete every token named ``name``; returns how many there were."""
    res = session.execute(delete(ApiToken).where(col(ApiToken.name) == name))
    session.commit()
    return res.rowcount
