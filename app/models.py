"""Stored entities and their API schemas (one family per entity: Base -> table -> Public).

A Job row keeps, besides its spec and full result, the columns lists and the leaderboard need
(arch, dataset, track, setting_key, the summary figures), so those pages never parse stored JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, WithJsonSchema, create_model, field_serializer, field_validator, model_validator
from pydantic import Field as PydField
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
# A job in one of these states answers an identical submission instead of a new job being made.
DEDUP_STATES = ("queued", "running", "succeeded")
SUMMARY_FIELDS = (
    "time_saving",
    "acc_delta",
    "flop_saving",
    "equal_time_gap",
    "dynds_acc",
    "baseline_acc",
    "equal_time_acc",
    "dynds_time_s",
    "baseline_time_s",
    "time_saving_interleaved",
    "timing_noisy",
    "contended",
    "verdict",
    "hardware_key",
)

# The columns GET /jobs orders by (besides id), each with a (column, id) index.
JOB_SORT_COLUMNS = (
    "name",
    "status",
    "track",
    "hardware_key",
    "schedule_kind",
    "created_at",
    "finished_at",
    "time_saving",
    "acc_delta",
    "equal_time_gap",
    "verdict",
)

# GET /jobs counts matching jobs exactly up to this many; past it, the count is an estimate (count_exact false).
JOBS_COUNT_EXACT_UP_TO = 10_000

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit metric id.
MetricId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def iso_utc(dt: datetime | None) -> str | None:
    """How the API writes times: ISO 8601 in UTC with a Z, e.g. 2026-11-25T21:00:00.000000Z."""
    dt = as_utc(dt)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else None


class _UTCModel(SQLModel):
    @field_serializer("created_at", "started_at", "finished_at", "heartbeat_at", check_fields=False)
    def _ser_dt(self, dt: datetime | None) -> str | None:
        return iso_utc(dt)


# ---------------------------------------------------------------- sweeps


class Sweep(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    base: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    grid: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    count: int = 0
    # The job answering each grid point, in grid order (a point may be answered by an earlier identical job).
    job_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------- jobs


class JobBase(_UTCModel):
    name: str = Field(max_length=200)
    status: str = Field(default="queued", max_length=16)
    spec_hash: str = Field(max_length=64, index=True)
    arch: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    schedule_kind: str = Field(max_length=32)
    track: str = Field(max_length=200)
    # app.leaderboard.recipe_hash of the spec: the leaderboard track (everything but name, seed, the
    # DynDS setting and the baseline flags). NULL only on rows the 0003 migration could not read.
    recipe_hash: str | None = Field(default=None, max_length=16)
    attempt: int = 1  # 1 + how many retries (POST /jobs/{id}/retry) lead to this job
    # How many times this job has been started (claimed by a worker), and how many of those runs their own
    # process's shutdown stopped (SIGTERM on a deploy: not a fault). Recovery with recover_policy "resume" or
    # "requeue" puts it back in the queue only while attempts - stops < settings.max_attempts (0004, 0010).
    attempts: int = 0
    stops: int = 0
    retry_of: int | None = Field(default=None, foreign_key="job.id", index=True)  # migration 0011
    sweep_id: int | None = Field(default=None, foreign_key="sweep.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    error: str | None = None
    # Last sign of life from the worker running the job (claim, metric flushes); a running job whose
    # heartbeat is older than settings.stale_job_after_s is failed as interrupted.
    heartbeat_at: datetime | None = None
    # dynds_core.hardware's key of what the job ran on, measured by the process that ran it (set when it is
    # claimed, confirmed by its result); "unknown" for jobs stored before it was recorded (migration 0007).
    # Leaderboard cells, tracks and frontiers key on it: results from unlike hardware are never pooled.
    hardware_key: str | None = Field(default=None, max_length=300)


class Job(JobBase, table=True):
    __table_args__ = (
        Index("ix_job_status_created", "status", "created_at"),
        Index("ix_job_status_finished", "status", "finished_at"),
        Index("ix_job_created_at", "created_at"),
        Index("ix_job_track_status", "track", "status"),
        Index("ix_job_recipe_status", "recipe_hash", "status"),
        Index("ix_job_frontier_status", "frontier_key", "status"),
        Index("ix_job_hardware_status", "hardware_key", "status"),
        # GET /jobs pages by keyset on (order column, id): one index per sortable column (migration 0009).
        *(Index(f"ix_job_{c}_id", c, "id") for c in JOB_SORT_COLUMNS),
        Index("ix_job_arch_dataset", "arch", "dataset"),
        Index("ix_job_dataset", "dataset"),
    )
    id: int | None = Field(default=None, primary_key=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Holds spec_hash while the job is queued, running or succeeded, NULL otherwise: a UNIQUE index on it
    # lets the database (not a racy read-then-write) decide which of concurrent identical submissions wins.
    active_hash: str | None = Field(default=None, sa_column=Column(String(64), unique=True, nullable=True))
    setting_key: str = Field(default="", max_length=300)
    setting: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    seed: int = 0
    # app.leaderboard.frontier_key: the recipe without train.epochs (every budget of one recipe).
    frontier_key: str | None = Field(default=None, max_length=16)
    worker: str | None = Field(default=None, max_length=200)
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    reproducibility: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # dynds_core.hardware.Hardware as stored (key, device, model, count, threads, memory, versions).
    hardware: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The summary, flat (filled when the job succeeds); the leaderboard and export read only these.
    time_saving: float | None = None
    acc_delta: float | None = None
    flop_saving: float | None = None
    equal_time_gap: float | None = None
    dynds_acc: float | None = None
    baseline_acc: float | None = None
    equal_time_acc: float | None = None
    dynds_time_s: float | None = None
    baseline_time_s: float | None = None
    time_saving_interleaved: float | None = None
    timing_noisy: bool = False  # the timing cannot be trusted (JobResult.timing_noisy): left out of rankings
    contended: bool = False  # the job did not have its hardware to itself (JobResult.contended): left out of rankings
    verdict: str | None = Field(default=None, max_length=32)  # dynds_core.verdict kind for this one job (one seed)


_JOB_BASE_FIELDS = tuple(JobBase.model_fields)


# A submitted spec: any mapping here (app.api.spec_policy validates it, naming every key path), a
# JobSpec (or {"defaults": true}) in the OpenAPI. oneOf (exactly one matches: a JobSpec has no `defaults`):
# typescript-fetch writes it as a union type, where anyOf became one interface that required `defaults`.
SpecBody = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "oneOf": [{"$ref": "#/components/schemas/JobSpec"}, {"$ref": "#/components/schemas/AllDefaults"}],
            "description": 'a JobSpec (docs/api.md); {"defaults": true} for every default',
        }
    ),
]
SPEC_SECTIONS = ("version", "name", "model", "data", "train", "dynds", "baseline", "equal_time_baseline", "defaults")
WRAP_HINT = 'the body of POST /jobs is {"spec": {...}, "force": false}: wrap the spec in {"spec": ...}'


class JobCreate(BaseModel):
    """POST /jobs: the spec under ``spec`` (required), nothing else but ``force``."""

    model_config = ConfigDict(extra="forbid")
    spec: SpecBody
    force: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _wrapped(cls, data: Any) -> Any:
        if isinstance(data, dict) and "spec" not in data:
            bare = [k for k in data if k in SPEC_SECTIONS]
            if bare:
                raise PydanticCustomError("missing_spec", f"this looks like a bare spec (keys {', '.join(map(repr, bare))}); {WRAP_HINT}")
            raise PydanticCustomError("missing_spec", f"spec is required; {WRAP_HINT}")
        return data


def column_model(name: str, columns: tuple[str, ...], doc: str, *, partial: bool = False, **types: Any) -> type[BaseModel]:
    """A response model of some of the job table's columns, each typed as the table types it (``types``
    overrides one), so the OpenAPI, and the clients made from it, follow the table. ``partial``: no column is
    required (a response that carries the columns a request chose)."""
    fields: dict[str, Any] = {c: (types.get(c, Job.model_fields[c].annotation), None if partial else ...) for c in columns}
    return create_model(name, __doc__=doc, __config__=ConfigDict(extra="forbid"), **fields)


JobSummary = column_model(
    "JobSummary",
    SUMMARY_FIELDS,
    "A succeeded job's figures (the job table's summary columns): time savings as fractions (0.3 = 30 % less "
    "training time), accuracies and their deltas in percentage points, times in seconds.",
)


class JobPublic(JobBase):
    id: int
    spec: dict[str, Any]
    deduplicated: bool = False
    progress: dict[str, Any] | None = None
    summary: JobSummary | None = None
    result: dict[str, Any] | None = None
    reproducibility: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None

    @classmethod
    def from_job(cls, job: Job, *, deduplicated: bool = False, with_result: bool = True) -> JobPublic:
        summary = JobSummary.model_construct(**{f: getattr(job, f) for f in SUMMARY_FIELDS}) if job.status == "succeeded" else None
        # Built from a stored row (already valid): constructed without a second validation.
        return cls.model_construct(
            **{f: getattr(job, f) for f in _JOB_BASE_FIELDS},
            id=job.id,
            spec=job.spec,
            deduplicated=deduplicated,
            progress=job.progress,
            summary=summary,
            result=job.result if with_result else None,
            reproducibility=job.reproducibility,
            hardware=job.hardware,
        )


def _always_null_result(schema: dict[str, Any]) -> None:
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "object", "additionalProperties": True}, {"type": "null"}]
    schema["description"] = "always null in a list: GET /jobs/{job_id} has the result"


class JobListItem(JobPublic):
    """A job in a list: everything but the full result."""

    # Always null; the schema says so with JobPublic's type (a null-only type made typescript-fetch import a
    # "Null" model it never writes).
    result: None = Field(default=None, schema_extra={"json_schema_extra": _always_null_result})


class JobsPublic(SQLModel):
    """A page of GET /jobs. Follow ``next_cursor`` (``cursor=``) for the next page: stable while jobs are added."""

    data: list[JobListItem]
    count: int = Field(description="jobs matching the filters: exact when count_exact, else the planner's estimate")
    count_exact: bool = Field(True, description=f"false when more than {JOBS_COUNT_EXACT_UP_TO:,} jobs match and count is an estimate")
    next_cursor: str | None = Field(None, description="the next page's cursor (same order and filters); null on the last page")


class JobSubmitted(JobPublic):
    """POST /jobs and retries: the job, and what the submitter should know now (e.g. that no live worker
    serves the queue the job asks for: it waits until one does; app.fleet.routing)."""

    warnings: list[str] = []


# ---------------------------------------------------------------- metrics


class MetricPoint(SQLModel, table=True):
    __tablename__ = "metric_point"
    __table_args__ = (Index("ix_metric_point_job_id_id", "job_id", "id"),)
    # The id is the cursor: one worker writes a job's points in order, so ids grow with time per job.
    id: int | None = Field(default=None, sa_column=Column(MetricId, primary_key=True, autoincrement=True))
    job_id: int = Field(foreign_key="job.id")
    run: str = Field(max_length=16)
    kind: str = Field(max_length=8)
    step: int | None = None
    epoch: int | None = None
    train_time_s: float | None = None
    values: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class MetricPointPublic(SQLModel):
    id: int
    run: str
    kind: str
    step: int | None = None
    epoch: int | None = None
    train_time_s: float | None = None
    values: dict[str, Any]


class MetricsPublic(SQLModel):
    data: list[MetricPointPublic]
    next_cursor: int


# ---------------------------------------------------------------- job logs


class JobLog(SQLModel, table=True):
    """One log line of a job (INFO and above), written by the process running it (app.logs); migration 0005."""

    __tablename__ = "job_log"
    __table_args__ = (Index("ix_job_log_job_id_seq", "job_id", "seq"),)
    id: int | None = Field(default=None, sa_column=Column(MetricId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_column=Column(Integer, ForeignKey("job.id", ondelete="CASCADE"), nullable=False))
    seq: int  # the line's number in its job, from 1: the cursor of GET /jobs/{id}/logs
    created_at: datetime = Field(default_factory=utcnow)
    level: str = Field(max_length=8)
    logger: str = Field(max_length=200)
    message: str = Field(sa_column=Column(Text, nullable=False))


class JobLogLine(SQLModel):
    seq: int
    created_at: str
    level: str
    logger: str
    message: str


class JobLogsPublic(SQLModel):
    data: list[JobLogLine]
    next_cursor: int


# ---------------------------------------------------------------- sweeps (API)


SeedValue = Annotated[int, PydField(ge=0, le=2**31 - 1)]


class SweepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = PydField(default="sweep", min_length=1, max_length=200)
    base: SpecBody = {}
    grid: dict[str, list[Any]] = {}
    # Every grid point once per seed (as train.seed), seeds innermost; 1..50 distinct seeds.
    seeds: Annotated[list[SeedValue], PydField(min_length=1, max_length=50)] | None = None
    # "frontier": the base spec's baseline only (schedule none, no paired or equal-time baseline) at
    # 25/50/75/100 % of its train.epochs, once per seed; the grid must then be empty.
    preset: Literal["frontier"] | None = None
    force: StrictBool = False

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise ValueError(f"seeds must be distinct; repeated: {', '.join(map(str, dup))}")
        return seeds


class SweepPublic(SQLModel):
    id: int
    name: str
    count: int
    jobs: list[JobListItem]
    warnings: list[str] = []  # POST /sweeps: as JobSubmitted's, one per queue no live worker serves


# ---------------------------------------------------------------- tokens and idempotency


class ApiToken(_UTCModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))  # sha256 hex; the token itself is never stored
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_key"
    key: str = Field(primary_key=True, max_length=200)
    job_id: int = Field(foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------- artifacts (a job's trained weights)


class Artifact(SQLModel, table=True):
    """A file a job left, under settings.artifact_dir (app/artifacts.py). ``path`` is relative to that
    directory (workers and the API may mount shared storage at different places); the file is complete
    (written to a temporary name, fsynced, renamed) before its row exists."""

    __table_args__ = (Index("ix_artifact_job_id", "job_id"), Index("ix_artifact_created_at", "created_at"))
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id")
    name: str = Field(max_length=200)
    path: str = Field(max_length=1000)
    size_bytes: int = Field(sa_column=Column(BigInteger(), nullable=False))
    sha256: str = Field(max_length=64)
    # How to rebuild the model the file loads into: {"arch", "num_classes", "in_channels", "small_input"}.
    recipe: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ArtifactPublic(_UTCModel):
    id: int
    job_id: int
    name: str
    size_bytes: int
    sha256: str
    recipe: dict[str, Any]
    created_at: datetime
    download: str  # the download URL, under the API prefix


class ArtifactsPublic(SQLModel):
    data: list[ArtifactPublic]
    count: int


class ResultsVersion(SQLModel, table=True):
    """A counter per stored track label (scope "track") and per frontier key (scope "frontier"), bumped by
    database triggers whenever a succeeded job of it is written, changed or deleted (migration 0009): what
    the results cache checks, one track at a time."""

    __tablename__ = "results_version"
    scope: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=300)
    version: int = Field(sa_column=Column(BigInteger, nullable=False))


# ---------------------------------------------------------------- workers (the fleet: app/fleet)


class Worker(SQLModel, table=True):
    """A process that runs jobs, as it registered (`dynds worker`, or the embedded executor of `dynds serve`)
    and keeps its row fresh (``last_seen``, every settings.worker_heartbeat_s). One row per (host, name): a
    worker restarted under its node name, after a SIGKILL too, takes its row back; migration 0008."""

    __table_args__ = (UniqueConstraint("host", "name", name="uq_worker_host_name"), Index("ix_worker_last_seen", "last_seen"))
    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=255)
    name: str = Field(max_length=255)  # the Celery node name (dynds@host), or "dynds serve" for the embedded executor
    kind: str = Field(max_length=16)  # "celery" or "embedded"
    pid: int
    version: str = Field(max_length=32)
    hardware: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # dynds_core.hardware.Hardware
    hardware_key: str = Field(max_length=300)
    hardware_class: str = Field(max_length=300)
    queues: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    concurrency: int = 1
    job_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # the jobs it runs now
    started_at: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    stopped_at: datetime | None = None  # a graceful stop; a killed worker only stops being seen


class WorkerPublic(BaseModel):
    id: int
    host: str
    name: str
    kind: str
    pid: int
    version: str
    alive: bool  # seen within worker_timeout_s and not stopped
    hardware: dict[str, Any]
    hardware_key: str
    hardware_class: str
    queues: list[str]
    concurrency: int
    job_ids: list[int]
    started_at: str
    last_seen: str
    stopped_at: str | None = None

    @classmethod
    def from_worker(cls, worker: Worker, *, alive: bool) -> WorkerPublic:
        return cls(
            **{f: getattr(worker, f) for f in ("id", "host", "name", "kind", "pid", "version", "hardware", "hardware_key", "hardware_class")},
            alive=alive,
            queues=list(worker.queues or []),
            concurrency=worker.concurrency,
            job_ids=list(worker.job_ids or []),
            started_at=iso_utc(worker.started_at),
            last_seen=iso_utc(worker.last_seen),
            stopped_at=iso_utc(worker.stopped_at),
        )


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]  # live ones first, then the gone ones, each most recently seen first
    count: int
    live: int
    timeout_s: float  # a worker not seen for this long is gone (DYNDS_WORKER_TIMEOUT_S)
