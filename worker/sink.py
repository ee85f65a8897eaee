"""Streams a running job's metrics into the database, and carries cancellation back into training.

    sink = MetricsSink(job_id=7, session_factory=lambda: Session(engine))
    result = train(spec, [sink])
    sink.close()                       # flush what is left

The training loop calls ``on_step`` after every step, so it must stay cheap: a step only appends a
small dict to a list and reads the clock. The database sees one bulk INSERT per flush (every
``flush_every`` points or ``flush_interval_s`` seconds, whichever comes first, and at every epoch
and run end), which also reads the job's cancel flag back, and a cancel-flag query only when no flush has
read it for ``cancel_poll_s`` seconds; ``should_stop`` answers from the cached flag, so a cancel takes effect
one step after it is seen.

Every flush also writes the job's heartbeat (``heartbeat_at``, in the progress UPDATE a flush makes
anyway): the API fails a running job whose heartbeat is older than ``stale_job_after_s``, which is how
a job whose worker died is freed. If the poll finds the job no longer running (failed that way while
this process was only stalled), training stops: its result would be thrown away.

Step points are stored bounded (``max_step_points`` per run: app/storage/buckets.py), every epoch point
as it comes; every step also goes to the job's step archive (``archive``: app/storage/step_archive.py).
A checkpoint cuts the open buckets and writes the archive's chunk before its file exists, so the steps it
covers are stored in both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from app import crud
from app.storage.buckets import StepBuckets
from dynds_core.callbacks import Callback
from dynds_core.result import EpochMetrics, RunResult, StepMetrics

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Any]]


def metric_point(m: StepMetrics | EpochMetrics) -> dict[str, Any]:
    """A training callback's metrics as a point for ``crud.flush_metrics`` / ``crud.append_metrics``."""
    if isinstance(m, StepMetrics):
        values = {"loss": m.loss, "acc": m.acc, "lr": m.lr, "batch_type": m.batch_type, "step_time_s": m.step_time_s}
        return {"run": m.run, "kind": "step", "step": m.step, "epoch": m.epoch, "train_time_s": m.train_time_s, "values": values}
    values = {
        "train_loss": m.train_loss,
        "train_acc": m.train_acc,
        "val_loss": m.val_loss,
        "val_acc": m.val_acc,
        "time_full_s": m.time_full_s,
        "time_reduced_s": m.time_reduced_s,
        "steps_full": m.steps_full,
        "steps_reduced": m.steps_reduced,
        "epochs": m.epochs,
    }
    return {"run": m.run, "kind": "epoch", "step": None, "epoch": m.epoch, "train_time_s": m.train_time_s, "values": values}


def progress(run: str, *, step: int, total_steps: int, epoch: int, epochs: int) -> dict[str, Any]:
    """The job's ``progress`` field; ``step`` counts the steps done."""
    return {
        "run": run,
        "epoch": epoch,
        "epochs": epochs,
        "step": step,
        "total_steps": total_steps,
        "fraction": round(step / total_steps, 4) if total_steps else 0.0,
    }


