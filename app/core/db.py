"""Database engines and sessions, and the schema (Alembic migrations, applied programmatically).

    engine = make_engine("sqlite:////tmp/dynds.db")
    init_db(engine)                       # alembic upgrade head
    with Session(engine) as session: ...

SQLite runs in WAL mode with a busy timeout, so readers never block the writer and concurrent
writers wait for each other instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session, create_engine

from app.core.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
IDLE_PING_S = 10.0  # a pooled PostgreSQL connection idle this long is pinged before use


def normalize_url(url: str) -> str:
    """postgresql:// and postgres:// mean psycopg 3 here (psycopg2 is not a dependency)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=20,
            max_overflow=40,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commits
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        # The API's thread pool has 40 threads; the pool covers them without queueing.
        engine = create_engine(url, pool_size=20, max_overflow=30, **kwargs)
        ping_when_idle(engine)
        return engine
    return create_engine(url, **kwargs)


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat idle for IDLE_PING_S; a dead one is replaced.

    ``pool_pre_ping`` pings at every checkout: a round trip per request, a tenth of a read request's
    time under load. A connection in steady use has just proved itself; one idle long enough for a
    database restart or a firewall's timeout is the one to check. (A restart under constant load makes
    the requests that meet a dead connection fail once; SQLAlchemy then discards the whole pool.)
    """

    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_conn, record):
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, record, _proxy):
        last = record.info.get("checked_in_at")
        if last is None or time.monotonic() - last < IDLE_PING_S:
            return  # new (just connected) or recently used
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection idle {time.monotonic() - last:.0f} s is dead: {exc}") from exc


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """One engine per URL for the process (the default: the settings' database)."""
    return make_engine(url or get_settings().database_url)


def get_session(engine: Engine | None = None) -> Iterator[Session]:
    """A session that is closed afterwards (a FastAPI dependency, or ``with contextmanager(...)``)."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        yield session


def session_factory(engine: Engine | None = None):
    """A zero-argument callable returning a new Session: what workers pass around."""
    engine = engine or get_engine()
    return lambda: Session(engine, expire_on_commit=False)
