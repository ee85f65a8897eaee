"""run_job and MetricsSink against a real SQLite file database and the real trainer (tiny specs)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest
from service_helpers import TINY_SPEC, tiny_spec

from app import crud
from dynds_core.callbacks import Callback
from dynds_core.spec import JobSpec
from worker import runner
from worker.reproducibility import PROJECT_DIR, git_state
from worker.runner import error_message, run_job
from worker.sink import MetricsSink


def _job(sessions, job_id):
    with sessions() as s:
        return crud.get_job(session=s, job_id=job_id)


def _points(sessions, job_id, kind=None):
    with sessions() as s:
        return crud.metrics_after(session=s, job_id=job_id, limit=100_000, kind=kind)


def test_run_job_end_to_end_stores_metrics_result_and_reproducibility(sessions, settings, make_job):
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"

    job = _job(sessions, job_id)
    assert job.status == "succeeded" and job.error is None and job.finished_at is not None
    result = job.result
    steps = {run: result[run]["steps"] for run in ("dynds", "baseline")}
    assert steps == {"dynds": 4, "baseline": 4}  # 128 images / batch 32, one epoch, each run
    assert job.time_saving == pytest.approx(result["time_saving"])

    step_points = _points(sessions, job_id, "step")
    assert sorted((p.run, p.step) for p in step_points) == sorted((r, i) for r in ("dynds", "baseline") for i in range(4))
    assert {p.values["batch_type"] for p in step_points if p.run == "baseline"} == {"full"}
    epoch_points = _points(sessions, job_id, "epoch")
    assert sorted(p.run for p in epoch_points) == ["baseline", "dynds"]
    assert all(p.step == 3 and 0 <= p.values["val_acc"] <= 100 for p in epoch_points)
    assert job.progress["fraction"] == 1.0

    rec = job.reproducibility
    assert rec["seed"] == 0 and rec["device"] == "cpu" and rec["packages"]["torch"]
    # Outside Celery the worker is this process (the embedded executor's); tests/deploy checks Celery's.
    assert rec["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    assert (rec["git_revision"], rec["git_dirty"]) == git_state()
    if (PROJECT_DIR / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
        assert rec["git_revision"] == head


def test_a_job_claimed_twice_runs_once(sessions, settings, make_job):
    job_id = make_job()
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(run_job(job_id, session_factory=sessions, settings=settings))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(statuses) == ["skipped", "succeeded"]
    n_points = len(_points(sessions, job_id))
    # A redelivered message after the end changes nothing either.
    assert run_job(job_id, session_factory=sessions, settings=settings) == "skipped"
    assert len(_points(sessions, job_id)) == n_points == 10  # 2 runs x (4 steps + 1 epoch)


def test_a_cancelled_queued_job_never_runs(sessions, settings, make_job):
    job_id = make_job()
    with sessions() as s:
        assert crud.request_cancel(session=s, job=crud.get_job(session=s, job_id=job_id)).status == "cancelled"
    assert run_job(job_id, session_factory=sessions, settings=settings) == "skipped"
    assert _points(sessions, job_id) == [] and _job(sessions, job_id).started_at is None


def test_a_failing_job_records_its_error_in_words(sessions, settings, make_job, tmp_path):
    # A data error (DataError from dynds_core) is stored verbatim: it tells the user what to change.
    spec = tiny_spec()
    spec["data"] = {"dataset": "cifar10", "root": str(tmp_path / "no-such-dir")}
    job_id = make_job(spec)
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    job = _job(sessions, job_id)
    assert job.status == "failed" and "no-such-dir" in job.error and "Traceback" not in job.error


def test_an_unexpected_error_is_stored_with_its_type_and_no_traceback(sessions, settings, make_job, monkeypatch):
    import dynds_core

    def broken_train(spec, callbacks, **kw):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(dynds_core, "train", broken_train)
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    assert _job(sessions, job_id).error == "RuntimeError: CUDA error: device-side assert triggered"


@pytest.mark.parametrize("broker", [None, "redis://localhost:6379/0"])
def test_a_job_runs_with_the_measured_process_settings_but_the_collector_only_in_a_worker_process(sessions, settings, make_job, monkeypatch, broker):
    """A Celery worker's process exists for its jobs: every measured setting on. In embedded mode the
    process is the API's, whose collector stays on; the allocator and cuDNN settings still apply."""
    import dynds_core
    from dynds_core.trainer import ProcessSettings

    seen = {}

    def fake_train(spec, callbacks, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(dynds_core, "train", fake_train)
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings.model_copy(update={"broker_url": broker})) == "failed"
    expected = ProcessSettings(retain_memory=True, cudnn_benchmark=True) if broker is None else ProcessSettings.measured()
    assert seen["process"] == expected


