"""app/fleet/registry.py: workers register under one identity, heartbeat, sign off, and are alive or gone (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlmodel import Session, select

from app.fleet import registry
from app.models import Worker, utcnow
from dynds_core.hardware import make_hardware

CPU = make_hardware(device="cpu", model="Intel Xeon", threads=2)
GPU = make_hardware(device="cuda", model="Test GPU", count=1)


def register(session, name="dynds@a", host="a", pid=100, hardware=CPU, **kw) -> Worker:
    return registry.register_worker(session=session, host=host, name=name, kind="celery", pid=pid, hardware=hardware, queues=["cpu", "dynds"], **kw)


def test_a_worker_registered_again_under_its_name_takes_its_row_back(session):
    first = register(session, pid=100)
    registry.beat(session=session, worker_id=first.id, job_ids=[7])
    again = register(session, pid=200, hardware=GPU)  # SIGKILLed and restarted (on new hardware even)
    assert again.id == first.id and len(session.exec(select(Worker)).all()) == 1
    assert again.pid == 200 and again.hardware_key == GPU.key and again.hardware["model"] == "Test GPU" and again.job_ids == []
    other = register(session, name="dynds@a-2")  # a second worker on the host: a row of its own
    assert other.id != first.id


def test_concurrent_registrations_of_one_identity_make_one_row(session, engine):
    barrier, errors = threading.Barrier(6), []

    def go(pid):
        with Session(engine) as s:
            barrier.wait()
            try:
                register(s, pid=pid)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(session.exec(select(Worker)).all()) == 1


def test_alive_while_the_heartbeat_is_younger_than_the_timeout_and_not_signed_off(session):
    t0 = utcnow()
    w = register(session, now=t0)
    assert registry.beat(session=session, worker_id=w.id, job_ids=[3, 3, 1], now=t0 + timedelta(seconds=10))

    def live(s: float) -> list[tuple[str, bool]]:
        rows = registry.list_workers(session=session, timeout_s=30, history_s=3600, now=t0 + timedelta(seconds=s))
        return [(x.name, alive) for x, alive in rows]

    assert live(39) == [("dynds@a", True)] and live(41) == [("dynds@a", False)]  # 30 s after its last beat
    assert live(10 + 3600 + 1) == []  # gone longer than the history: no longer listed
    session.refresh(w)
    assert w.job_ids == [1, 3]
    registry.sign_off(session=session, worker_id=w.id, now=t0 + timedelta(seconds=11))
    assert live(12) == [("dynds@a", False)]  # a graceful stop: gone at once
    session.refresh(w)
    assert w.job_ids == [] and w.stopped_at is not None
    assert not registry.beat(session=session, worker_id=w.id + 100)  # a row that is gone: the worker registers again


def test_the_list_has_live_workers_first_and_offers_only_theirs(session):
    t0 = utcnow()
    gone = register(session, name="dynds@gone", now=t0 - timedelta(seconds=100))
    live = register(session, name="dynds@gpu", hardware=GPU, now=t0 - timedelta(seconds=50))
    registry.beat(session=session, worker_id=live.id, now=t0)
    stopped = register(session, name="dynds@stopped", now=t0)
    registry.sign_off(session=session, worker_id=stopped.id, now=t0)
    rows = registry.list_workers(session=session, timeout_s=30, history_s=3600, now=t0)
    assert [(w.name, alive) for w, alive in rows] == [("dynds@gpu", True), ("dynds@stopped", False), ("dynds@gone", False)]
    offers = registry.live_offers(session=session, timeout_s=30, now=t0)
    assert [(o.hardware_class, o.queues) for o in offers] == [(GPU.hardware_class, ("cpu", "dynds"))]
    assert gone.id != live.id
