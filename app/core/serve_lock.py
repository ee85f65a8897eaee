"""One embedded `dynds serve` per database (``dynds serve`` takes it before it starts its executor)."""

from __future__ import annotations

from pathlib import Path


class ServeLockHeld(RuntimeError):
    """Another `dynds serve` with an embedded executor uses the database; the message names it."""


class ServeLock:
    """One embedded `dynds serve` per database: held for the life of the process, released by the OS (or
    PostgreSQL) when the process ends, however it ends, so a killed server never leaves it behind.

    SQLite: an exclusive ``flock`` on ``<database file>.serve-lock``, which holds the holder's host, pid,
    address and start time. PostgreSQL: a session-level advisory lock on a connection kept open, named
    (``application_name``) after the holder; pg_stat_activity tells who holds it. In Celery mode the API
    runs no jobs, and any number of API processes may share the database (no lock is taken).
    """

    PG_KEY = 0x64796E6473  # "dynds"

    def __init__(self, database_url: str, *, label: str):
        self.database_url = database_url
        self.label = label  # who we are, for the next one's message
        self._file = None
        self._conn = None
        self._engine = None

    def acquire(self) -> ServeLock:
        from sqlalchemy.engine import make_url

        from app.core.db import normalize_url

        url = make_url(normalize_url(self.database_url))
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                self._acquire_file(Path(url.database).expanduser())
        elif url.get_backend_name() == "postgresql":
            self._acquire_pg()
        return self

    def _acquire_file(self, db_path: Path) -> None:
        import fcntl

        path = db_path.with_name(db_path.name + ".serve-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not written its name yet"
            f.close()
            raise ServeLockHeld(holder) from None
        f.seek(0)
        f.truncate()
        f.write(self.label + "\n")
        f.flush()
        self._file = f

    def _acquire_pg(self) -> None:
        from sqlalchemy import text

        from app.core.db import make_engine

        self._engine = make_engine(self.database_url)  # one connection of its own, held
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": self.label[:63]})
        if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.PG_KEY}).scalar():
            self._conn = conn
            return
        row = conn.execute(
            text(
                "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() "
                "AND l.classid = :high AND l.objid = :low"
            ),
            {"high": self.PG_KEY >> 32, "low": self.PG_KEY & 0xFFFFFFFF},
        ).first()
        conn.close()
        self._engine.dispose()
        holder = (
            f"{row[0] or 'a client'} (connected from {row[1] or 'a local socket'} since {row[2]:%Y-%m-%d %H:%M:%S})" if row else "another session"
        )
        raise ServeLockHeld(holder)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = None