def test_the_worker_reads_only_inside_the_data_dirs_whatever_changed_since_submission(sessions, settings, make_job, tmp_path):
    """The API checked the folder when the job was queued; a link added later, pointing out of the data
    directories, is refused where the worker reads it (runner wraps train in data_policy)."""
    from PIL import Image

    data, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (16, 16)).save(outside / "secret.png")
    for split, n in (("train", 40), ("test", 8)):
        for cls in ("a", "b"):
            (data / "set" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (16, 16), (i * 5, 0, 0)).save(data / "set" / split / cls / f"{i}.png")
    spec = {**TINY_SPEC, "data": {"dataset": "imagefolder", "root": str(data / "set")}}
    job_id = make_job(spec)
    (data / "set" / "train" / "a" / "zz-leak.png").symlink_to(outside / "secret.png")
    here = settings.model_copy(update={"data_dirs": [str(data)]})
    assert run_job(job_id, session_factory=sessions, settings=here) == "failed"
    error = _job(sessions, job_id).error
    assert "zz-leak.png" in error and "outside the allowed data directories" in error


def test_error_message_keeps_our_errors_verbatim():
    from dynds_core.reduced import ReducedPassError
    from dynds_core.spec import SpecError

    spec_error = SpecError("job 3", [("train.epochs", "must be at least 1")])
    assert error_message(spec_error) == str(spec_error)
    assert error_message(ReducedPassError("layer fc needs 8x8 input")) == "layer fc needs 8x8 input"
    assert error_message(KeyError("x")) == "KeyError: 'x'"
    assert error_message(MemoryError()) == "MemoryError"


# ---------------------------------------------------------------- cancellation of a running job


class CancelAt(Callback):
    """Requests the job's cancel (as POST /jobs/{id}/cancel does) after step ``at`` of the DynDS run."""

    def __init__(self, sessions, job_id, at):
        self.sessions, self.job_id, self.at = sessions, job_id, at

    def on_step(self, m):
        if m.run == "dynds" and m.step == self.at:
            with self.sessions() as s:
                crud.request_cancel(session=s, job=crud.get_job(session=s, job_id=self.job_id))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _claimed(sessions, make_job, spec):
    job_id = make_job(spec)
    with sessions() as s:
        assert crud.claim_job(session=s, job_id=job_id, worker="test") is not None
    return job_id


def test_a_running_job_stops_within_one_step_of_the_flag_being_seen(sessions, make_job):
    from dynds_core import train

    # 12 steps per run; baseline off so the DynDS run is the one being cancelled.
    spec = JobSpec.parse({**tiny_spec(), "baseline": False, "data": {**TINY_SPEC["data"], "synthetic_size": 384}})
    job_id = _claimed(sessions, make_job, spec.canonical())
    clock = FakeClock()
    sink = MetricsSink(job_id=job_id, session_factory=sessions, cancel_poll_s=0.5, clock=clock)

    class Time(Callback):  # 0.1 s of fake time per step: the sink polls every 5th step
        def on_step(self, m):
            clock.now += 0.1

    # Flagged after step 2; the next poll (clock 0.5 at step 4's end) sees it; no step may start after that.
    result = train(spec, [CancelAt(sessions, job_id, at=2), Time(), sink])
    sink.close()
    assert result.cancelled and sink.cancel_requested
    assert result.dynds.steps == 5, "steps 0..4 run; the flag, seen before step 5, stops the run there"
    with sessions() as s:
        assert crud.finish_job(session=s, job_id=job_id, result=result)
    job = _job(sessions, job_id)
    assert job.status == "cancelled"
    assert len(_points(sessions, job_id, "step")) == 5


