"""The embedded executor: `dynds serve` runs its jobs itself, one at a time, each in a child process.

    executor = EmbeddedExecutor(settings)
    app = create_app(settings, dispatcher=executor)   # the app starts it after migrating, stops it at shutdown
    ...                              # POST /jobs -> dispatch(job_id) -> the thread wakes up
                                     # at shutdown the running job ends its current step and is requeued (SIGTERM to `dynds serve`)

The database is the queue: a thread of the server takes the oldest queued job (``next_queued_job_id``)
until none is left, then sleeps until ``dispatch`` wakes it or ``idle_poll_s`` passes (which also picks
up jobs queued by another process). ``dispatch`` only wakes the thread: the job id it is given is
already in the queue, and claiming is atomic, so the order stays first come, first served.

Each job runs in a child process of its own (multiprocessing "spawn": a fresh interpreter, about 2 s to
start), which claims it, trains and stores it with ``worker.runner.run_job`` (its own database
connections, its own job log), as a Celery worker's child does. Why not a thread of the server, as
before: the API's requests took the training thread's GIL and cores, and 20 dashboard readers polling
non-stop moved a job's lockstep time saving from 26.4 % to 11.5 % without a flag (issue 16). In its own
process the job has its interpreter and torch threads to itself; what readers can still take is CPU time,
which the job measures and flags (``JobResult.contended``, dynds_core.trainer.Contention).

- Torch threads per job: ``worker_threads`` (DYNDS_WORKER_THREADS), else one core fewer than the server
  may use, at least one: the API and its readers need a core, and with every core in torch's parallel
  loops each op waits for its slowest thread whenever a request takes one.
- Stop: ``stop()`` tells the child through a pipe; its job ends at its current step and is requeued
  (``REQUEUED``). A child whose server died (SIGKILL: the pipe closes) does the same and exits within
  ORPHAN_GRACE_S whatever it was doing: no orphan trains on. Ctrl-C reaches the whole process group: the
  child leaves SIGINT to the server; SIGTERM to the child is a stop.
- A child that dies mid-job (the OOM killer, a crash) leaves its job running under its dead pid: the server
  recovers it at once by ``recover_policy`` (``recover_if_orphaned``: the dead pid is proof).
- The job's ``worker`` is ``host:<child pid>:dynds-executor``, so a restarted server recovers what its
  children left running (app.crud.recovery.EXECUTOR_THREAD).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection, wait

from app import crud
from app.core.config import Settings, get_settings
from app.crud.recovery import EXECUTOR_THREAD

from .fleet import Heartbeat, embedded_heartbeat
from .runner import default_session_factory, recover_if_orphaned, run_job
from .sink import SessionFactory

log = logging.getLogger(__name__)
ORPHAN_GRACE_S = 30.0  # a child whose server died exits this long after, even mid-step
STOP = "stop"


def embedded_threads(cpu_count: int | None, requested: int | None = None) -> int:
    """Torch threads for an embedded job (see the module docstring)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"worker_threads must be at least 1: {requested}")
        return requested
    cores = cpu_count or 1
    return max(1, cores - 1)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset / container CPU sets
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- the child: one job


def _watch_server(control: Connection, stop: threading.Event) -> None:
    """Set ``stop`` when the server says so; when the server is gone, and exit ORPHAN_GRACE_S later."""
    try:
        while True:
            control.recv()
            stop.set()
    except (EOFError, OSError):  # the server's end closed: it died (or ended) without waiting for us
        stop.set()
        threading.Timer(ORPHAN_GRACE_S, os._exit, args=(70,)).start()


