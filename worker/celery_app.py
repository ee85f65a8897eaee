"""The Celery side: one task, ``dynds.run_job(job_id)``, configured for long training jobs.

    DYNDS_BROKER_URL=redis://localhost:6379/0 dynds worker --queue gpu

- Queues follow hardware (app/fleet/routing.py): `dynds worker` listens to the queues of the hardware it
  detected, the default queue and those named with --queue; ``make_celery(settings, fleet=...)`` carries them,
  and the parent registers in the fleet's registry once it is ready and heartbeats (worker/fleet.py) until
  it shuts down.

- acks_late + task_reject_on_worker_lost: a job whose worker dies is redelivered; ``run_job`` claims
  atomically, so a redelivered message never runs a job twice (it is skipped if already claimed).
- A worker that dies outright (killed, its machine lost) may never see the redelivery: its job keeps
  `running` until the API's heartbeat check fails it (no heartbeat for ``stale_job_after_s``; the
  sink writes one with every metrics flush). See ``app.crud.fail_stale_jobs``.
- worker_prefetch_multiplier=1: a worker holds one job at a time, so a free worker never waits behind
  a busy one's reserved jobs.
- visibility_timeout longer than the longest job: Redis would otherwise redeliver a job that is still
  running (harmless because of the claim, but it would block a worker slot on a skip).
- Graceful stop: SIGTERM (or Ctrl-C) to `dynds worker` is Celery's warm shutdown, which waits for the
  running task; the parent also passes SIGTERM on to its pool children (``_forward_shutdown``), where it
  only sets ``STOP``: the running job ends its current step, flushes its metrics and is requeued
  (runner.run_job), and the task rejects its message with requeue, so another worker takes the job.
- The task sends no result anywhere (the database holds it), and the API sends it by name, so the
  API never imports this module or torch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

from celery import Celery
from celery.exceptions import Reject
from celery.signals import setup_logging, worker_init, worker_process_init, worker_ready, worker_shutdown, worker_shutting_down
from celery.worker.request import Request
from celery.worker.state import task_ready

from app.core.config import Settings, get_settings
from app.dispatch import TASK_NAME  # the API sends the task by this name
from dynds_core.hardware import Hardware

log = logging.getLogger(__name__)


def make_celery(settings: Settings | None = None, *, fleet: FleetEntry | None = None) -> Celery:
    """The worker's Celery app; ``fleet``: what it registers as once ready (None: it does not register)."""
    settings = settings or get_settings()
    if not settings.broker_url:
        raise ValueError("no broker configured: set DYNDS_BROKER_URL, e.g. redis://localhost:6379/0")
    app = Celery("dynds", broker=settings.broker_url)
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # One job per child process (the default) is enough to bound leaks (CUDA caches, data set caches) over weeks.
        worker_max_tasks_per_child=settings.worker_max_jobs_per_child,
        # A child that imports torch on a busy machine can take seconds to report in (default 4 s).
        worker_proc_alive_timeout=60,
    )
    app.task(name=TASK_NAME, bind=False, Request=JobRequest)(run_job_task)
    app.dynds_fleet = fleet
    app.dynds_settings = settings
    return app


@dataclass(frozen=True)
class FleetEntry:
    """What a `dynds worker` registers as: its hardware (measured before the pool forks: worker/fleet.py), the
    queues it listens to, and how many jobs it runs at once. Its node name is Celery's, once expanded."""

    hardware: Hardware
    queues: tuple[str, ...]
    concurrency: int = 1


_HEARTBEAT: list = []  # the parent's one heartbeat (worker/fleet.Heartbeat), while the worker runs


@worker_ready.connect
def _register(sender=None, **_kwargs) -> None:
    """In the parent, once it consumes: its row in the fleet's registry, kept fresh from a thread of its own
    (forked pool children do not inherit threads, and none of them writes the row)."""
    celery = getattr(sender, "app", None)
    fleet = getattr(celery, "dynds_fleet", None)
    if fleet is None:
        return
    from .fleet import Heartbeat, unpooled_sessions

    settings = celery.dynds_settings
    beat = Heartbeat(
        unpooled_sessions(settings.database_url), name=sender.hostname, kind="celery", hardware=fleet.hardware,
        queues=fleet.queues, concurrency=fleet.concurrency, interval_s=settings.worker_heartbeat_s,
    )  # fmt: skip
    _HEARTBEAT.append(beat.start())


@worker_shutdown.connect
def _sign_off(**_kwargs) -> None:
    """In the parent, as it exits: off the live list at once (a killed worker leaves it by its heartbeat's age)."""
    while _HEARTBEAT:
        _HEARTBEAT.pop().stop()