def test_run_job_cancels_a_running_job(sessions, settings, make_job, monkeypatch):
    import dynds_core

    real_train = dynds_core.train
    spec = {**tiny_spec(), "data": {**TINY_SPEC["data"], "synthetic_size": 384}}
    job_id = make_job(spec)

    def train_with_cancel(spec, callbacks, **kw):  # a user cancels during the first run's 3rd step
        return real_train(spec, [CancelAt(sessions, job_id, at=2), *callbacks], **kw)

    monkeypatch.setattr(dynds_core, "train", train_with_cancel)
    # 0-second polling: the next should_stop reads the flag, so exactly steps 0..2 run.
    monkeypatch.setattr(runner, "MetricsSink", lambda **kw: MetricsSink(**{**kw, "cancel_poll_s": 0.0}))
    assert run_job(job_id, session_factory=sessions, settings=settings) == "cancelled"
    job = _job(sessions, job_id)
    assert job.status == "cancelled" and job.result["cancelled"]
    assert job.result["dynds"]["steps"] == 3
    assert len(_points(sessions, job_id, "step")) == 3 + (job.result["baseline"] or {}).get("steps", 0)


class GoesStaleAt(Callback):
    """What the API's heartbeat check does to a stalled worker's job: after step ``at`` it is failed."""

    def __init__(self, sessions, job_id, at):
        self.sessions, self.job_id, self.at = sessions, job_id, at
        self.dynds_steps = []

    def on_step(self, m):
        if m.run == "dynds":
            self.dynds_steps.append(m.step)
            if m.step == self.at:
                self.fail_now()

    def fail_now(self):
        from datetime import timedelta

        from sqlalchemy import update

        from app.models import Job, utcnow

        with self.sessions() as s:
            s.execute(update(Job).where(Job.id == self.job_id).values(heartbeat_at=utcnow() - timedelta(seconds=700)))
            s.commit()
            assert crud.fail_stale_jobs(session=s, older_than=timedelta(seconds=600)) == [self.job_id]


def test_run_job_stops_a_job_the_heartbeat_check_failed(sessions, settings, make_job, monkeypatch):
    import dynds_core

    real_train = dynds_core.train
    job_id = make_job({**tiny_spec(), "data": {**TINY_SPEC["data"], "synthetic_size": 384}})
    stale = GoesStaleAt(sessions, job_id, 2)
    monkeypatch.setattr(dynds_core, "train", lambda spec, callbacks, **kw: real_train(spec, [stale, *callbacks], **kw))
    # every point written as it comes (no timed flush), every should_stop a poll: the outcome is exact
    monkeypatch.setattr(runner, "MetricsSink", lambda **kw: MetricsSink(**{**kw, "cancel_poll_s": 0.0, "flush_every": 1}))
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    job = _job(sessions, job_id)
    # The check's reason stands (not overwritten by the worker), and no result is stored for it.
    assert job.status == "failed" and job.error.startswith("interrupted: no heartbeat from worker") and job.result is None
    assert stale.dynds_steps == [0, 1, 2], "steps 0..2 ran; the next poll saw the job failed"
    dynds_steps = [p.step for p in _points(sessions, job_id, "step") if p.run == "dynds"]
    assert dynds_steps == [0, 1, 2], "the points of the steps that ran are kept"


