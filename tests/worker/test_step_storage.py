"""The storage tiers of a real job (app/storage): a tiny job run by run_job on SQLite and PostgreSQL keeps
bounded step points in SQL (every epoch point), and every step in steps.parquet, listed and downloaded
through the real API; a resumed attempt neither duplicates nor loses a step in either."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from service_helpers import database_url, make_job, pg_database, sessions, tiny_spec  # noqa: F401  (fixtures)
from sqlmodel import select

from app import crud
from app.core.config import Settings
from app.main import create_app
from app.models import MetricPoint
from app.storage.buckets import grid
from app.storage.step_archive import StepArchive, chunk_files, prune_chunks, step_chunk_dir
from worker.runner import run_job
from worker.sink import MetricsSink

CAP = 8  # step points per run in SQL: 2 steps one by one, then buckets


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:  # noqa: F811  (each test on SQLite and PostgreSQL)
    return Settings(
        home=tmp_path / "home", database_url=database_url, broker_url=None, worker_threads=1, metrics_flush_interval_s=0.2,
        metrics_max_step_points=CAP, step_archive_chunk_rows=10,
    )  # fmt: skip


def _points(sessions, job_id):  # noqa: F811
    with sessions() as s:
        return [p.model_dump() for p in s.exec(select(MetricPoint).where(MetricPoint.job_id == job_id).order_by(MetricPoint.id)).all()]


def test_a_job_keeps_bounded_points_in_sql_and_every_step_in_its_parquet_archive(settings, sessions, make_job):  # noqa: F811
    job_id = make_job(tiny_spec(epochs=3, batch_size=8))  # 16 steps an epoch, 48 a run
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    points = _points(sessions, job_id)
    steps = [p for p in points if p["kind"] == "step"]
    epochs = [p for p in points if p["kind"] == "epoch"]
    runs = Counter(p["run"] for p in steps)
    assert set(runs) >= {"baseline", "dynds"}
    assert all(n <= CAP for n in runs.values()), runs  # bounded (no checkpoint cut: a tiny job takes none)
    with sessions() as s:
        job = crud.get_job(session=s, job_id=job_id)
        # Recorded in the finishing transaction (before its UPDATE): listed as soon as the job is seen succeeded.
        (row,) = [a for a in crud.job_artifacts(session=s, job_id=job_id) if a.name == "steps.parquet"]
        assert row.created_at <= job.finished_at
        total = {r: 48 for r in ("baseline", "dynds")} | ({"equal_time": job.result["equal_time"]["steps_full"]} if "equal_time" in runs else {})
    for run, n_steps in total.items():
        mine = [p for p in steps if p["run"] == run]
        assert sum(p["values"].get("n", 1) for p in mine) == n_steps  # every step in one bucket, once
        head, _ = grid(n_steps, CAP)
        assert [p["step"] for p in mine[:head]] == list(range(head)) and "n" not in mine[0]["values"]
        big = [p for p in mine if p["values"].get("n", 1) > 1]
        assert big and all(p["values"]["loss_min"] <= p["values"]["loss"] <= p["values"]["loss_max"] for p in big)
        assert mine[-1]["step"] == n_steps - 1
    assert Counter(p["run"] for p in epochs) == {r: 3 for r in ("baseline", "dynds")} | ({"equal_time": 3} if "equal_time" in runs else {})
    assert not chunk_files(step_chunk_dir(settings, job_id))  # merged, chunks gone

    with TestClient(create_app(settings)) as client:
        listed = client.get(f"/api/v1/jobs/{job_id}/artifacts").json()["data"]
        (archive,) = [a for a in listed if a["name"] == "steps.parquet"]
        assert {a["name"] for a in listed} == {"model.pt", "steps.parquet"}
        body = client.get(archive["download"])
        assert body.status_code == 200 and len(body.content) == archive["size_bytes"]
        # The series the dashboard draws: GET /metrics sends the stored (bucketed) points.
        sent = client.get(f"/api/v1/jobs/{job_id}/metrics", params={"limit": 1000}).json()["data"]
        assert [p["values"] for p in sent] == [p["values"] for p in points]
        # And so does the event stream (a finished job: its history, then its end).
        events = client.get(f"/api/v1/jobs/{job_id}/events").text
        blocks = [b.splitlines() for b in events.split("\n\n") if "event: metric" in b]
        streamed = [json.loads(line[6:]) for b in blocks for line in b if line.startswith("data: ")]
        assert [p["values"] for p in streamed] == [p["values"] for p in points] and "event: end" in events
    table = pq.read_table(io.BytesIO(body.content))
    assert table.num_rows == sum(total.values()) == archive["recipe"]["rows"]
    rows = table.to_pylist()
    for run, n_steps in total.items():
        assert [r["step"] for r in rows if r["run"] == run] == list(range(n_steps))  # complete, in order, no duplicate
    assert {"loss", "acc", "lr", "batch_type", "step_time_s", "train_time_s", "epoch", "attempt"} <= set(table.column_names)
    assert {r["batch_type"] for r in rows if r["run"] == "dynds"} <= {"full", "reduced"} and all(r["attempt"] == 1 for r in rows)


def test_a_resumed_attempt_neither_duplicates_nor_loses_a_step(settings, sessions, make_job):  # noqa: F811
    """Attempt 1 ran 2 runs to step 30 with a checkpoint at step 20 (the sink cut its buckets, wrote its chunk),
    then died; attempt 2 resumes at step 20: SQL points and archive equal those of the run uninterrupted."""
    job_id = make_job(tiny_spec())
    total, ckpt, died = 48, 20, 30
    with sessions() as s:
        crud.claim_job(session=s, job_id=job_id, worker="w1")

    def run_attempt(attempt: int, first: int, last: int, checkpoint_at: int | None = None) -> None:
        archive = StepArchive(step_chunk_dir(settings, job_id), attempt=attempt, chunk_rows=7)
        sink = MetricsSink(job_id=job_id, session_factory=sessions, attempt=attempt, max_step_points=CAP, archive=archive)
        for step in range(first, last):
            if step == checkpoint_at:
                sink.on_checkpoint()
            for run in ("baseline", "dynds"):
                sink.on_step(_step(run, step, total))
        if last == total:
            sink.close()
        else:
            sink.flush()  # what had reached the database when the worker died; the last chunk never written
            archive._cols = {c: [] for c in archive._cols}

    run_attempt(1, 0, died, checkpoint_at=ckpt)
    with sessions() as s:  # what runner._run_job does for attempt 2 (recovery requeued the job meanwhile)
        crud.give_up_run(session=s, job_id=job_id, error="died", policy="resume", max_attempts=3)
        crud.claim_job(session=s, job_id=job_id, worker="w2")
        kept = {"baseline": (ckpt, 0), "dynds": (ckpt, 0)}
        assert crud.resume_run(session=s, job_id=job_id, attempt=2, kept=kept)
    assert prune_chunks(step_chunk_dir(settings, job_id), kept) > 0
    run_attempt(2, ckpt, total)

    # The same job uninterrupted (checkpoint at the same step), as another job.
    other = make_job(tiny_spec())
    with sessions() as s:
        crud.claim_job(session=s, job_id=other, worker="w3")
    sink = MetricsSink(job_id=other, session_factory=sessions, attempt=1, max_step_points=CAP)
    for step in range(total):
        if step == ckpt:
            sink.on_checkpoint()
        for run in ("baseline", "dynds"):
            sink.on_step(_step(run, step, total))
    sink.close()
    strip = lambda ps: [{k: v for k, v in p.items() if k not in ("id", "job_id")} for p in ps]  # noqa: E731
    assert strip(_points(sessions, job_id)) == strip(_points(sessions, other))

    with sessions() as s:
        from app.storage.step_archive import keep_step_archive

        assert keep_step_archive(s, settings, job_id)
        (row,) = [a for a in crud.job_artifacts(session=s, job_id=job_id) if a.name == "steps.parquet"]
    table = pq.read_table(settings.home / "artifacts" / row.path).to_pylist()
    for run in ("baseline", "dynds"):
        mine = [r for r in table if r["run"] == run]
        assert [r["step"] for r in mine] == list(range(total))
        assert {r["attempt"] for r in mine if r["step"] < ckpt} == {1} and {r["attempt"] for r in mine if r["step"] >= ckpt} == {2}
        assert [r["loss"] for r in mine] == [_step(run, s, total).loss for s in range(total)]


def _step(run: str, step: int, total: int):
    from dynds_core.result import StepMetrics

    return StepMetrics(
        run=run, step=step, epoch=step // 16, batch_type="reduced" if run == "dynds" and step % 3 else "full", loss=1 + (step * 7 % 5) / 4,
        acc=10.0 + step, lr=0.1, step_time_s=0.01, train_time_s=0.01 * (step + 1), total_steps=total,
    )  # fmt: skip


def test_without_pyarrow_the_job_runs_and_its_log_says_why_there_is_no_archive(settings, sessions, make_job, monkeypatch):  # noqa: F811
    import worker.runner

    monkeypatch.setattr(worker.runner, "have_pyarrow", lambda: False)
    job_id = make_job(tiny_spec())
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    with sessions() as s:
        assert [a.name for a in crud.job_artifacts(session=s, job_id=job_id)] == ["model.pt"]
        lines = [line["message"] for line in crud.job_logs_after(session=s, job_id=job_id, limit=1000)]
    assert any("pyarrow is not installed" in m and "install dynds[service]" in m for m in lines), lines
    assert not step_chunk_dir(settings, job_id).exists()
