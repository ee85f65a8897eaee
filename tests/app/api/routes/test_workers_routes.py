"""GET /workers, and what submissions learn from the fleet: the queue each job is sent to, a warning when no live
worker serves it, a 422 where the server refuses those (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app import crud
from app.fleet import registry
from app.main import create_app, redispatch_queued
from app.models import Job, utcnow
from dynds_core.hardware import make_hardware
from dynds_core.spec import JobSpec

API = "/api/v1"
CPU = make_hardware(device="cpu", model="Intel Xeon", threads=2)
GPU = make_hardware(device="cuda", model="Test GPU", count=1)


def register(session, hardware, name, **kw):
    from app.fleet.routing import worker_queues

    return registry.register_worker(
        session=session, host="h", name=name, kind="celery", pid=1, hardware=hardware, queues=worker_queues(hardware, default="dynds"), **kw
    )


@pytest.fixture
def celery_client(settings, dispatcher):
    """The API as a Celery deployment runs it (jobs sent by queue to a recording dispatcher)."""

    def make(**update):
        app = create_app(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0", **update}), dispatcher=dispatcher)
        return TestClient(app)

    return make


def sent_to(dispatcher) -> dict[int, str]:
    return dict(zip(dispatcher.job_ids, dispatcher.queues, strict=True))


def test_the_list_shows_live_and_recently_gone_workers(client, session):
    cpu = register(session, CPU, "dynds@cpu")
    registry.beat(session=session, worker_id=cpu.id, job_ids=[5])
    register(session, GPU, "dynds@gpu", now=utcnow() - timedelta(seconds=120))  # silent for 2 min: gone
    body = client.get(f"{API}/workers").json()
    assert body["count"] == 2 and body["live"] == 1 and body["timeout_s"] == 30
    live, gone = body["data"]
    assert (live["name"], live["alive"], gone["name"], gone["alive"]) == ("dynds@cpu", True, "dynds@gpu", False)
    assert live["hardware"]["key"] == live["hardware_key"] == CPU.key and live["hardware_class"] == "cpu.intel-xeon.t2"
    assert live["queues"] == ["cpu", "cpu.intel-xeon", "cpu.intel-xeon.t2", "dynds"] and live["job_ids"] == [5]
    assert live["last_seen"].endswith("Z") and live["stopped_at"] is None and live["host"] == "h" and live["pid"] == 1
    assert [w["name"] for w in client.get(f"{API}/workers", params={"alive": False}).json()["data"]] == ["dynds@gpu"]
    assert [w["name"] for w in client.get(f"{API}/workers", params={"alive": True}).json()["data"]] == ["dynds@cpu"]


def test_each_job_is_sent_to_the_queue_it_asks_for_and_told_when_no_live_worker_serves_it(celery_client, session, dispatcher):
    register(session, CPU, "dynds@cpu")
    with celery_client() as c:
        cuda = c.post(f"{API}/jobs", json={"spec": {"train": {"device": "cuda"}}})
        cpu = c.post(f"{API}/jobs", json={"spec": {"train": {"device": "cpu", "seed": 1}}})
        anything = c.post(f"{API}/jobs", json={"spec": {"train": {"seed": 2}}})
        pinned = c.post(f"{API}/jobs", json={"spec": {"train": {"hardware": "cpu · Intel Xeon · 2 threads", "seed": 3}}})
        assert [r.status_code for r in (cuda, cpu, anything, pinned)] == [201] * 4, cuda.text
        (warning,) = cuda.json()["warnings"]
        assert "no live worker serves queue 'cuda'" in warning and "cpu.intel-xeon.t2" in warning and cuda.json()["status"] == "queued"
        assert cpu.json()["warnings"] == anything.json()["warnings"] == pinned.json()["warnings"] == []
        meta = c.get(f"{API}/meta").json()["fleet"]
    ids = [r.json()["id"] for r in (cuda, cpu, anything, pinned)]
    assert sent_to(dispatcher) == dict(zip(ids, ["cuda", "cpu", "dynds", "cpu.intel-xeon.t2"], strict=True))
    assert meta["hardware_classes"] == ["cpu.intel-xeon.t2"] and meta["live_workers"] == 1 and "cuda" not in meta["queues"]


def test_no_live_worker_at_all_is_a_warning_even_for_the_default_queue(celery_client):
    with celery_client() as c:
        r = c.post(f"{API}/jobs", json={"spec": {"defaults": True}})
    assert r.status_code == 201 and "queue 'dynds'" in r.json()["warnings"][0] and "no worker is alive" in r.json()["warnings"][0]


def test_a_server_that_refuses_unserved_jobs_answers_422_and_queues_nothing(celery_client, session, dispatcher):
    register(session, CPU, "dynds@cpu")
    with celery_client(refuse_unserved=True) as c:
        by_device = c.post(f"{API}/jobs", json={"spec": {"train": {"device": "cuda"}}})
        by_pin = c.post(f"{API}/jobs", json={"spec": {"train": {"hardware": "NVIDIA H100 80GB HBM3"}}})
        served = c.post(f"{API}/jobs", json={"spec": {"train": {"device": "cpu"}}})
    assert by_device.status_code == by_pin.status_code == 422 and served.status_code == 201
    (err,) = by_device.json()["errors"]
    assert err["loc"] == ["body", "spec", "train", "device"] and "DYNDS_REFUSE_UNSERVED" in err["msg"] and "cpu.intel-xeon.t2" in err["msg"]
    assert by_pin.json()["errors"][0]["loc"] == ["body", "spec", "train", "hardware"]
    assert "cuda.nvidia-h100-80gb-hbm3" in by_pin.json()["errors"][0]["msg"]
    assert list(sent_to(dispatcher).values()) == ["cpu"] and len(session.exec(select(Job)).all()) == 1


def test_an_embedded_server_refuses_hardware_its_executor_does_not_have(client, session, dispatcher):
    """Embedded mode: the server's executor runs every job itself, so what it lacks is refused, whatever the setting."""
    assert client.post(f"{API}/jobs", json={"spec": {"train": {"device": "cpu"}}}).status_code == 422  # no executor registered
    register(session, CPU, "dynds serve")
    assert client.post(f"{API}/jobs", json={"spec": {"train": {"device": "cpu"}}}).status_code == 201
    r = client.post(f"{API}/jobs", json={"spec": {"train": {"device": "cuda"}}})
    assert r.status_code == 422 and "embedded mode" in r.json()["errors"][0]["msg"]
    assert client.post(f"{API}/jobs", json={"spec": {"defaults": True}}).json()["warnings"] == []


