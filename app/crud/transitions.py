"""The job lifecycle as one table: every operation that changes a job (or must find it in some state),
the states it may start from and the state it leads to.

    update = move("claim", col(Job.id) == job_id, worker=...)   # UPDATE job SET status='running', ...
                                                                #  WHERE status IN ('queued') AND id = ...

Every conditional UPDATE in app.crud takes its states from here (``move``, ``in_sources``), and so does
every 409 (``refusal``): the API and the workers (which change jobs only through app.crud) follow one
table. tests/app/crud/test_crud_transitions.py checks each (state, operation) pair against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Update, update
from sqlmodel import col

from app.models import FINAL_STATES, JOB_STATES, Job


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]  # the states the operation may start from
    target: str | None  # the state it leads to; None: the status stays (a flag, a stamp, a new job, the row deleted)
    verb: str  # "only <sources> jobs can be <verb>"
    hint: str = ""  # said after the refusal


LIVE = ("queued", "running")
TRANSITIONS: dict[str, Transition] = {
    "claim": Transition(("queued",), "running", "claimed"),
    "finish": Transition(("running",), "succeeded", "finished"),
    "finish_cancelled": Transition(("running",), "cancelled", "finished"),  # the run stopped on a cancel request
    "fail": Transition(LIVE, "failed", "failed"),  # by the API: it could not dispatch the job
    "fail_run": Transition(("running",), "failed", "failed by their run"),  # a worker failing its own run
    "cancel_queued": Transition(("queued",), "cancelled", "cancelled"),
    "flag_cancel": Transition(("running",), None, "cancelled"),  # cancel_requested: the worker stops within a step
    "requeue": Transition(("running",), "queued", "requeued"),  # its own process shuts down (SIGTERM)
    "give_up_requeue": Transition(("running",), "queued", "given up"),  # a lost run, requeued
    "give_up_fail": Transition(("running",), "failed", "given up"),  # a lost run, failed
    "give_up_cancelled": Transition(("running",), "cancelled", "given up"),  # a lost run whose cancel was asked
    "retry": Transition(("failed", "cancelled"), None, "retried"),  # a new queued job; the old one stays
    "delete": Transition(FINAL_STATES, None, "deleted", "cancel it and wait until it stops"),
    "mark_dispatched": Transition(("queued",), None, "dispatched"),  # sent to the broker again
    # A run's heartbeat and metric points: not once it was requeued (a job failed meanwhile, e.g. by the
    # heartbeat check, still gets the points that explain it).
    "flush": Transition(("running", *FINAL_STATES), None, "written to by their run"),
}
GIVE_UP = ("give_up_requeue", "give_up_fail", "give_up_cancelled")


class JobStateError(ValueError):
    """The job is not in a state that allows the operation (the API answers 409)."""

    def __init__(self, message: str, *, job_id: int | None = None, status: str | None = None, ops: tuple[str, ...] = ()):
        super().__init__(message)
        self.job_id, self.status, self.ops = job_id, status, ops


def sources(*ops: str) -> tuple[str, ...]:
    """The states any of ``ops`` may start from, in JOB_STATES order."""
    wanted = {s for op in ops for s in TRANSITIONS[op].sources}
    return tuple(s for s in JOB_STATES if s in wanted)


def target(op: str) -> str | None:
    return TRANSITIONS[op].target


def in_sources(*ops: str) -> Any:
    """The WHERE clause: the job's status is one that one of ``ops`` may start from."""
    return col(Job.status).in_(sources(*ops))


def move(op: str, *where: Any, **values: Any) -> Update:
    """UPDATE job SET status = ``op``'s target (when it has one), ``values`` WHERE the status is one of
    ``op``'s sources AND ``where``: the caller learns from the row count whether the job was there."""
    t = TRANSITIONS[op]
    if t.target is not None:
        values["status"] = t.target
    return update(Job).where(in_sources(op), *where).values(**values)


def _either(states: tuple[str, ...]) -> str:
    return states[0] if len(states) == 1 else ", ".join(states[:-1]) + " or " + states[-1]


def refusal(job_id: int, status: str, *ops: str) -> JobStateError:
    """The 409 for a job in ``status`` that none of ``ops`` may start from, e.g.
    "job 3 is succeeded: only queued or running jobs can be cancelled"."""
    first = TRANSITIONS[ops[0]]
    hint = f": {first.hint}" if first.hint else ""
    message = f"job {job_id} is {status}: only {_either(sources(*ops))} jobs can be {first.verb}{hint}"
    return JobStateError(message, job_id=job_id, status=status, ops=ops)
