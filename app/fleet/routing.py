"""Queues follow hardware: the queue a job goes to, the queues a worker listens to, and who serves a queue now.

    job_queue(job.spec, default="dynds")                 # "cuda", "cpu.intel-xeon.t2", ... or "dynds"
    worker_queues(hw, default="dynds", extra=["gpu"])    # ["cuda", "cuda.nvidia-h100-80gb-hbm3", "cuda.nvidia-h100-80gb-hbm3.x1", "dynds", "gpu"]
    unserved_reason("cuda", offers)                       # "no live worker serves queue 'cuda' now (...)" or None

No scheduler of ours: a worker subscribes to the queues of what it has (dynds_core.hardware.hardware_queues,
broadest first), the producer picks the queue per job (dynds_core.hardware.requested_queue of train.device
and train.hardware). A CPU worker never listens to ``cuda``, so it never takes a job that asks for a GPU; a job
that asks for nothing goes to the default queue, which every worker listens to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from app.models import Job
from dynds_core.hardware import Hardware, hardware_queues, requested_queue

# What a queue name may hold (Celery takes a comma-separated list: no commas, no spaces).
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")


def requested(spec: Any) -> str | None:
    """The queue a spec (a JobSpec or its canonical dict) asks for, or None for any worker.

    >>> requested({"train": {"device": "cuda", "hardware": "auto"}})
    'cuda'
    """
    if isinstance(spec, Mapping):
        train = spec.get("train") or {}
        device, pin = train.get("device", "auto"), train.get("hardware", "auto")
    else:
        device, pin = spec.train.device, getattr(spec.train, "hardware", "auto")
    return requested_queue(str(device), str(pin))


def job_queue(spec: Any, default: str) -> str:
    """The queue a job is sent to: the one its spec asks for, else the default queue."""
    return requested(spec) or default


def parse_queue_names(text: str | None) -> list[str]:
    """`--queue gpu,fast` as names, each checked (ValueError naming the bad one).

    >>> parse_queue_names("gpu, fast")
    ['gpu', 'fast']
    """
    names = [q.strip() for q in (text or "").split(",") if q.strip()]
    bad = [q for q in names if not QUEUE_NAME.fullmatch(q)]
    if bad:
        raise ValueError(f"queue names are letters, digits and . _ : @ - (at most 200), separated by commas: {', '.join(map(repr, bad))}")
    return names


def worker_queues(hardware: Hardware, *, default: str, extra: Iterable[str] = ()) -> list[str]:
    """The queues a worker with ``hardware`` listens to: its hardware's (broadest first), the default queue,
    then the ones its operator named; each once."""
    out: list[str] = []
    for queue in (*hardware_queues(hardware), default, *extra):
        if queue and queue not in out:
            out.append(queue)
    return out


@dataclass(frozen=True)
class Offer:
    """What one live worker serves: its hardware class and the queues it listens to."""

    hardware_class: str
    queues: tuple[str, ...]


def unserved_reason(queue: str, offers: Sequence[Offer]) -> str | None:
    """Why no live worker would take a job sent to ``queue`` now, naming the classes that are alive; None
    when one listens to it."""
    if any(queue in offer.queues for offer in offers):
        return None
    classes = sorted({offer.hardware_class for offer in offers})
    alive = f"live hardware classes: {', '.join(classes)}" if classes else "no worker is alive"
    return f"no live worker serves queue {queue!r} now ({alive})"


def declared_kinds(devices: Iterable[str]) -> set[str]:
    """The device kinds an operator declared (DYNDS_DEVICES: "cpu,cuda:0" -> {"cpu", "cuda"})."""
    return {d.split(":")[0].strip() for d in devices if d.strip()}


def queues_of_jobs(*, session: Session, job_ids: Sequence[int], default: str) -> dict[int, str]:
    """The queue each stored job is sent to (the re-dispatch of queued jobs sends each to its own)."""
    if not job_ids:
        return {}
    rows = session.exec(select(Job.id, Job.spec).where(col(Job.id).in_(list(job_ids)))).all()
    return {job_id: job_queue(spec or {}, default) for job_id, spec in rows}
