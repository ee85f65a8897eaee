"""GET /jobs/{id}/artifacts, GET /jobs/{id}/artifacts/model.pt and DELETE /jobs/{id}, on SQLite and PostgreSQL.

The download test runs a real tiny job through worker.runner.run_job on the app's database."""

from __future__ import annotations

import hashlib
import io

import torch
from sqlmodel import select

from app import artifacts, crud
from app.core.db import session_factory
from app.main import create_app
from app.models import Artifact, IdempotencyKey, Job, MetricPoint
from app.security import create_token
from dynds_core.models import create_model
from dynds_core.spec import JobSpec
from worker.runner import run_job

API = "/api/v1"
TINY = {
    "name": "tiny",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 1, "batch_size": 32, "num_threads": 1},
}


def _run_tiny(client, engine, settings) -> int:
    r = client.post(f"{API}/jobs", json={"spec": TINY, "force": True})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert run_job(job_id, session_factory=session_factory(engine), settings=settings) == "succeeded"
    return job_id


def _fake_artifact(session, settings, job_id: int, content: bytes = b"weights") -> Artifact:
    rel = f"{job_id}/attempt-1/model.pt"
    size, digest = artifacts.write_atomic(artifacts.artifact_root(settings) / rel, lambda f: f.write(content))
    row = Artifact(job_id=job_id, name="model.pt", path=rel, size_bytes=size, sha256=digest, recipe={"arch": "resnet20"})
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def test_a_trained_job_lists_and_serves_its_weights(client, engine, settings):
    job_id = _run_tiny(client, engine, settings)
    listing = client.get(f"{API}/jobs/{job_id}/artifacts")
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["count"] == 2 and [a["name"] for a in body["data"]] == ["model.pt", "steps.parquet"]  # the weights, every step
    item = body["data"][0]
    assert item["name"] == "model.pt" and item["job_id"] == job_id and item["download"] == f"{API}/jobs/{job_id}/artifacts/model.pt"
    assert item["recipe"] == {"arch": "resnet20", "num_classes": 10, "in_channels": 3, "small_input": False}
    assert item["created_at"].endswith("Z") and "path" not in item  # server paths stay on the server

    r = client.get(item["download"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="job-{job_id}-model.pt"'
    assert r.headers["etag"] == f'"{item["sha256"]}"'
    assert len(r.content) == item["size_bytes"] and hashlib.sha256(r.content).hexdigest() == item["sha256"]
    state = torch.load(io.BytesIO(r.content), weights_only=True)
    recipe = dict(item["recipe"])
    model = create_model(recipe.pop("arch"), **recipe)
    model.load_state_dict(state, strict=True)

    again = client.get(item["download"], headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_404s_say_why(client, session, settings, finished_job):
    assert client.get(f"{API}/jobs/999999/artifacts").status_code == 404
    assert client.get(f"{API}/jobs/999999/artifacts/model.pt").status_code == 404

    queued = client.post(f"{API}/jobs", json={"spec": TINY}).json()["id"]
    assert client.get(f"{API}/jobs/{queued}/artifacts").json() == {"data": [], "count": 0}
    r = client.get(f"{API}/jobs/{queued}/artifacts/model.pt")
    assert r.status_code == 404 and f"job {queued} has no model.pt: it has not run yet" in r.json()["detail"]

    done = finished_job()  # succeeded, without weights (as jobs before this server version)
    r = client.get(f"{API}/jobs/{done}/artifacts/model.pt")
    assert r.status_code == 404 and "DYNDS_MAX_ARTIFACT_BYTES" in r.json()["detail"]
    assert client.get(f"{API}/jobs/{done}/artifacts/other.bin").status_code == 404

    row = _fake_artifact(session, settings, done)
    assert client.get(f"{API}/jobs/{done}/artifacts/model.pt").content == b"weights"
    artifacts.resolve(settings, row.path).unlink()
    r = client.get(f"{API}/jobs/{done}/artifacts/model.pt")
    assert r.status_code == 404 and "file is missing" in r.json()["detail"] and "DYNDS_ARTIFACT_DIR" in r.json()["detail"]


def test_reads_and_deletes_need_their_tokens(session, settings, dispatcher, finished_job):
    from fastapi.testclient import TestClient

    done = finished_job()
    _fake_artifact(session, settings, done)
    token = create_token(session=session, name="ci")
    with TestClient(create_app(settings.model_copy(update={"read_requires_token": True}), dispatcher=dispatcher)) as c:
        assert c.get(f"{API}/jobs/{done}/artifacts").status_code == 401
        assert c.get(f"{API}/jobs/{done}/artifacts/model.pt").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get(f"{API}/jobs/{done}/artifacts/model.pt", headers=auth).content == b"weights"
        assert c.delete(f"{API}/jobs/{done}").status_code == 401
        assert c.delete(f"{API}/jobs/{done}", headers={"Authorization": "Bearer nope"}).status_code == 403
        assert c.delete(f"{API}/jobs/{done}", headers=auth).status_code == 204


def test_delete_removes_the_job_its_points_artifacts_and_files(client, session, settings, finished_job):
    done = finished_job()
    keep = finished_job({"name": "other"})
    row = _fake_artifact(session, settings, done)
    other = _fake_artifact(session, settings, keep, b"other weights")
    path = artifacts.resolve(settings, row.path)
    (path.parent.parent / "attempt-9").mkdir()  # a lost run's leftovers go with the job's directory
    artifacts.checkpoint_dir(settings, done).mkdir()  # and its checkpoints (kept by DYNDS_KEEP_CHECKPOINTS)
    (artifacts.checkpoint_dir(settings, done) / "ckpt-000003.dynds").write_bytes(b"checkpoint")
    crud.append_metrics(session=session, job_id=done, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {"loss": 1.0}}])
    session.add(IdempotencyKey(key="k-1", job_id=done))
    session.commit()

    r = client.delete(f"{API}/jobs/{done}")
    assert r.status_code == 204, r.text
    session.expire_all()
    assert session.get(Job, done) is None
    assert session.exec(select(MetricPoint).where(MetricPoint.job_id == done)).all() == []
    assert session.exec(select(Artifact).where(Artifact.job_id == done)).all() == []
    assert session.exec(select(IdempotencyKey).where(IdempotencyKey.job_id == done)).all() == []
    assert not path.exists() and not (artifacts.artifact_root(settings) / str(done)).exists()
    # the other job keeps everything
    assert session.get(Job, keep) is not None and artifacts.resolve(settings, other.path).read_bytes() == b"other weights"
    assert [a.id for a in crud.job_artifacts(session=session, job_id=keep)] == [other.id]
    assert client.get(f"{API}/jobs/{done}").status_code == 404
    assert client.delete(f"{API}/jobs/{done}").status_code == 404


def test_cancelling_a_queued_job_deletes_the_checkpoints_it_was_to_resume_from(client, session, settings):
    job, _ = crud.submit_job(session=session, spec=JobSpec.parse(TINY), force=True)  # interrupted, waiting to resume
    where = artifacts.checkpoint_dir(settings, job.id)
    where.mkdir(parents=True)
    (where / "ckpt-000003.dynds").write_bytes(b"checkpoint")
    r = client.post(f"{API}/jobs/{job.id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert not where.exists() and not where.parent.exists()


def test_delete_keeps_a_retry_of_the_job(client, session):
    spec = JobSpec.parse(TINY)
    job, _ = crud.submit_job(session=session, spec=spec, force=True)
    crud.fail_job(session=session, job_id=job.id, error="boom")
    retry = client.post(f"{API}/jobs/{job.id}/retry").json()["id"]
    crud.fail_job(session=session, job_id=retry, error="boom again")
    assert client.delete(f"{API}/jobs/{job.id}").status_code == 204
    session.expire_all()
    kept = session.get(Job, retry)
    assert kept is not None and kept.retry_of is None and kept.attempt == 2


def test_delete_refuses_a_queued_or_running_job(client, session, settings):
    queued = client.post(f"{API}/jobs", json={"spec": TINY, "force": True}).json()["id"]
    running = client.post(f"{API}/jobs", json={"spec": {**TINY, "name": "running"}, "force": True}).json()["id"]
    assert crud.claim_job(session=session, job_id=running, worker="w") is not None
    crud.append_metrics(session=session, job_id=running, points=[{"run": "dynds", "kind": "step", "step": 0, "values": {}}])
    for job_id, state in ((queued, "queued"), (running, "running")):
        r = client.delete(f"{API}/jobs/{job_id}")
        assert r.status_code == 409 and f"job {job_id} is {state}" in r.json()["detail"]
    session.expire_all()
    assert session.get(Job, queued).status == "queued" and session.get(Job, running).status == "running"
    assert len(crud.metrics_after(session=session, job_id=running)) == 1


def test_ids_past_the_id_columns_are_404_not_500(client):
    for job_id in (2**31, 2**63 - 1):  # past PostgreSQL's INTEGER id column, and the largest accepted
        for r in (
            client.get(f"{API}/jobs/{job_id}/artifacts"),
            client.get(f"{API}/jobs/{job_id}/artifacts/model.pt"),
            client.delete(f"{API}/jobs/{job_id}"),
        ):
            assert r.status_code == 404, r.text
    assert client.delete(f"{API}/jobs/{2**64}").status_code == 422
