"""Retention of finished jobs' records (app/storage/retention.py, `dynds retention`) on SQLite and
PostgreSQL: the dry run counts what would go (items and bytes) and deletes nothing; the pass deletes only
that, and never anything of a queued or running job, even one whose finished_at is old."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from app import crud
from app.artifacts import artifact_root, checkpoint_dir
from app.core.config import get_settings
from app.models import Artifact, MetricPoint, utcnow
from app.storage import retention
from app.storage.step_archive import step_chunk_dir
from dynds.cli import main

OLD = timedelta(days=100)


@pytest.fixture
def keep30(settings):
    return settings.model_copy(update={"step_archive_retention_days": 30, "metric_points_retention_days": 30, "checkpoint_retention_days": 30})


def _files(settings, job_id: int, archive: bytes = b"parquet!" * 10) -> int:
    """A job's step archive (file + row), checkpoints, unmerged chunks and SQL points; the file bytes."""
    root = artifact_root(settings)
    (root / str(job_id)).mkdir(parents=True, exist_ok=True)
    (root / str(job_id) / "steps.parquet").write_bytes(archive)
    checkpoint_dir(settings, job_id).mkdir(parents=True, exist_ok=True)
    (checkpoint_dir(settings, job_id) / "ckpt-000001.dynds").write_bytes(b"c" * 300)
    step_chunk_dir(settings, job_id).mkdir(parents=True, exist_ok=True)
    (step_chunk_dir(settings, job_id) / "chunk-a001-000001.parquet").write_bytes(b"k" * 50)
    return len(archive)


def _points(session, job_id: int, steps: int = 5) -> None:
    rows = [{"run": "dynds", "kind": "step", "step": s, "epoch": 0, "train_time_s": s, "values": {"loss": 1.0}} for s in range(steps)]
    rows.append({"run": "dynds", "kind": "epoch", "step": steps - 1, "epoch": 0, "train_time_s": steps, "values": {"val_acc": 50.0}})
    crud.append_metrics(session=session, job_id=job_id, points=rows)


def _record(session, settings, job_id: int, size: int) -> None:
    crud.record_artifact(
        session=session, job_id=job_id, artifact={"name": "steps.parquet", "path": f"{job_id}/steps.parquet", "size_bytes": size, "sha256": "0" * 64}
    )


@pytest.fixture
def fleet(session, keep30, finished_job, new_job, set_columns):
    """old: finished 100 days ago; recent: finished yesterday; running: its finished_at old (a rerun), status running; queued."""
    old, recent = finished_job(), finished_job()
    running, queued = new_job(train={"seed": 11}).id, new_job(train={"seed": 12}).id
    crud.claim_job(session=session, job_id=running, worker="w")
    set_columns(old, finished_at=utcnow() - OLD)
    set_columns(recent, finished_at=utcnow() - timedelta(days=1))
    set_columns(running, finished_at=utcnow() - OLD)
    sizes = {}
    for j in (old, recent, running, queued):
        sizes[j] = _files(keep30, j)
        _points(session, j)
        if j in (old, recent):
            _record(session, keep30, j, sizes[j])
    return {"old": old, "recent": recent, "running": running, "queued": queued}


def _state(session, settings, job_id: int) -> tuple:
    points = session.exec(select(MetricPoint.kind).where(MetricPoint.job_id == job_id)).all()
    arts = session.exec(select(Artifact.name).where(Artifact.job_id == job_id)).all()
    root = artifact_root(settings) / str(job_id)
    return (
        sorted(points),
        sorted(arts),
        (root / "steps.parquet").exists(),
        checkpoint_dir(settings, job_id).exists(),
        step_chunk_dir(settings, job_id).exists(),
    )


