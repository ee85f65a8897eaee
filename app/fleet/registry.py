"""The worker registry: each worker's row, written by the worker (register, heartbeat, sign off), read by the API.

    row = register_worker(session=s, host="gpu-3", name="dynds@gpu-3", kind="celery", pid=4242, hardware=hw, queues=[...])
    beat(session=s, worker_id=row.id, job_ids=[12])          # every settings.worker_heartbeat_s
    sign_off(session=s, worker_id=row.id)                     # a graceful stop: gone at once
    workers = list_workers(session=s, timeout_s=30, history_s=86400)   # [(Worker, alive), ...]

Identity is (host, name): a worker restarted under its node name (after a SIGKILL too) takes its row back,
so the registry never holds duplicates of one worker. Alive means seen within ``timeout_s`` and not signed off;
a killed worker is gone once its heartbeat is that old.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

import dynds_core
from app.fleet.routing import Offer
from app.models import Worker, as_utc, utcnow
from dynds_core.hardware import Hardware


def is_alive(worker: Worker, *, now: datetime, timeout_s: float) -> bool:
    """Seen within ``timeout_s`` and not signed off."""
    return worker.stopped_at is None and as_utc(worker.last_seen) > now - timedelta(seconds=timeout_s)


def register_worker(
    *,
    session: Session,
    host: str,
    name: str,
    kind: str,
    pid: int,
    hardware: Hardware,
    queues: Sequence[str],
    concurrency: int = 1,
    now: datetime | None = None,
) -> Worker:
    """Insert the worker's row, or take back the row of (host, name) when it exists (a restart): started now,
    seen now, running nothing yet."""
    now = now or utcnow()
    values = dict(
        kind=kind, pid=pid, version=dynds_core.__version__, hardware=hardware.model_dump(mode="json"), hardware_key=hardware.key,
        hardware_class=hardware.hardware_class, queues=list(queues), concurrency=concurrency, job_ids=[], started_at=now,
        last_seen=now, stopped_at=None,
    )  # fmt: skip
    for _ in range(3):
        row = session.exec(select(Worker).where(Worker.host == host, Worker.name == name)).first()
        if row is None:
            row = Worker(host=host, name=name, **values)
        else:
            for key, value in values.items():
                setattr(row, key, value)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # the same identity registered at this moment by another process: take that row
            session.rollback()
            continue
        session.refresh(row)
        return row
    raise RuntimeError(f"could not register worker {name!r} on {host!r}")


def beat(*, session: Session, worker_id: int, job_ids: Sequence[int] = (), now: datetime | None = None) -> bool:
    """The heartbeat: seen now, running ``job_ids``. False when the row is gone (the caller registers again)."""
    row = session.get(Worker, worker_id)
    if row is None:
        return False
    row.last_seen = now or utcnow()
    row.job_ids = sorted(set(job_ids))
    row.stopped_at = None
    session.add(row)
    session.commit()
    return True


def sign_off(*, session: Session, worker_id: int, now: datetime | None = None) -> None:
    """A graceful stop: the worker leaves the live list at once, running nothing."""
    row = session.get(Worker, worker_id)
    if row is not None:
        row.stopped_at = now or utcnow()
        row.job_ids = []
        session.add(row)
        session.commit()


def list_workers(*, session: Session, timeout_s: float, history_s: float, now: datetime | None = None) -> list[tuple[Worker, bool]]:
    """(worker, alive) for the live workers and those gone within ``history_s``: live first, then each most
    recently seen first."""
    now = now or utcnow()
    since = now - timedelta(seconds=max(history_s, timeout_s))
    rows = session.exec(select(Worker).where(col(Worker.last_seen) >= since).order_by(col(Worker.last_seen).desc(), col(Worker.id))).all()
    marked = [(row, is_alive(row, now=now, timeout_s=timeout_s)) for row in rows]
    return sorted(marked, key=lambda pair: not pair[1])  # stable: the order by last_seen holds within each group


def live_offers(*, session: Session, timeout_s: float, now: datetime | None = None) -> list[Offer]:
    """What the live workers serve (app.fleet.routing.unserved_reason reads it)."""
    now = now or utcnow()
    rows = session.exec(
        select(Worker.hardware_class, Worker.queues).where(
            col(Worker.last_seen) > now - timedelta(seconds=timeout_s), col(Worker.stopped_at).is_(None)
        )
    ).all()
    return [Offer(hardware_class=cls, queues=tuple(queues or ())) for cls, queues in rows]