class JobRequest(Request):
    """A delivery of ``dynds.run_job``, as the parent hands it to the pool. One whose job has already ended
    (succeeded, failed or cancelled: a re-dispatched duplicate, a redelivery after the run finished) is
    acknowledged here, without a child: with one job per child (``worker_max_jobs_per_child``) each
    delivery the pool takes costs a fresh child process, and a backlog of duplicates after a broker restart
    would cost one each. A job in any other state goes to a child, whose atomic claim decides as before
    (a `running` job may be an orphan that this delivery recovers: runner.recover_if_orphaned)."""

    def revoked(self) -> bool:
        # Celery asks this just before it hands a delivery to the pool (a revoked one is dropped there and its
        # pool slot given back); the request class Celery builds per task overrides execute_using_pool itself.
        if super().revoked():
            return True
        ended = _ended_status(self._app, self.args)
        if ended is None:
            return False
        log.info("job %s is already %s: its delivery acknowledged without a pool child", self.args[0], ended)
        task_ready(self)
        self.acknowledge()
        self._already_revoked = True
        return True


def _ended_status(celery: Celery, args) -> str | None:
    """The job's status if it has ended; None if it has not, or if that cannot be told here (the child decides)."""
    from sqlalchemy import select

    from app.models import FINAL_STATES, Job

    try:
        job_id = int(args[0])
        sessions = getattr(celery, "dynds_parent_sessions", None)
        if sessions is None:
            from .fleet import unpooled_sessions  # no connection kept: the children forked later inherit none

            sessions = celery.dynds_parent_sessions = unpooled_sessions(celery.dynds_settings.database_url)
        with sessions() as session:
            status = session.execute(select(Job.status).where(Job.id == job_id)).scalar_one_or_none()
    except Exception:  # a database hiccup or an odd message: the child's claim handles it as before
        log.debug("could not look up the job of delivery %r; passing it to the pool", args, exc_info=True)
        return None
    return status if status in FINAL_STATES else None


# Set in a pool child by SIGTERM (the parent's warm shutdown passes it on): the running job stops after its step.
STOP = threading.Event()


def run_job_task(job_id: int) -> str:
    """The task body: the job id in, its final status out (the database holds everything else)."""
    from .runner import REQUEUED, run_job

    # Here, not at process init: billiard puts its own SIGTERM handler (exit at once) in after the initializer.
    # A task runs on the child's main thread, where a handler may be set.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    status = run_job(int(job_id), stop_event=STOP)
    if status == REQUEUED:
        # Back to the broker (acks_late): the job is queued again in the database, and its message with it.
        raise Reject(f"job {job_id} requeued by a worker shutdown", requeue=True)
    return status


def _stop_on_sigterm(_signum, _frame) -> None:
    STOP.set()


@worker_shutting_down.connect
def _forward_shutdown(sig=None, how=None, **_kwargs) -> None:
    """In the parent, at a warm shutdown: SIGTERM to each pool child, so its job stops at the next step
    instead of the shutdown waiting for it to end (hours)."""
    if how != "Warm":
        return
    from billiard.process import active_children

    for child in active_children():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except (ProcessLookupError, TypeError):
            pass
    log.info("warm shutdown (%s): running jobs stop after their current step and are requeued", sig)


@setup_logging.connect
def _setup_logging(**_kwargs) -> None:
    """Celery's logging is ours (app/logs.py): a receiver of this signal stops Celery from configuring
    any (worker_hijack_root_logger=False covers a worker started without it). In `dynds worker` the
    configuration chosen by its --log-level and --log-format is applied again; else the settings'."""
    from app.logs import configure_logging

    configure_logging()


@worker_init.connect
def _preload(**_kwargs) -> None:
    """In the parent, before the pool forks: the heavy imports, so each fresh child starts in
    milliseconds. Importing torch starts no threads; those begin with the first op, in the child."""
    import torch  # noqa: F401

    import dynds_core.trainer  # noqa: F401

    from . import runner  # noqa: F401
    from .reproducibility import git_state

    git_state()  # the checkout's state as this worker loads it, inherited by every child (read once per process)


@worker_process_init.connect
def _init_worker_process(**_kwargs) -> None:
    """Per child process, after the fork: torch threads, and a fresh database engine."""
    import torch

    from app.core import db

    settings = get_settings()
    # `dynds worker` fills worker_threads (cores / concurrency) before forking when it is unset.
    threads = settings.worker_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    # Engines are made lazily per process; the parent opens the database only for its heartbeat, on an engine
    # that keeps no connection between beats: no inherited connections to dispose of, only cached engines to forget.
    db.get_engine.cache_clear()
    STOP.clear()
    log.info("dynds worker process %s: %d torch threads", os.getpid(), threads)
    _say_if_no_step_archive(settings)


def _say_if_no_step_archive(settings) -> None:
    from app.storage.step_archive import NO_PYARROW, have_pyarrow

    if settings.step_archive and not have_pyarrow():
        log.warning(NO_PYARROW)