def test_a_result_arriving_after_the_job_was_failed_is_not_stored(sessions, settings, make_job, monkeypatch):
    import dynds_core

    real_train = dynds_core.train
    job_id = make_job()

    class FailedAtTheEnd(GoesStaleAt):  # after the DynDS run's last step: training itself completes
        def on_step(self, m):
            pass

        def on_run_end(self, result):
            if result.run == "dynds":
                self.fail_now()

    monkeypatch.setattr(dynds_core, "train", lambda spec, callbacks, **kw: real_train(spec, [*callbacks, FailedAtTheEnd(sessions, job_id, 0)], **kw))
    monkeypatch.setattr(runner, "MetricsSink", lambda **kw: MetricsSink(**{**kw, "cancel_poll_s": 1e9}))  # never sees it
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    job = _job(sessions, job_id)
    assert job.status == "failed" and job.error.startswith("interrupted: no heartbeat") and job.result is None and job.time_saving is None


def test_sink_batches_writes(sessions, make_job):
    """Points are written in bulk every flush_every points, not one by one."""
    from dynds_core.result import StepMetrics

    job_id = _claimed(sessions, make_job, TINY_SPEC)
    clock = FakeClock()
    sink = MetricsSink(job_id=job_id, session_factory=sessions, flush_every=10, flush_interval_s=1e9, clock=clock)
    sink.on_run_start("dynds", {"total_steps": 25, "epochs": 1})
    for i in range(25):
        sink.on_step(
            StepMetrics(
                run="dynds",
                step=i,
                epoch=0,
                batch_type="full",
                loss=1.0,
                acc=50.0,
                lr=0.1,
                step_time_s=0.01,
                train_time_s=0.01 * (i + 1),
                total_steps=25,
            )
        )
    assert sink.points_written == 20 and len(_points(sessions, job_id)) == 20
    assert _job(sessions, job_id).progress["step"] == 20  # progress goes out with each flush
    clock.now = 1e9 + 1  # the interval passes: the next step flushes what is buffered
    sink.on_step(
        StepMetrics(run="dynds", step=25, epoch=0, batch_type="full", loss=1.0, acc=50.0, lr=0.1, step_time_s=0.01, train_time_s=0.26, total_steps=26)
    )
    assert len(_points(sessions, job_id)) == 26
    assert sink.flushes == 4  # run start (progress only), 2 full batches, 1 by time


def test_a_job_orphaned_by_a_dead_process_is_failed_not_rerun(sessions, settings, make_job):
    """What a Celery redelivery after a worker child died finds: the job running under a dead pid."""
    settings = settings.model_copy(update={"recover_policy": "fail"})
    job_id = make_job()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sessions() as s:
        assert crud.claim_job(session=s, job_id=job_id, worker=f"{runner.socket.gethostname()}:{dead.pid}:MainThread")
    assert run_job(job_id, session_factory=sessions, settings=settings) == "failed"
    job = _job(sessions, job_id)
    assert job.status == "failed" and job.error.startswith("interrupted") and _points(sessions, job_id) == []

    # A job running under a live process (this one) is left alone.
    live_id = make_job(tiny_spec(seed=5))
    with sessions() as s:
        crud.claim_job(session=s, job_id=live_id, worker=runner.worker_name())
    assert run_job(live_id, session_factory=sessions, settings=settings) == "skipped"
    assert _job(sessions, live_id).status == "running"


class StopsAt(Callback):
    """A shutdown (SIGTERM) arriving after the DynDS run's step ``at``: sets the runner's stop event."""

    def __init__(self, event, at):
        self.event, self.at = event, at

    def on_step(self, m):
        if m.run == "dynds" and m.step == self.at:
            self.event.set()