def test_the_dry_run_says_what_would_go_and_deletes_nothing(session, keep30, fleet):
    before = {j: _state(session, keep30, j) for j in fleet.values()}
    by = {e.what: e for e in retention.plan(session, keep30)}
    archives, points, ckpts = by["step archives"], by["step points (SQL)"], by["checkpoints"]
    assert archives.job_ids == [fleet["old"]] and archives.items == 2 and archives.bytes == 80 + 50  # the file and the stale chunk
    assert points.jobs == 1 and points.items == 5 and points.bytes > 5 * 10  # the step points; the epoch point stays
    assert ckpts.job_ids == [fleet["old"]] and (ckpts.items, ckpts.bytes) == (1, 300)
    assert by["weights"].items == 0 and "kept" in by["weights"].line(True)
    assert {j: _state(session, keep30, j) for j in fleet.values()} == before


def test_retention_deletes_old_finished_jobs_records_and_never_touches_a_running_or_queued_job(session, keep30, fleet):
    before = {j: _state(session, keep30, j) for j in fleet.values()}
    done = {e.what: e for e in retention.apply(session, keep30)}
    assert done["step points (SQL)"].items == 5 and done["checkpoints"].items == 1
    session.expire_all()
    assert _state(session, keep30, fleet["old"]) == (["epoch"], [], False, False, False)  # the epoch point and the job stay
    assert crud.get_job(session=session, job_id=fleet["old"]).result is not None
    for name in ("recent", "running", "queued"):
        assert _state(session, keep30, fleet[name]) == before[fleet[name]], name
    # A second pass finds nothing left.
    assert all(e.items == 0 for e in retention.plan(session, keep30))


def test_unset_settings_keep_everything(session, settings, fleet):
    before = {j: _state(session, settings, j) for j in fleet.values()}
    assert all(e.items == 0 for e in retention.apply(session, settings))
    assert {j: _state(session, settings, j) for j in fleet.values()} == before


def test_dynds_retention_dry_run_then_delete(session, keep30, fleet, monkeypatch, capsys):
    monkeypatch.setenv("DYNDS_DATABASE_URL", keep30.database_url)
    monkeypatch.setenv("DYNDS_HOME", str(keep30.home))
    monkeypatch.setenv("DYNDS_ARTIFACT_DIR", str(keep30.artifact_dir))
    for var in ("STEP_ARCHIVE", "METRIC_POINTS", "CHECKPOINT"):
        monkeypatch.setenv(f"DYNDS_{var}_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    try:
        assert main(["retention", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "step archives: would delete 2 of 1 job(s), 130 bytes (DYNDS_STEP_ARCHIVE_RETENTION_DAYS)" in out
        assert "checkpoints: would delete 1 of 1 job(s), 300 bytes" in out and "dry run: nothing deleted" in out
        assert checkpoint_dir(keep30, fleet["old"]).exists()
        assert main(["retention"]) == 0
        assert "step points (SQL): deleted 5 of 1 job(s)" in capsys.readouterr().out
        assert not checkpoint_dir(keep30, fleet["old"]).exists() and checkpoint_dir(keep30, fleet["running"]).exists()
    finally:
        get_settings.cache_clear()


def test_the_weights_count_in_the_dry_run_and_go_by_their_own_settings(session, keep30, fleet):
    root = artifact_root(keep30)
    for j in (fleet["old"], fleet["recent"]):
        (root / str(j) / "model.pt").write_bytes(b"w" * 1000)
        crud.record_artifact(
            session=session, job_id=j, artifact={"name": "model.pt", "path": f"{j}/model.pt", "size_bytes": 1000, "sha256": "1" * 64}
        )
    settings = keep30.model_copy(update={"artifact_keep_last": 1, "step_archive_retention_days": None})
    (weights,) = [e for e in retention.plan(session, settings) if e.what == "weights"]
    assert (weights.items, weights.bytes) == (1, 1000)  # the older of the two; the step archives do not count in keep_last
    assert (root / str(fleet["old"]) / "model.pt").exists()
    retention.apply(session, settings)
    assert not (root / str(fleet["old"]) / "model.pt").exists() and (root / str(fleet["recent"]) / "model.pt").exists()
    assert (root / str(fleet["old"]) / "steps.parquet").exists()  # kept: its own setting is unset
