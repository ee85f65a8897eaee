"""The embedded executor: runs jobs on one background thread of the serving process.

    executor = EmbeddedExecutor(settings)
    app = create_app(settings, dispatcher=executor)   # the app starts it after migrating, stops it at shutdown
    ...                              # POST /jobs -> dispatch(job_id) -> the thread wakes up
                                     # at shutdown the running job ends its current step and is requeued (SIGTERM to `dynds serve`)

The database is the queue: the thread takes the oldest queued job (``next_queued_job_id``) until
none is left, then sleeps until ``dispatch`` wakes it or ``idle_poll_s`` passes (which also picks
up jobs queued by another process). ``dispatch`` only wakes the thread: the job id it is given is
already in the queue, and claiming is atomic, so the order stays first come, first served.

Threads: the trainer shares the process (and its GIL) with the API. Defaults (bench/embedded_readers.py
measures them; ``worker_threads``, ``embedded_api_threads``, ``embedded_switch_interval_ms`` override):

- torch threads (process-wide): one core fewer than the process may use, at least one. With every core
  in torch's parallel loops, an API request that takes one core makes every op wait for its slowest
  thread; on 2 shared cores that made steps 2-20x slower with readers, and slower even without them.
- the API's sync routes run in at most DEFAULT_API_THREADS threads (anyio's default limiter, 40
  otherwise): fewer threads contending for the GIL with the training thread; requests queue instead.
- the interpreter's switch interval is DEFAULT_SWITCH_INTERVAL_MS (5 ms otherwise): the training
  thread takes the GIL back after each torch op within 1 ms rather than 5 ms while requests run.

Readers still slow a job (about 1.9x with 20 readers at 250 ms think time, 2.4x closed loop, on 2
cores); heavy users run jobs on Celery workers (`dynds worker`), where readers cannot touch them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from app import crud
from app.core.config import Settings, get_settings

from .runner import default_session_factory, run_job
from .sink import SessionFactory

log = logging.getLogger(__name__)
DEFAULT_API_THREADS = 4
DEFAULT_SWITCH_INTERVAL_MS = 1.0


def embedded_threads(cpu_count: int | None, requested: int | None = None) -> int:
    """Torch threads for training inside the serving process (see the module docstring)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"worker_threads must be at least 1: {requested}")
        return requested
    cores = cpu_count or 1
    return max(1, cores - 1)


def embedded_api_threads(requested: int | None = None) -> int:
    """Threads the API's sync routes may hold at once while the process also trains (see the module docstring)."""
    return requested if requested is not None else DEFAULT_API_THREADS


def limit_api_threads(n: int) -> bool:
    """Bound anyio's default thread limiter (FastAPI's thread pool for sync routes) to ``n``; False
    outside an event loop (an executor started by hand, not by the app's start-up)."""
    try:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = n
        return True
    except Exception:  # no running event loop
        return False


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset / container CPU sets
    except AttributeError:
        return os.cpu_count() or 1


class EmbeddedExecutor:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        session_factory: SessionFactory | None = None,
        idle_poll_s: float = 5.0,
    ):
        self.settings = settings or get_settings()
        self.session_factory = session_factory or default_session_factory(self.settings)
        self.idle_poll_s = idle_poll_s
        self.threads = embedded_threads(available_cores(), self.settings.worker_threads)
        self.api_threads = embedded_api_threads(self.settings.embedded_api_threads)
        self.switch_interval_ms = self.settings.embedded_switch_interval_ms or DEFAULT_SWITCH_INTERVAL_MS
        self._wake = threading.Event()
        self._stop = threading.Event()  # also handed to the running job: it stops within one step
        self._thread: threading.Thread | None = None
        self.current_job: int | None = None
        self.jobs_run = 0

    # The dispatcher interface (app.dispatch): the route has committed the job; wake the thread.
    def dispatch(self, job_id: int) -> None:
        self._wake.set()

    def start(self) -> EmbeddedExecutor:
        if self._thread is not None and self._thread.is_alive():
            return self
        import torch

        torch.set_num_threads(self.threads)
        limited = limit_api_threads(self.api_threads)
        if self.switch_interval_ms:
            sys.setswitchinterval(self.switch_interval_ms / 1000)
        self._stop.clear()
        self._wake.set()  # look at the queue at once: jobs may be waiting from before a restart
        self._thread = threading.Thread(target=self._loop, name="dynds-executor", daemon=True)
        self._thread.start()
        log.info(
            "embedded executor started (%d torch threads, API threads %s, switch interval %g ms)",
            self.threads,
            self.api_threads if limited else "unchanged",
            1000 * sys.getswitchinterval(),
        )
        return self

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop taking jobs and interrupt the running one; True when the thread has ended."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            log.warning("embedded executor did not stop within %ss (job %s still running)", timeout, self.current_job)
        return not alive

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _next_job(self) -> int | None:
        with self.session_factory() as session:
            return crud.next_queued_job_id(session=session)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_poll_s)
            self._wake.clear()
            while not self._stop.is_set():
                try:
                    job_id = self._next_job()
                except Exception:  # the database may be briefly away; try again after the idle wait
                    log.exception("embedded executor cannot read the queue")
                    break
                if job_id is None:
                    break
                self.current_job = job_id
                try:
                    run_job(job_id, session_factory=self.session_factory, settings=self.settings, stop_event=self._stop)
                except Exception:  # run_job records job errors itself; this is a database failure
                    log.exception("embedded executor: job %s could not be run", job_id)
                    break  # wait before retrying, rather than spinning on the same queued job
                finally:
                    self.current_job = None
                    self.jobs_run += 1
