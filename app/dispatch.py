"""How the API starts work: it hands a job id to its dispatcher, and nothing else.

    app = create_app(settings, dispatcher=CeleryDispatcher("redis://localhost:6379/0"))  # or the embedded executor
    dispatch(job_id, app.state.dispatcher, queue="cuda")                                # what the routes do

A dispatcher is any object with ``dispatch(job_id: int, queue: str | None = None) -> None`` (and optionally
``waiting(queue) -> int | None``, the messages the broker holds there, so that a backlog is not re-sent): ``queue`` is the
one the job's spec asks for (app.fleet.routing.job_queue; None: the default queue), which a Celery dispatcher
sends the task to and the embedded executor ignores (it runs every job on its own machine). If it also has ``start()`` and
``stop()``, the app calls them at start-up (after the database is migrated) and shutdown. The app's
one dispatcher is the one ``create_app`` was given (by default a CeleryDispatcher when a broker is
set); with none, jobs simply wait in the database queue until an executor picks them up.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)
TASK_NAME = "dynds.run_job"


@runtime_checkable
class Dispatcher(Protocol):
    def dispatch(self, job_id: int, queue: str | None = None) -> None: ...


class CeleryDispatcher:
    """Sends the task by name, so the API needs neither the worker code nor torch."""

    def __init__(self, broker_url: str, *, queue: str = "dynds", visibility_timeout_s: int | None = None):
        from celery import Celery

        self.queue = queue
        self.celery = Celery("dynds-api", broker=broker_url)
        if visibility_timeout_s:
            self.celery.conf.broker_transport_options = {"visibility_timeout": visibility_timeout_s}

    def dispatch(self, job_id: int, queue: str | None = None) -> None:
        self.celery.send_task(TASK_NAME, args=[job_id], queue=queue or self.queue)

    def waiting(self, queue: str) -> int | None:
        """Messages waiting in ``queue`` on the broker (not those a worker has taken); None if it cannot say."""
        from kombu.exceptions import ChannelError, OperationalError

        try:
            with self.celery.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)  # a sweep's question, not worth a retry loop
                return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:  # no such queue: nothing was ever sent to it, or it is empty (Redis drops an empty list)
            return 0
        except (OperationalError, OSError) as exc:
            log.info("the broker did not say how many messages queue %s holds (%s)", queue, exc)
            return None


def dispatch(job_id: int, dispatcher: Dispatcher | None, queue: str | None = None) -> None:
    if dispatcher is None:
        log.info("no dispatcher; job %s waits in the database queue", job_id)
        return
    dispatcher.dispatch(job_id, queue=queue)
