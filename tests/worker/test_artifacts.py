"""A job's trained weights kept as an artifact (app/artifacts.py): real tiny jobs through run_job, on
SQLite and PostgreSQL; the file, its row (size, sha256, recipe), the size limit, retention, a failed
save, a job lost before its finish."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from service_helpers import database_url, pg_database  # noqa: F401  (fixtures)
from sqlalchemy import text

import dynds_core
from app import artifacts, crud
from app.core.config import Settings
from app.models import Artifact, utcnow
from dynds_core.models import create_model
from dynds_core.reduced import full_state_dict
from worker.runner import run_job


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:  # noqa: F811  (each test on SQLite and PostgreSQL)
    # The weights alone (the step archive beside them: tests/worker/test_step_storage.py).
    return Settings(
        home=tmp_path / "home", database_url=database_url, broker_url=None, worker_threads=1, metrics_flush_interval_s=0.2, step_archive=False
    )


@pytest.fixture
def trained(monkeypatch):
    """The JobResults the real trainer returned to run_job, in order (their .model is the trained module)."""
    results = []
    real = dynds_core.train

    def keep(*args, **kw):
        result = real(*args, **kw)
        results.append(result)
        return result

    monkeypatch.setattr(dynds_core, "train", keep)
    return results


def _artifacts(sessions, job_id):
    with sessions() as s:
        rows = crud.job_artifacts(session=s, job_id=job_id)
        for r in rows:
            s.expunge(r)
        return rows


def _files(settings) -> list[Path]:
    root = artifacts.artifact_root(settings)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_succeeded_job_keeps_its_weights_loadable_into_create_model(sessions, settings, make_job, trained):
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    (row,) = _artifacts(sessions, job_id)
    path = artifacts.resolve(settings, row.path)
    assert path == settings.home / "artifacts" / str(job_id) / "attempt-1" / "model.pt"
    assert _files(settings) == [path]  # no temporary left beside it
    assert row.name == "model.pt" and row.size_bytes == path.stat().st_size
    assert artifacts.sha256_of(path) == (row.size_bytes, row.sha256)
    assert row.recipe == {"arch": "resnet20", "num_classes": 10, "in_channels": 3, "small_input": False}

    state = torch.load(path, weights_only=True)
    recipe = dict(row.recipe)
    model = create_model(recipe.pop("arch"), **recipe)
    model.load_state_dict(state, strict=True)
    trained_model = trained[0].model
    kept = full_state_dict(trained_model)
    assert set(state) == set(kept) and all(torch.equal(state[k], kept[k].cpu()) for k in kept)  # bit for bit
    model.eval(), trained_model.eval()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # Same weights; the trained module may keep another memory format (channels_last), so the conv
        # kernels differ in float rounding only.
        torch.testing.assert_close(model(x), trained_model.cpu()(x), rtol=1e-5, atol=1e-5)


def test_weights_over_the_size_limit_are_not_stored_and_the_log_says_why(sessions, settings, make_job, caplog):
    settings.max_artifact_bytes = 10_000  # resnet20 holds about 1.1 MB of weights
    job_id = make_job()
    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    assert _artifacts(sessions, job_id) == [] and _files(settings) == []
    said = [r.getMessage() for r in caplog.records if r.name == "worker.runner" and f"job {job_id}: model weights not stored" in r.getMessage()]
    assert said and "over DYNDS_MAX_ARTIFACT_BYTES=10,000" in said[0]
    with sessions() as s:  # and the job's own log (job_log, GET /jobs/{id}/logs) keeps the line
        stored = [m for (m,) in s.execute(text("SELECT message FROM job_log WHERE job_id = :j ORDER BY seq"), {"j": job_id})]
    assert any("model weights not stored" in m and "DYNDS_MAX_ARTIFACT_BYTES" in m for m in stored), stored


def test_a_failed_save_leaves_no_file_and_the_job_succeeds_without_weights(sessions, settings, make_job, monkeypatch, caplog):
    def full_disk(f):
        f.write(b"half a file")
        raise OSError(28, "No space left on device")

    real = artifacts.write_atomic
    monkeypatch.setattr(artifacts, "write_atomic", lambda path, write: real(path, full_disk))
    job_id = make_job()
    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    assert _artifacts(sessions, job_id) == [] and _files(settings) == []
    assert any("No space left on device" in r.getMessage() for r in caplog.records if r.name == "worker.runner")
    with sessions() as s:
        assert crud.get_job(session=s, job_id=job_id).status == "succeeded"


def test_a_job_lost_before_its_finish_records_no_artifact_and_removes_the_file(sessions, settings, make_job, monkeypatch):
    real = dynds_core.train
    job_id = make_job()

    def then_failed(*args, **kw):  # the API gave up on the job (a stale heartbeat) while it trained
        result = real(*args, **kw)
        with sessions() as s:
            crud.fail_job(session=s, job_id=job_id, error="interrupted")
        return result

    monkeypatch.setattr(dynds_core, "train", then_failed)
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    assert _artifacts(sessions, job_id) == [] and _files(settings) == []


def test_keep_last_deletes_older_artifacts_rows_and_files(sessions, settings, make_job):
    settings.artifact_keep_last = 1
    first, second = make_job(), make_job()
    assert run_job(first, session_factory=sessions, settings=settings) == "succeeded"
    first_file = artifacts.resolve(settings, _artifacts(sessions, first)[0].path)
    assert run_job(second, session_factory=sessions, settings=settings) == "succeeded"
    assert _artifacts(sessions, first) == [] and not first_file.exists() and not first_file.parent.parent.exists()
    (row,) = _artifacts(sessions, second)
    assert _files(settings) == [artifacts.resolve(settings, row.path)]


def _fake_artifact(sessions, settings, job_id: int, age: timedelta) -> Artifact:
    rel = f"{job_id}/attempt-1/model.pt"
    size, digest = artifacts.write_atomic(artifacts.artifact_root(settings) / rel, lambda f: f.write(b"weights"))
    with sessions() as s:
        row = Artifact(job_id=job_id, name="model.pt", path=rel, size_bytes=size, sha256=digest, recipe={}, created_at=utcnow() - age)
        s.add(row)
        s.commit()
        s.refresh(row)
        s.expunge(row)
        return row


def test_retention_days_deletes_artifacts_older_than_the_limit(sessions, settings, make_job):
    settings.artifact_retention_days = 7
    old_job, new_job = make_job(), make_job()
    old = _fake_artifact(sessions, settings, old_job, timedelta(days=8))
    new = _fake_artifact(sessions, settings, new_job, timedelta(days=6))
    with sessions() as s:
        assert artifacts.apply_retention(s, settings) == [old.id]
    assert _artifacts(sessions, old_job) == [] and not artifacts.resolve(settings, old.path).exists()
    assert [a.id for a in _artifacts(sessions, new_job)] == [new.id] and artifacts.resolve(settings, new.path).exists()


def test_write_atomic_leaves_the_old_file_whole_when_a_write_fails(tmp_path):
    path = tmp_path / "a" / "model.pt"
    assert artifacts.write_atomic(path, lambda f: f.write(b"one"))[0] == 3

    def broken(f):
        f.write(b"tw")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        artifacts.write_atomic(path, broken)
    assert path.read_bytes() == b"one" and sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_resolve_refuses_a_path_outside_the_artifact_dir(tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(artifacts.ArtifactError):
        artifacts.resolve(settings, "../dynds.db")