def run_child(job_id: int, settings: Settings, threads: int, logging_choice: dict[str, str], control: Connection, report: Connection) -> None:
    """The child's whole life: run job ``job_id`` with ``threads`` torch threads, send its status on ``report``."""
    import torch

    from app.logs import configure_logging

    threading.current_thread().name = EXECUTOR_THREAD  # the job's worker column: host:pid:dynds-executor
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops us through the pipe
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_watch_server, args=(control, stop), name="dynds-server-watch", daemon=True).start()
    # as the server's (`dynds serve --log-level`); a server that configured nothing: the settings'
    configure_logging(logging_choice.get("level", settings.log_level), logging_choice.get("format", settings.log_format))
    torch.set_num_threads(threads)
    status = run_job(job_id, settings=settings, stop_event=stop, own_process=True)
    report.send(status)


# ---------------------------------------------------------------- the server's side


class EmbeddedExecutor:
    """``session_factory``: the server's view of the queue (a child opens its own, on ``settings.database_url``)."""

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
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._control: Connection | None = None  # to the running child
        self._control_lock = threading.Lock()
        self.current_job: int | None = None
        self.child_pid: int | None = None
        self.jobs_run = 0
        self._fleet: Heartbeat | None = None  # its entry in the fleet's registry while it runs (worker/fleet.py)

    # The dispatcher interface (app.dispatch): the route has committed the job; wake the thread.
    def dispatch(self, job_id: int, queue: str | None = None) -> None:  # any queue: this server runs every job itself
        self._wake.set()

    def start(self) -> EmbeddedExecutor:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._wake.set()  # look at the queue at once: jobs may be waiting from before a restart
        self._thread = threading.Thread(target=self._loop, name="dynds-executor", daemon=True)
        self._thread.start()
        log.info("embedded executor started (each job in a process of its own, %d torch threads)", self.threads)
        from app.storage.step_archive import NO_PYARROW, have_pyarrow

        if self.settings.step_archive and not have_pyarrow():
            log.warning(NO_PYARROW)
        if self._fleet is None:
            self._fleet = embedded_heartbeat(self.settings, self.session_factory, self.threads)
        return self

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop taking jobs and interrupt the running one; True when the thread has ended."""
        self._stop.set()
        self._wake.set()
        if self._fleet is not None:
            self._fleet.stop()
            self._fleet = None
        self._tell_child()
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

    def _tell_child(self) -> None:
        with self._control_lock:
            if self._control is not None:
                try:
                    self._control.send(STOP)
                except OSError:  # it has just ended
                    pass

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
                    status = self._run_in_child(job_id)
                except Exception:
                    log.exception("embedded executor: job %s could not be run", job_id)
                    status = None
                finally:
                    self.current_job = None
                    self.jobs_run += 1
                if status is None:
                    break  # wait before retrying, rather than spinning on the same queued job

    def _run_in_child(self, job_id: int) -> str | None:
        """Run ``job_id`` in a child process and wait for it; its status, or None when the child died."""
        from app.logs import chosen_logging

        ctx = multiprocessing.get_context("spawn")
        control_r, control_w = ctx.Pipe(duplex=False)
        report_r, report_w = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=run_child,
            args=(job_id, self.settings, self.threads, chosen_logging(), control_r, report_w),
            name=f"dynds-job-{job_id}",
            daemon=False,  # a daemonic process may not start processes (a data set's decoders)
        )
        child.start()
        control_r.close()  # the child's ends: our copies closed, so that each side sees the other go
        report_w.close()
        self.child_pid = child.pid
        with self._control_lock:
            self._control = control_w
        if self._stop.is_set():  # a stop that came while the child started
            self._tell_child()
        try:
            wait([report_r, child.sentinel])
            try:
                status = report_r.recv() if report_r.poll() else None
            except EOFError:  # it died without a word: its end of the pipe closed
                status = None
            child.join()
        finally:
            with self._control_lock:
                self._control = None
            control_w.close()
            report_r.close()
            self.child_pid = None
        if status is None:
            log.error("job %s: its process %s ended with exit code %s before it reported", job_id, child.pid, child.exitcode)
            with self.session_factory() as session:
                recover_if_orphaned(session, job_id, self.settings)  # its pid is gone: proof
        return status