class MetricsSink(Callback):
    def __init__(
        self,
        *,
        job_id: int,
        session_factory: SessionFactory,
        flush_every: int = 256,  # points
        flush_interval_s: float = 2.0,
        cancel_poll_s: float = 2.0,  # the most time without reading the cancel flag (a flush reads it too)
        stop_event: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        attempt: int | None = None,
        max_step_points: int | None = None,  # per run; None: every step
        archive: Any = None,  # a StepArchive (app/storage/step_archive.py): every step, to a Parquet file
    ):
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1 point: {flush_every}")
        if flush_interval_s <= 0 or cancel_poll_s < 0:
            raise ValueError(f"flush_interval_s must be > 0 and cancel_poll_s >= 0: {flush_interval_s}, {cancel_poll_s}")
        self.job_id = job_id
        self.session_factory = session_factory
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.cancel_poll_s = cancel_poll_s
        # Set by the process that runs us (server shutdown): stops training without it being a user's cancel.
        self.stop_event = stop_event
        self.clock = clock
        # The job's attempts when this run claimed it: every write requires it still (crud.flush_metrics), so a
        # run given up on (requeued and claimed again elsewhere) cannot add points to the rerun's.
        self.attempt = attempt
        # Where this attempt resumed (``resume_at``), shown in the job's progress.
        self.resumed: dict[str, Any] | None = None
        self.max_step_points = max_step_points
        self.archive = archive
        self._buckets: dict[str, StepBuckets] = {}

        self.cancel_requested = False  # the cached flag should_stop answers from
        # The job's status when a poll found it no longer running (e.g. "failed" by the heartbeat check).
        self.no_longer_running: str | None = None
        self.points_written = 0
        self.flushes = 0
        self._buffer: list[dict[str, Any]] = []
        self._progress: dict[str, Any] | None = None
        self._progress_dirty = False
        self._run_info: dict[str, Any] = {}
        self._last_step: dict[str, int] = {}
        now = clock()
        self._next_flush = now + flush_interval_s
        self._next_poll = now  # poll before the first step: a job cancelled while starting stops at once

    def resume_at(self, resumed: dict[str, Any]) -> None:
        """This attempt continues from a checkpoint (runner.resume_point: checkpoint, phase, ``steps`` of each run
        in flight, lost_s): the job's progress says so, and each resumed run counts its steps from there."""
        self.resumed = resumed
        self._last_step.update({run: step - 1 for run, step in resumed.get("steps", {}).items() if step > 0})

    # -- Callback hooks (the training thread) --------------------------------------------------
    def on_run_start(self, run, info):
        self._run_info[run] = dict(info)
        self._set_progress(run, step=0, epoch=0)
        self.flush()

    def on_step(self, m: StepMetrics) -> None:
        point = metric_point(m)
        if self.archive is not None and self.no_longer_running is None:
            self.archive.append(point)
        buckets = self._buckets.get(m.run)
        if buckets is None:
            buckets = self._buckets[m.run] = StepBuckets(total_steps=m.total_steps, max_points=self.max_step_points)
        self._buffer.extend(buckets.add(point))
        self._last_step[m.run] = m.step
        if self._progress is not None:  # cheaper than rebuilding the dict on every step
            self._progress["step"] = m.step + 1
            self._progress["epoch"] = m.epoch
            self._progress["fraction"] = round((m.step + 1) / m.total_steps, 4) if m.total_steps else 0.0
        self._progress_dirty = True
        if len(self._buffer) >= self.flush_every or self.clock() >= self._next_flush:
            self.flush()

    def on_epoch(self, m: EpochMetrics) -> None:
        point = metric_point(m)
        point["step"] = self._last_step.get(m.run)  # the run's last step in this epoch: plots share one x axis
        self._buffer.append(point)
        self.flush()

    def on_run_end(self, result: RunResult) -> None:
        self._cut(result.run)  # a run stopped early (cancel, shutdown) ends inside a bucket
        self.flush()

    def on_checkpoint(self) -> None:
        # The points a checkpoint covers are stored before it exists: a resumption keeps them (a run resumed
        # from it starts a bucket at its step: buckets.py).
        self._cut()
        self._flush_archive()
        self.flush()

    def _cut(self, run: str | None = None) -> None:
        for name, buckets in self._buckets.items():
            if run is None or name == run:
                point = buckets.cut()
                if point is not None:
                    self._buffer.append(point)

    def _flush_archive(self) -> None:
        if self.archive is None or self.no_longer_running is not None:
            return
        try:
            self.archive.flush()
        except Exception:  # like the weights, the archive never fails a job; its log line says what is missing
            log.warning("job %s: step archive chunk not written; the archive stops here", self.job_id, exc_info=True)
            self.archive = None

    def should_stop(self) -> bool:
        if self.stop_event is not None and self.stop_event.is_set():
            return True
        if not self.cancel_requested and self.no_longer_running is None and self.clock() >= self._next_poll:
            self.poll_cancel()
        return self.cancel_requested or self.no_longer_running is not None

    # -- database ----------------------------------------------------------------------------
    def poll_cancel(self) -> bool:
        self._next_poll = self.clock() + self.cancel_poll_s
        try:
            with self.session_factory() as session:
                cancel, status = crud.job_control(session=session, job_id=self.job_id)
            self.cancel_requested = cancel
            if status is not None and status != "running":
                self.no_longer_running = status
                log.warning("job %s is %s in the database (no heartbeat seen in time?): stopping its training", self.job_id, status)
        except Exception:  # a flaky read must not kill a long run; the next poll tries again
            log.warning("job %s: cannot read the cancel flag", self.job_id, exc_info=True)
        return self.cancel_requested

    def flush(self) -> None:
        """Write the buffered points (one bulk INSERT), the progress and the heartbeat; keep the points if the write fails."""
        self._next_flush = self.clock() + self.flush_interval_s
        if not self._buffer and not self._progress_dirty:
            return
        if self.no_longer_running is not None:
            self._buffer = []  # the job is not ours any more: nothing may be written to it
            return
        points, self._buffer = self._buffer, []
        try:
            with self.session_factory() as session:
                # One transaction: the heartbeat (with the progress when it moved), then the points, only while the job is this run's.
                progress = dict(self._progress) if self._progress_dirty and self._progress is not None else None
                ours = crud.flush_metrics(session=session, job_id=self.job_id, points=points, progress=progress, attempt=self.attempt)
                if not ours:
                    _cancel, status = crud.job_control(session=session, job_id=self.job_id)
                    self.no_longer_running = status or "deleted"
                    log.warning(
                        "job %s is %s in the database: this run's %d points are dropped, training stops",
                        self.job_id,
                        self.no_longer_running,
                        len(points),
                    )
                    return
        except Exception:
            self._buffer = points + self._buffer  # retried at the next flush, in order
            log.warning("job %s: cannot write %d metric points; will retry", self.job_id, len(points), exc_info=True)
            return
        self._progress_dirty = False
        self.points_written += len(points)
        self.flushes += 1
        self.cancel_requested = self.cancel_requested or ours.cancel_requested
        self._next_poll = self.clock() + self.cancel_poll_s  # the flush read the flag: no separate poll needed yet

    def close(self) -> None:
        """Final flush; raises if the points still cannot be written (the job's record would be incomplete)."""
        self._cut()
        self._flush_archive()
        self.flush()
        if self._buffer:
            with self.session_factory() as session:
                if not crud.flush_metrics(session=session, job_id=self.job_id, points=self._buffer, attempt=self.attempt):
                    self.no_longer_running = self.no_longer_running or "gone"
                    self._buffer = []
                    return
            self.points_written += len(self._buffer)
            self._buffer = []

    def _set_progress(self, run: str, *, step: int, epoch: int) -> None:
        info = self._run_info.get(run, {})
        step = max(step, self._last_step.get(run, -1) + 1)  # a resumed run starts where its checkpoint stood
        self._progress = progress(run, step=step, total_steps=int(info.get("total_steps") or 0), epoch=epoch, epochs=int(info.get("epochs") or 0))
        if self.resumed is not None:
            self._progress["resumed"] = self.resumed
        self._progress_dirty = True