def _stopped_at_a_checkpoint(sessions, settings, make_job, monkeypatch, at=5):
    """A job (12 steps a run) stopped by a shutdown after step ``at``: requeued, a checkpoint left at its stop."""
    import dynds_core

    real_train = dynds_core.train
    job_id = make_job({**tiny_spec(), "data": {**TINY_SPEC["data"], "synthetic_size": 384}})
    stop = threading.Event()
    monkeypatch.setattr(dynds_core, "train", lambda spec, callbacks, **kw: real_train(spec, [StopsAt(stop, at), *callbacks], **kw))
    assert run_job(job_id, session_factory=sessions, settings=settings, stop_event=stop) == "requeued"
    monkeypatch.setattr(dynds_core, "train", real_train)
    job = _job(sessions, job_id)
    assert job.status == "queued" and (job.attempts, job.stops) == (1, 1)
    assert sorted(p.step for p in _points(sessions, job_id, "step") if p.run == "dynds") == list(range(at + 1)), "the points so far stay"
    return job_id


def _checkpoints(settings, job_id):
    from app.artifacts import checkpoint_dir

    return sorted(p.name for p in checkpoint_dir(settings, job_id).glob("*.dynds"))


@pytest.mark.parametrize("keep", [False, True], ids=["dropped", "kept"])
def test_a_job_stopped_by_a_shutdown_resumes_from_its_checkpoint_then_drops_it(sessions, settings, make_job, monkeypatch, caplog, keep):
    settings = settings.model_copy(update={"keep_checkpoints": keep})
    job_id = _stopped_at_a_checkpoint(sessions, settings, make_job, monkeypatch)
    assert _checkpoints(settings, job_id)
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    job = _job(sessions, job_id)
    (where,) = job.result["interruptions"]
    # In lockstep the baseline stopped within a step of the DynDS run (which of them the stop caught first).
    assert where["steps"]["dynds"] == 6 and abs(where["steps"]["baseline"] - 6) <= 1 and (job.attempts, job.stops) == (2, 1)
    assert sorted(p.step for p in _points(sessions, job_id, "step") if p.run == "dynds") == list(range(12))
    assert any("resumes from checkpoint" in r.getMessage() and "dynds at step 6" in r.getMessage() for r in caplog.records)
    assert bool(_checkpoints(settings, job_id)) == keep, "deleted when the job ended, unless DYNDS_KEEP_CHECKPOINTS"


def test_a_checkpoint_written_on_other_hardware_is_not_resumed(sessions, settings, make_job, monkeypatch, caplog):
    import json

    from app.artifacts import checkpoint_dir

    job_id = _stopped_at_a_checkpoint(sessions, settings, make_job, monkeypatch)
    # The job's spec leaves the hardware open: its next attempt landed on a worker of another class.
    (checkpoint_dir(settings, job_id) / runner.HARDWARE_FILE).write_text(json.dumps({"hardware_key": "cpu · Other CPU · 8 threads"}))
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    job = _job(sessions, job_id)
    assert job.result["interruptions"] == [], "started from scratch"
    assert sorted(p.step for p in _points(sessions, job_id, "step") if p.run == "dynds") == list(range(12)), "every step once"
    assert any("was written on cpu · Other CPU · 8 threads" in r.getMessage() and "from scratch" in r.getMessage() for r in caplog.records)


def test_recover_policy_requeue_starts_from_scratch(sessions, settings, make_job, monkeypatch):
    settings = settings.model_copy(update={"recover_policy": "requeue"})
    import dynds_core

    real_train = dynds_core.train
    job_id = make_job({**tiny_spec(), "data": {**TINY_SPEC["data"], "synthetic_size": 384}})
    stop = threading.Event()
    monkeypatch.setattr(dynds_core, "train", lambda spec, callbacks, **kw: real_train(spec, [StopsAt(stop, 5), *callbacks], **kw))
    assert run_job(job_id, session_factory=sessions, settings=settings, stop_event=stop) == "requeued"
    assert _points(sessions, job_id) == [] and _checkpoints(settings, job_id) == [], "no checkpoints written, the points gone"
    monkeypatch.setattr(dynds_core, "train", real_train)
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    assert _job(sessions, job_id).result["interruptions"] == []
