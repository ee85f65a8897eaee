"""Data functions for jobs, metrics, sweeps, artifacts and logs: used by the API routes and by the worker.

All take keyword-only arguments and a Session::

    job, outcome = submit_job(session=session, spec=JobSpec.parse(data))   # "created", "deduplicated", "idempotent"
    job = claim_job(session=session, job_id=job.id, worker="host:123")     # None: someone else has it

One module a seam, every public name importable from here (``from app import crud; crud.claim_job(...)``):

- ``transitions``: the lifecycle as one table (``TRANSITIONS``: each operation's source states and target);
  every conditional UPDATE below and every 409 (``JobStateError``) is built from it.
- ``submission``: submitting jobs and sweeps (dedup by spec hash, Idempotency-Keys).
- ``lifecycle``: claim, finish, fail, cancel, retry, requeue.
- ``runs``: what a running job's worker writes and polls (metric points, heartbeat, progress, cancel flag).
- ``recovery``: lost runs given up on (requeued or failed), lost broker messages sent again.
- ``queries``: reads (a job, the jobs list, metric points, summary and frontier rows, the results version).
- ``artifacts``: artifact rows and deleting a job; ``logs``: a job's log lines.
"""

from app.crud.artifacts import (
    delete_artifact_rows,
    delete_job,
    expired_artifacts,
    finish_job_with_artifact,
    job_artifact,
    job_artifacts,
    record_artifact,
)
from app.crud.lifecycle import (
    RETRY_COLUMNS,
    claim_job,
    fail_job,
    finish_job,
    next_queued_job_id,
    request_cancel,
    requeue_job,
    resume_run,
    retry_job_once,
)
from app.crud.logs import append_job_logs, job_logs_after, last_job_log_seq, set_job_log_message
from app.crud.queries import (
    JOB_ORDERS,
    SUMMARY_ROW_COLUMNS,
    CursorError,
    frontier_rows,
    get_job,
    list_jobs_json,
    metrics_after,
    metrics_json_after,
    metrics_json_rows,
    recipes,
    results_version,
    results_versions,
    summary_rows,
    summary_tuples,
    track_base,
)
from app.crud.recovery import (
    EXECUTOR_THREAD,
    INTERRUPTED_ERROR,
    STALE_ERROR,
    fail_stale_jobs,
    give_up_run,
    jobs_to_redispatch,
    mark_dispatched,
    recover_interrupted,
    recover_stale_jobs,
)
from app.crud.runs import append_metrics, finite, flush_metrics, job_control, record_heartbeat, set_reproducibility
from app.crud.submission import (
    NOT_REPEATABLE_KINDS,
    IdempotencyKeyReused,
    active_job,
    check_key_reuse,
    create_sweep,
    dedup_states,
    job_columns,
    submit_job,
    sweep_jobs,
)
from app.crud.transitions import TRANSITIONS, JobStateError, Transition

__all__ = [
    "EXECUTOR_THREAD",
    "INTERRUPTED_ERROR",
    "JOB_ORDERS",
    "CursorError",
    "NOT_REPEATABLE_KINDS",
    "RETRY_COLUMNS",
    "STALE_ERROR",
    "SUMMARY_ROW_COLUMNS",
    "TRANSITIONS",
    "IdempotencyKeyReused",
    "JobStateError",
    "Transition",
    "active_job",
    "append_job_logs",
    "append_metrics",
    "check_key_reuse",
    "claim_job",
    "create_sweep",
    "dedup_states",
    "delete_artifact_rows",
    "delete_job",
    "expired_artifacts",
    "record_artifact",
    "fail_job",
    "fail_stale_jobs",
    "finish_job",
    "finish_job_with_artifact",
    "finite",
    "flush_metrics",
    "frontier_rows",
    "get_job",
    "give_up_run",
    "job_artifact",
    "job_artifacts",
    "job_columns",
    "job_control",
    "job_logs_after",
    "jobs_to_redispatch",
    "last_job_log_seq",
    "list_jobs_json",
    "mark_dispatched",
    "metrics_after",
    "metrics_json_after",
    "metrics_json_rows",
    "next_queued_job_id",
    "recipes",
    "record_heartbeat",
    "recover_interrupted",
    "recover_stale_jobs",
    "request_cancel",
    "requeue_job",
    "resume_run",
    "results_version",
    "results_versions",
    "retry_job_once",
    "set_job_log_message",
    "set_reproducibility",
    "submit_job",
    "summary_rows",
    "track_base",
    "summary_tuples",
    "sweep_jobs",
]