def test_declared_devices_stand_for_the_fleet(celery_client, dispatcher):
    """DYNDS_DEVICES: GPU workers started on demand; a cuda job is accepted without a live worker, a kind not declared is refused."""
    with celery_client(devices=["cpu", "cuda"]) as c:
        r = c.post(f"{API}/jobs", json={"spec": {"train": {"device": "cuda"}}})
        assert r.status_code == 201 and r.json()["warnings"] == []
    with celery_client(devices=["cpu"]) as c:
        r = c.post(f"{API}/jobs", json={"spec": {"train": {"hardware": "cuda.test-gpu"}}})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "spec", "train", "hardware"]


def test_a_sweep_warns_once_per_unserved_queue_or_is_refused_at_its_grid_key(celery_client, session, dispatcher):
    register(session, CPU, "dynds@cpu")
    body = {"base": {"train": {"epochs": 1}}, "grid": {"train.device": ["cpu", "cuda"]}, "seeds": [0, 1]}
    with celery_client() as c:
        r = c.post(f"{API}/sweeps", json=body)
        assert r.status_code == 201 and len(r.json()["warnings"]) == 1 and "'cuda'" in r.json()["warnings"][0]
    assert sorted(sent_to(dispatcher).values()) == ["cpu", "cpu", "cuda", "cuda"]
    with celery_client(refuse_unserved=True) as c:
        r = c.post(f"{API}/sweeps", json={**body, "force": True})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid", "train.device"]
        r = c.post(f"{API}/sweeps", json={"base": {"train": {"device": "cuda"}}, "grid": {"train.seed": [5]}})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "base", "train", "device"]


def test_queued_jobs_are_sent_again_each_to_its_own_queue(settings, engine, dispatcher):
    with Session(engine, expire_on_commit=False) as s:
        gpu, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"device": "cuda"}}))
        pinned, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"hardware": "cpu.intel-xeon.t2"}}))
        plain, _ = crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": 4}}))
    sent = redispatch_queued(engine, settings.model_copy(update={"queue": "gpu"}), dispatcher, older_than_s=0.0)
    assert sorted(sent) == sorted([gpu.id, pinned.id, plain.id])
    assert sent_to(dispatcher) == {gpu.id: "cuda", pinned.id: "cpu.intel-xeon.t2", plain.id: "gpu"}


def test_a_large_redispatch_is_logged_as_a_count_and_the_first_ids(settings, engine, dispatcher, caplog):
    # A fleet's backlog re-sends hundreds of jobs a round: one readable line, not every id.
    with Session(engine, expire_on_commit=False) as s:
        ids = [crud.submit_job(session=s, spec=JobSpec.parse({"train": {"seed": seed}}))[0].id for seed in range(12)]
    with caplog.at_level("WARNING", logger="app.main"):
        sent = redispatch_queued(engine, settings, dispatcher, older_than_s=0.0)
    assert sorted(sent) == ids
    (line,) = [r.getMessage() for r in caplog.records if "sent to the broker again" in r.getMessage()]
    assert line.startswith("12 jobs were still queued") and line.endswith(f"({', '.join(map(str, sent[:10]))} and 2 more)")
