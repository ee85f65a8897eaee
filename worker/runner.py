"""Runs one job: claim it, record what it runs on, train with metrics streaming, store the outcome.

    status = run_job(12)        # "succeeded", "failed", "cancelled", or "skipped"

The same function serves the embedded executor, the Celery task and the tests. It is idempotent:
only a queued job can be claimed (an atomic UPDATE), so a redelivered queue message, or two
workers racing for one job, run it once; the loser returns "skipped" without touching the job.

With ``recover_policy`` "resume" (the default) training writes checkpoints to
``<artifact_dir>/<job id>/checkpoints`` (app.artifacts.checkpoint_dir), and an attempt that finds some
(written on its hardware) continues from the newest valid one, after deleting in one transaction the
points an earlier attempt wrote beyond it (``crud.resume_run``). They are deleted when the job ends.

Every step also goes to the job's step archive (app/storage/step_archive.py): chunks while it runs (a resumed
attempt first drops the rows past its checkpoint, as resume_run the points), ``steps.parquet`` when it ends.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sqlmodel import col

from app import crud
from app.artifacts import checkpoint_dir, remove_checkpoints, store_result
from app.core.config import Settings, get_settings
from app.core.db import get_engine
from app.core.db import session_factory as make_session_factory
from app.crud.transitions import GIVE_UP, sources
from app.logs import job_context, one_line, start_job_log
from app.models import FINAL_STATES, Job
from app.storage.step_archive import (
    NO_PYARROW,
    StepArchive,
    have_pyarrow,
    keep_step_archive,
    merge_step_archive,
    prune_chunks,
    step_chunk_dir,
)
from dynds_core.spec import JobSpec

from .reproducibility import reproducibility_record
from .sink import MetricsSink, SessionFactory

log = logging.getLogger(__name__)

SKIPPED = "skipped"
REQUEUED = "requeued"  # stopped by a shutdown and put back in the queue
# dynds_core errors whose message is written for the user: stored verbatim.
USER_ERRORS = ("SpecError", "DataError", "ReducedPassError")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def is_user_error(exc: BaseException) -> bool:
    """A mistake of the job's submitter (a bad spec, missing data, a refused model, a validation error):
    logged as one line, without a traceback, which only unexpected errors keep."""
    for cls in type(exc).__mro__:
        if (cls.__name__ in USER_ERRORS and cls.__module__.startswith("dynds_core")) or (
            cls.__name__ == "ValidationError" and cls.__module__.startswith("pydantic")
        ):
            return True
    return False


def error_message(exc: BaseException) -> str:
    """The error as a user reads it: our own errors verbatim, anything else with its type."""
    for cls in type(exc).__mro__:
        if cls.__name__ in USER_ERRORS and cls.__module__.startswith("dynds_core"):
            return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def recover_if_orphaned(session, job_id: int, settings: Settings) -> str | None:
    """A job left `running` by a process of this host that no longer exists is recovered by
    ``settings.recover_policy`` ("fail": failed as interrupted; "resume" / "requeue": queued again while its
    attempts last, to continue from its checkpoint / from step 0); returns its new status, or None when it was
    left as it is.

    This is the redelivery Celery makes after a worker child died mid-job (task_reject_on_worker_lost):
    the message names the job, and the dead pid is proof, not a guess. Only this host's processes can
    be checked; a reused pid keeps the job as it is (its heartbeat then decides).
    """
    job = crud.get_job(session=session, job_id=job_id)
    if job is None or job.status not in sources(*GIVE_UP) or not job.worker:
        return None
    host, _, rest = job.worker.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid)):
        return None
    status = crud.give_up_run(
        session=session,
        job_id=job_id,
        error=crud.INTERRUPTED_ERROR.format(id=job_id),
        policy=settings.recover_policy,
        max_attempts=settings.max_attempts,
        where=(col(Job.worker) == job.worker,),
    )
    if status:
        log.warning("job %s was left running by process %s, which is gone: %s", job_id, pid, status)
        end_checkpoints(settings, job_id, status, session)
    return status


HARDWARE_FILE = "hardware.json"  # beside a job's checkpoints: the hardware they were written on


def resume_point(job_id: int, spec: JobSpec, directory: Path, *, hardware_key: str, attempt: int) -> tuple[Any, dict[str, Any] | None]:
    """The checkpoint this attempt of job ``job_id`` continues from, and what its progress says of it:
    (Checkpoint, {"attempt", "checkpoint", "phase", "steps", "lost_s"}), or (None, None) to start from scratch.

    A checkpoint written on other hardware is not used: a job's runs are timed against each other (the
    lockstep pairs, the equal-time budget), so all of it runs on one hardware class; a job whose spec leaves
    the hardware open (``train.hardware: auto``) and that lands on another class starts again there. So is
    one that is corrupt or of another spec (dynds_core.training.checkpoint names it). Either way the old
    checkpoints are deleted, and the hardware of this attempt is written beside the new ones.
    """
    from dynds_core.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

    found, marker = list_checkpoints(directory), directory / HARDWARE_FILE
    ckpt = None
    if found:
        try:
            written_on = json.loads(marker.read_text())["hardware_key"]
        except (OSError, ValueError, KeyError, TypeError):
            written_on = None
        if written_on != hardware_key:
            log.warning(
                "job %s: its checkpoint %s was written on %s, this worker is %s: one job's runs are timed on one "
                "hardware, so attempt %d starts from scratch",
                job_id, found[0].name, written_on or "unknown hardware", hardware_key, attempt,
            )  # fmt: skip
        else:
            try:
                ckpt = load_checkpoint(directory, spec.spec_hash)
            except CheckpointError as exc:
                log.warning("job %s: no checkpoint to resume from (%s): attempt %d starts from scratch", job_id, exc, attempt)
        if ckpt is None:
            remove_checkpoints_now(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"hardware_key": hardware_key}))
    if ckpt is None:
        return None, None
    steps = {str(k): int(v) for k, v in ckpt.header.get("steps", {}).items()}
    lost_s = round(max(0.0, time.time() - float(ckpt.header["saved_at"])), 3)
    where = ", ".join(f"{run} at step {step}" for run, step in steps.items()) or "between its runs"
    log.warning(
        "job %s resumes from checkpoint %s (attempt %d, %s: %s); %.1f s of training lost since it was written",
        job_id, ckpt.path.name, attempt, ckpt.header.get("phase"), where, lost_s,
    )  # fmt: skip
    return ckpt, {"attempt": attempt, "checkpoint": ckpt.path.name, "phase": ckpt.header.get("phase"), "steps": steps, "lost_s": lost_s}


def remove_checkpoints_now(directory: Path) -> None:
    from dynds_core.training.checkpoint import list_checkpoints

    for path in list_checkpoints(directory):
        path.unlink(missing_ok=True)


def kept_points(ckpt: Any) -> dict[str, tuple[int, int] | None]:
    """What of each run a checkpoint covers (``crud.resume_run``'s ``kept``): the runs it holds as finished
    whole, each run in flight up to its step and the epoch it was in; {} for none (from scratch)."""
    if ckpt is None:
        return {}
    kept: dict[str, tuple[int, int] | None] = {str(kind): None for kind in ckpt.payload.get("done", {})}
    for run in ckpt.payload.get("runs", []):
        kept[str(run["kind"])] = (int(run["step"]), int(run["epoch"]))
    return kept


def end_checkpoints(settings: Settings, job_id: int, status: str | None, session: Any = None) -> None:
    """A job that ended (succeeded, failed, cancelled) needs its checkpoints no more, and its step archive is
    merged and recorded (with a ``session``); a requeued one keeps both for its next attempt."""
    if status in FINAL_STATES:
        try:
            remove_checkpoints(settings, job_id, logger=log)
        except OSError:
            log.warning("job %s: its checkpoints could not be deleted", job_id, exc_info=True)
        if session is not None:
            keep_step_archive(session, settings, job_id, logger=log)


def step_archive(settings: Settings, job_id: int, attempt: int) -> StepArchive | None:
    """Where this attempt writes every step (settings.step_archive), or None (off, or no pyarrow: said so)."""
    if not settings.step_archive:
        return None
    if not have_pyarrow():
        log.warning("job %s: %s", job_id, NO_PYARROW)
        return None
    return StepArchive(step_chunk_dir(settings, job_id), attempt=attempt, chunk_rows=settings.step_archive_chunk_rows)


def default_session_factory(settings: Settings) -> SessionFactory:
    return make_session_factory(get_engine(settings.database_url))


def run_job(job_id: int, **kwargs: Any) -> str:
    """Run job ``job_id`` to its end and return its final status (see ``_run_job``); every line logged
    meanwhile carries the job id, and once the job is claimed its lines are stored with it (app/logs.py)."""
    with job_context(job_id):
        return _run_job(job_id, **kwargs)


def _run_job(
    job_id: int,
    *,
    session_factory: SessionFactory | None = None,
    settings: Settings | None = None,
    stop_event: threading.Event | None = None,
    own_process: bool | None = None,
) -> str:
    """Run job ``job_id`` to its end and return its final status ("skipped" if it was not claimable).

    ``stop_event`` (set by a shutting-down executor or worker) stops training at the end of the current
    step; the job is then requeued ("requeued"), not marked cancelled, since no user asked for it.
    ``own_process``: the process exists for its jobs (a Celery worker, the embedded executor's child), so
    the process-wide measuring settings apply; default: unless ``settings`` say embedded.
    """
    from dynds_core import train
    from dynds_core.data import data_policy
    from dynds_core.trainer import Contention, ProcessSettings, TimingNoise

    settings = settings or get_settings()
    session_factory = session_factory or default_session_factory(settings)

    with session_factory() as session:
        job = crud.claim_job(session=session, job_id=job_id, worker=worker_name())
        if job is None:
            recovered = recover_if_orphaned(session, job_id, settings)
            if recovered == "queued":  # requeued: this delivery runs it, as its next attempt
                job = crud.claim_job(session=session, job_id=job_id, worker=worker_name())
            elif recovered:
                return recovered
        if job is None:
            log.info("job %s is not queued (already claimed, cancelled or unknown): skipped", job_id)
            return SKIPPED
        raw_spec: dict[str, Any] = dict(job.spec)
        attempt = job.attempts
    start_job_log(job_id, session_factory, settings)
    log.info("job %s claimed by %s (attempt %d)", job_id, worker_name(), attempt)

    sink = MetricsSink(
        job_id=job_id,
        session_factory=session_factory,
        flush_every=settings.metrics_flush_every,
        flush_interval_s=settings.metrics_flush_interval_s,
        cancel_poll_s=settings.cancel_poll_s,
        stop_event=stop_event,
        attempt=attempt,
        max_step_points=settings.metrics_max_step_points,
        archive=step_archive(settings, job_id, attempt),
    )
    resuming = settings.recover_policy == "resume"
    directory = checkpoint_dir(settings, job_id)
    try:
        spec = JobSpec.parse(raw_spec, source=f"job {job_id}")
        record = reproducibility_record(spec)
        ckpt = None
        if resuming:  # checkpoints on, and the job goes on from its last one (if its last attempt left one)
            try:
                ckpt, resumed = resume_point(job_id, spec, directory, hardware_key=record["hardware"]["key"], attempt=attempt)
            except OSError as exc:  # like the weights, checkpoints never fail a job
                log.warning("job %s: runs without checkpoints: %s is not writable (%s)", job_id, directory, exc)
                resuming = False
            else:
                if resumed is not None:
                    sink.resume_at(resumed)
        else:  # "requeue" or "fail": an attempt starts from scratch
            remove_checkpoints(settings, job_id, ended=False, logger=log)
        kept = kept_points(ckpt)
        with session_factory() as session:
            # The points an earlier attempt wrote past the checkpoint (all of them, from scratch) go first.
            crud.resume_run(session=session, job_id=job_id, attempt=attempt, kept=kept)
            crud.set_reproducibility(session=session, job_id=job_id, record=record)
        if sink.archive is not None:  # and so do its archived steps
            dropped = prune_chunks(sink.archive.directory, kept)
            if dropped:
                log.info("job %s: %d archived steps of an earlier attempt past the checkpoint dropped", job_id, dropped)
        noise = TimingNoise(max_saving_gap=settings.noisy_saving_gap, max_full_step_cv=settings.noisy_step_cv)
        contention = Contention(max_wait_share=settings.contended_wait_share, min_cpu_share=settings.contended_cpu_share)
        # A Celery worker process, or the embedded executor's child, exists for its jobs; a job run in a process
        # that also serves the API leaves that process's collector alone (it keeps the requests' garbage in check).
        if own_process is None:
            own_process = not settings.embedded
        process = ProcessSettings.measured() if own_process else ProcessSettings(retain_memory=True, cudnn_benchmark=True)
        # The data boundary again where the files are read: every path inside DYNDS_DATA_DIRS (symlinks
        # resolved, default roots included) and the server's size limits (the API checked the spec already).
        with data_policy(allowed_roots=settings.allowed_data_dirs, limits=settings.data_limits):
            result = train(
                spec, [sink], cache_dir=settings.cache_dir, timing_noise=noise, contention=contention, process=process,
                checkpoint_dir=directory if resuming else None, resume_from=ckpt.path if ckpt is not None else None,
            )  # fmt: skip
        sink.close()
    except Exception as exc:
        message = error_message(exc)
        if is_user_error(exc):  # the user's mistake: one line, no traceback
            log.error("job %s failed: %s", job_id, one_line(message))
        else:  # unexpected: the traceback goes to the log only
            log.error("job %s failed: %s", job_id, message, exc_info=True)
        _close_quietly(sink, job_id)
        with session_factory() as session:
            if crud.fail_job(session=session, job_id=job_id, error=message, attempt=attempt):
                end_checkpoints(settings, job_id, "failed", session)
        return "failed"

    if result.cancelled and sink.no_longer_running:
        # The API gave up on this job (its heartbeat went stale while we were stalled): its word stands.
        log.warning("job %s: training stopped, the job is already %s", job_id, sink.no_longer_running)
        with session_factory() as session:  # requeued meanwhile: kept for the next attempt
            end_checkpoints(settings, job_id, sink.no_longer_running, session)
        return sink.no_longer_running
    if result.cancelled and not sink.cancel_requested:
        # Stopped by our own shutdown (SIGTERM), not by a user, after a whole step with its points flushed:
        # an incomplete result must not pass as a cancel. Requeued (a stop, not counted against the attempts limit), so the next worker or
        # server runs it: from the checkpoint training just wrote ("resume": the points stay), or from the start
        # (its points deleted in the same transaction).
        with session_factory() as session:
            requeued = crud.requeue_job(session=session, job_id=job_id, attempt=attempt, keep_points=resuming)
        log.warning("job %s stopped by a shutdown: %s", job_id, "requeued" if requeued else "no longer ours")
        return REQUEUED if requeued else SKIPPED
    with session_factory() as session:
        # The trained weights and the step archive are written (fsynced) first and recorded in the finishing
        # transaction: a client that sees the job ended finds them listed.
        archived = merge_step_archive(settings, job_id, logger=log) if sink.archive is not None else None
        more = (archived,) if archived is not None else ()
        if not store_result(session, job_id=job_id, result=result, attempt=attempt, spec=spec, settings=settings, logger=log, more=more):
            # No longer running: failed meanwhile (a stale heartbeat, say); that outcome stands.
            job = crud.get_job(session=session, job_id=job_id)
            status = job.status if job is not None else "failed"
            log.warning("job %s finished training but was already %s: its result is not stored", job_id, status)
            end_checkpoints(settings, job_id, status, session)
            return status
    status = "cancelled" if result.cancelled else "succeeded"
    with session_factory() as session:
        end_checkpoints(settings, job_id, status, session)
    log.info("job %s %s", job_id, status)
    return status


def _close_quietly(sink: MetricsSink, job_id: int) -> None:
    # The points up to the failure help explain it; a database that is down must not hide the real error.
    try:
        sink.close()
    except Exception:
        log.warning("job %s: metric points lost", job_id, exc_info=True)
