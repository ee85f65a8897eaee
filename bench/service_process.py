"""What the service benchmarks share: a real `dynds serve` process, and a throwaway PostgreSQL database.

with pg_database(admin_url, "dynds_sse_bench") as url:
    proc = start_serve({"DYNDS_DATABASE_URL": url, "DYNDS_HOME": home}, port)
    ...
    stop(proc)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def start_serve(
    env: dict[str, str], port: int, *, unset: tuple[str, ...] = (), ready_s: float = 90.0, args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`dynds serve` on 127.0.0.1:``port`` (embedded: no broker) in its own session, once /readyz answers 200;
    ``env`` over this process's environment, without the variables in ``unset``; ``args`` after serve's own
    (``("--broker-url", url)``: Celery mode)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    for name in ("DYNDS_BROKER_URL", *unset):
        full_env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dynds.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args],
        cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dynds serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"dynds serve did not become ready in {ready_s:g} s")


def stop(proc: subprocess.Popen | None, grace_s: float = 15.0) -> None:
    """SIGTERM to the process's whole session, SIGKILL after ``grace_s``; nothing left behind."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def pg_database(admin_url: str, prefix: str = "dynds_bench") -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark run (dropped afterwards); yields its URL."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle_bulk_load(engine, raw, cur) -> None:
    """Commit a benchmark's bulk load; on PostgreSQL also do what autovacuum would have done by now on a live
    server (statistics, the visibility map that lets count(*) run as an index-only scan) and write out the
    load's dirty pages now, not during the measurement."""
    raw.commit()
    if engine.dialect.name == "postgresql":
        raw.driver_connection.autocommit = True
        cur.execute("VACUUM ANALYZE")
        cur.execute("CHECKPOINT")
