"""This worker in the fleet: the hardware it has, and its row in the registry kept fresh (app/fleet/registry.py).

    hw = measure_hardware(threads=2)         # in a child interpreter: this process never initializes CUDA
    beat = Heartbeat(session_factory, host=socket.gethostname(), name="dynds@gpu-3", kind="celery",
                     hardware=hw, queues=worker_queues(hw, default="dynds"), interval_s=5).start()
    ...
    beat.stop()                              # signs off: the worker leaves the live list at once

`dynds worker` starts one in its Celery parent when the worker is ready (worker/celery_app.py), the embedded
executor when it starts. The row names the jobs the worker runs now: the running jobs whose ``worker`` column
(host:pid:thread, app.crud.claim_job) is this process or one of its children (a Celery pool child, an embedded
job's process), read at each beat, so a child that died without a word is not reported for long.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlmodel import Session, col, select

from app.core.config import Settings
from app.fleet import registry
from app.models import Job
from dynds_core.hardware import Hardware

from .sink import SessionFactory

log = logging.getLogger(__name__)

_DETECT = (
    "import json, sys; from dynds_core.hardware import detect_hardware; "
    "print(detect_hardware('auto', threads=json.loads(sys.argv[1])).model_dump_json())"
)


def measure_hardware(threads: int | None, timeout_s: float = 120.0) -> Hardware:
    """What this machine gives a job with ``threads`` torch threads (dynds_core.hardware.detect_hardware,
    DYNDS_HARDWARE_OVERRIDE included), measured in a child interpreter: naming a GPU initializes CUDA, and
    a process that did cannot fork children that use it (the Celery pool forks after this)."""
    try:
        out = subprocess.run([sys.executable, "-c", _DETECT, json.dumps(threads)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"could not detect this machine's hardware within {timeout_s:g} s") from None
    if out.returncode != 0:
        raise RuntimeError(f"could not detect this machine's hardware: {out.stderr.strip()[-2000:]}")
    return Hardware.model_validate_json(out.stdout.strip().splitlines()[-1])


# Held while the forking parent (the Celery worker's) uses its database, and taken by every fork of this process:
# a pool child forked while the heartbeat thread was inside SQLite (or libpq) inherits that library's internal
# mutex locked, by a thread the child does not have, and hangs at its first query for good (seen in CI: a
# child that logged its start and never claimed its job). With the fork waiting for the use to end, no child
# inherits a lock mid-use. Re-entrant: a fork from inside a use (none today) goes ahead instead of waiting for itself.
_FORK_GUARD = threading.RLock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release, after_in_child=_FORK_GUARD.release)


def unpooled_sessions(database_url: str) -> SessionFactory:
    """Sessions for a process that forks (the Celery parent): each opens and closes its own connection, so
    the pool children forked meanwhile inherit none, and holds the fork guard meanwhile, so no child is
    forked while one is in use (by the heartbeat's thread, say)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.core.db import SQLITE_BUSY_TIMEOUT_MS, normalize_url, session_factory

    url = normalize_url(database_url)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if url.startswith("sqlite") else {}
    sessions = session_factory(create_engine(url, poolclass=NullPool, connect_args=connect_args))

    @contextmanager
    def guarded() -> Iterator[Session]:
        with _FORK_GUARD, sessions() as session:
            yield session

    return guarded


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux: /proc), or None when it is gone or cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def jobs_of_process(session: Session, *, host: str, pid: int) -> list[int]:
    """The running jobs of this host claimed by process ``pid`` or one of its children."""
    rows = session.exec(select(Job.id, Job.worker).where(Job.status == "running", col(Job.worker).startswith(f"{host}:"))).all()
    mine = []
    for job_id, worker in rows:
        claimer = worker.split(":")[1] if worker.count(":") >= 1 else ""
        if claimer.isdigit() and (int(claimer) == pid or parent_pid(int(claimer)) == pid):
            mine.append(job_id)
    return mine


class Heartbeat:
    """Registers a worker (``start``, before it takes jobs), then writes ``last_seen`` and its current jobs every
    ``interval_s`` from a daemon thread; ``stop`` signs it off. A database that is away is retried at the next
    beat (logged, never raised): the worker keeps working, and shows as gone meanwhile."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        host: str | None = None,
        name: str,
        kind: str,
        hardware: Hardware,
        queues: Sequence[str],
        interval_s: float,
        concurrency: int = 1,
        pid: int | None = None,
        current_jobs: Callable[[Session], list[int]] | None = None,
    ):
        self.session_factory = session_factory
        self.host = host or socket.gethostname()
        self.name, self.kind, self.hardware, self.queues = name, kind, hardware, list(queues)
        self.interval_s, self.concurrency = interval_s, concurrency
        self.pid = pid or os.getpid()
        self.current_jobs = current_jobs or (lambda session: jobs_of_process(session, host=self.host, pid=self.pid))
        self.worker_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._try(self._register)
        self._thread = threading.Thread(target=self._loop, name="dynds-fleet-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.worker_id is not None:
            self._try(self._sign_off)

    def _register(self) -> None:
        with self.session_factory() as session:
            row = registry.register_worker(
                session=session, host=self.host, name=self.name, kind=self.kind, pid=self.pid, hardware=self.hardware,
                queues=self.queues, concurrency=self.concurrency,
            )  # fmt: skip
            self.worker_id = row.id
        log.info("registered as worker %s on %s (%s; queues %s)", self.name, self.host, self.hardware.key, ", ".join(self.queues))

    def beat(self) -> None:
        """One heartbeat (the thread's, also callable directly): registers again when the row is gone."""
        if self.worker_id is None:
            return self._register()
        with self.session_factory() as session:
            if not registry.beat(session=session, worker_id=self.worker_id, job_ids=self.current_jobs(session)):
                self.worker_id = None
        if self.worker_id is None:
            self._register()

    def _sign_off(self) -> None:
        with self.session_factory() as session:
            registry.sign_off(session=session, worker_id=self.worker_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._try(self.beat)

    def _try(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # the database may be briefly away: the next beat tries again
            log.warning("worker %s: the fleet registry could not be written (%s); retrying in %g s", self.name, exc, self.interval_s)


def embedded_heartbeat(settings: Settings, session_factory: SessionFactory, threads: int) -> Heartbeat:
    """The embedded executor's entry, started: `dynds serve` on this host, with the hardware its jobs get
    (measured here: its jobs run in spawned processes, which a CUDA initialized here does not trouble)."""
    from app.fleet.routing import worker_queues
    from dynds_core.hardware import detect_hardware

    hardware = detect_hardware("auto", threads=threads)
    queues = worker_queues(hardware, default=settings.queue)
    beat = Heartbeat(session_factory, name="dynds serve", kind="embedded", hardware=hardware, queues=queues, interval_s=settings.worker_heartbeat_s)
    return beat.start()
