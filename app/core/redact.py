"""Passwords out of what is printed: the database's and the broker's URLs may carry them.

    redact_url("redis://:s3cret@redis:6379/0")                      # 'redis://:***@redis:6379/0'
    redact_url("postgresql://db/dynds?sslmode=require&password=x")  # '...?sslmode=require&password=***'
    scrub("FATAL: bad password s3cret", "redis://:s3cret@redis/0")  # 'FATAL: bad password ***'

Workers authenticate to the broker and the database only, with what their URLs carry: every place that
shows a URL (start-up lines, errors, /readyz) shows it through these.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
# Query parameters that carry a password in libpq (PostgreSQL) and redis-py URLs.
_SECRET_PARAMS = re.compile(r"([?&](?:password|sslpassword|pass)=)[^&#]*", re.IGNORECASE)


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme://, credentials, @rest) of a URL with credentials, else None."""
    if "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    # The credentials end at the last '@' of the authority (a password may hold an unencoded '@' or '/').
    authority_end = len(rest)
    for sep in "?#":
        if sep in rest:
            authority_end = min(authority_end, rest.index(sep))
    at = rest.rfind("@", 0, authority_end)
    if at < 0:
        return None
    return scheme + "://", rest[:at], rest[at:]


def redact_url(url: str | None) -> str:
    """``url`` with its password (in the credentials or the query) replaced by ``***``."""
    if not url:
        return url or ""
    parts = _split(url)
    if parts is not None:
        head, creds, tail = parts
        if ":" in creds:
            url = f"{head}{creds.split(':', 1)[0]}:{MASK}{tail}"
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, url)


def url_passwords(url: str | None) -> list[str]:
    """The passwords ``url`` carries, as written and percent-decoded (what an error message may echo)."""
    if not url:
        return []
    found = []
    parts = _split(url)
    if parts is not None and ":" in parts[1]:
        found.append(parts[1].split(":", 1)[1])
    found += [m.group(0).split("=", 1)[1] for m in _SECRET_PARAMS.finditer(url)]
    found = [p for p in found if p]
    return sorted({*found, *(unquote(p) for p in found)}, key=len, reverse=True)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` (an error message, say) with the passwords of ``urls``, and the URLs themselves, redacted."""
    for url in urls:
        if url:
            text = text.replace(url, redact_url(url))
            for password in url_passwords(url):
                text = text.replace(password, MASK)
    return text
