"""The service's settings: one object, read from ``DYNDS_*`` environment variables.

    settings = get_settings()          # cached; tests build their own: Settings(database_url=...)
    settings.database_url              # sqlite:///~/.local/share/dynds/dynds.db unless DYNDS_DATABASE_URL

With no variables set the service is fully embedded: a SQLite file and an in-process executor.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.local/share/dynds"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DYNDS_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    # None: sqlite:///<home>/dynds.db. postgresql:// URLs are served by psycopg 3.
    database_url: str | None = None
    # None: the embedded executor runs jobs inside the serving process (the database is the queue).
    broker_url: str | None = None
    queue: str = "dynds"  # the default queue: jobs that ask for no hardware; every worker listens to it
    # The fleet (app/fleet): each worker writes its row every worker_heartbeat_s; one silent for worker_timeout_s
    # is gone (GET /workers lists the gone ones seen within worker_history_s). A job asking for hardware no live
    # worker serves is queued with a warning, or refused (422) with refuse_unserved (always in embedded mode:
    # no other worker will come).
    worker_heartbeat_s: float = Field(default=5.0, gt=0, le=3600)
    worker_timeout_s: float = Field(default=30.0, gt=0)
    worker_history_s: float = Field(default=24 * 3600.0, ge=0)
    refuse_unserved: bool = False
    # Redis redelivers an unacked message after this long: it must exceed the longest job (seconds).
    celery_visibility_timeout_s: int = 7 * 24 * 3600

    # Directories a spec submitted over HTTP may read data from (env: ':'-separated). None: the defaults below.
    data_dirs: Annotated[list[str] | None, NoDecode] = None
    cache_dir: Path | None = None

    # The documentation site served at /manual/ (built by scripts/docs.sh into the checkout's site/). None:
    # that site/ folder, when this is a source checkout that has built it.
    docs_dir: Path | None = None

    read_requires_token: bool = False
    # The door (`dynds serve`, app/security.py): a server listening beyond loopback with no API token refuses to
    # start unless open_writes says it is meant to be open. Its first token may come as a secret, stored hashed
    # as "bootstrap": the value, or a file holding it (Docker secrets, read at start); not both.
    open_writes: bool = False
    bootstrap_token: SecretStr | None = None
    bootstrap_token_file: Path | None = None
    max_body_bytes: int = 1024 * 1024

    # Torch threads per job in a worker; None leaves the process default (embedded: worker/embedded.py's).
    # (DYNDS_EMBEDDED_API_THREADS and DYNDS_EMBEDDED_SWITCH_INTERVAL_MS are gone, ignored if set: embedded
    # jobs run in a child process of their own, where the API's threads no longer take their GIL.)
    worker_threads: int | None = None
    # Jobs a Celery pool child runs before it is replaced by a fresh one: 1 bounds what a job leaks (CUDA
    # caches, data set caches) to that job; a fleet of many short jobs sets more, since a fresh child costs
    # about 0.3 s of CPU per job (cold imports, connection and caches; bench/fleet_sim.py).
    worker_max_jobs_per_child: int = Field(default=1, ge=1)
    metrics_flush_every: int = 200  # points
    metrics_flush_interval_s: float = 2.0
    # How long a running job may go without reading its cancel flag. Every metrics flush reads it (the flush's
    # UPDATE returns it), so while a job trains this only adds a query when flushes are further apart; a cancel
    # takes effect within about this long. It was the database's main load from a fleet (a query every 0.5 s).
    cancel_poll_s: float = Field(default=2.0, ge=0, le=600)
    # When a job's timing is flagged noisy (dynds_core.trainer.TimingNoise, which says why these defaults):
    # paired and interleaved savings apart by more than this fraction, or full steps' coefficient of variation above this.
    noisy_saving_gap: float = Field(default=0.05, gt=0, le=1)
    noisy_step_cv: float = Field(default=0.25, gt=0, le=10)
    # When a job is flagged contended (dynds_core.trainer.Contention, which says why these defaults): its runs'
    # threads waited for a CPU more than this share of their steps' time, or (where the wait is unknown) got
    # less than this share of it on a CPU.
    contended_wait_share: float = Field(default=0.15, gt=0, le=1)
    contended_cpu_share: float = Field(default=0.8, gt=0, le=1)

    # Jobs left `running` by a process that died, stopped by a shutdown or whose server restarted: "resume"
    # (default: requeued, the next attempt continues from the job's last checkpoint), "requeue" (requeued,
    # from scratch: its checkpoints deleted) or "fail" (see app.crud.give_up_run).
    recover_policy: Literal["resume", "requeue", "fail"] = "resume"
    # With "resume" / "requeue": a job is started at most this many times (job.attempts), then failed with the
    # reason. A graceful stop (SIGTERM) requeues without using up an attempt.
    max_attempts: int = Field(default=3, ge=1, le=100)
    # Celery mode: a job still queued (never claimed) this long after it was last sent is sent again (its
    # message may be lost: a broker restarted without persistence, an API that died between commit and send);
    # then with a doubling back-off. The API looks every redispatch_check_interval_s, and once at start-up.
    redispatch_after_s: float = Field(default=300.0, gt=0)
    redispatch_check_interval_s: float = Field(default=30.0, gt=0)
    # A running job whose worker has not written a heartbeat (claim, every metrics flush) for this long
    # is failed as interrupted; the API looks every stale_check_interval_s (seconds, both modes).
    stale_job_after_s: float = 600.0
    stale_check_interval_s: float = 60.0

    # Service-level bounds on what one HTTP-submitted job may cost (JobSpec has looser, physical bounds).
    max_epochs: int = 500
    max_batch_size: int = 4096
    max_train_subset: int = 2_000_000
    max_val_subset: int = 1_000_000
    max_synthetic_size: int = 100_000
    max_image_size: int = 512
    max_sweep_points: int = 1000
    # Submitted specs at the door (app/api/spec_policy.py): nesting depth of a spec or sweep base, whether
    # `data.download: true` may fetch from the internet, and devices: an override of what the live workers
    # offer (env: ','-separated, e.g. "cpu,cuda"; a device not in it is refused, one in it is accepted with no
    # live worker, e.g. GPU workers started on demand; None: the live workers decide). POST /specs/validate's estimate runs
    # on the meta device within estimate_timeout_s and refuses a spec predicted to need more memory.
    max_spec_depth: int = Field(default=32, ge=4, le=256)
    allow_download: bool = False
    devices: Annotated[list[str] | None, NoDecode] = None
    estimate_timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_predicted_memory_bytes: int = Field(default=64 * 1024**3, ge=1)
    # What loading one data set may cost (dynds_core.data.DataLimits, applied by the worker with the data
    # dirs through dynds_core.data.data_policy): pixels per image (from its header), bytes per file or
    # archive member, bytes streamed or decoded in all, images, and the decode cache on disk.
    max_image_pixels: int = Field(default=4096 * 4096, ge=1)
    max_file_bytes: int = Field(default=256 * 1024**2, ge=1)
    max_total_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_images: int = Field(default=2_000_000, ge=1)
    max_cache_bytes: int = Field(default=8 * 1024**3, ge=1)

    # Each succeeded job's trained weights (app/artifacts.py): <artifact_dir>/<job id>/model.pt; None:
    # <home>/artifacts. In Celery mode workers write and the API reads it: shared storage, seen by all.
    # A state_dict over max_artifact_bytes is not stored (the job still succeeds, the worker log says why);
    # each store deletes the artifacts older than artifact_retention_days and beyond the newest
    # artifact_keep_last (None: no limit).
    artifact_dir: Path | None = None
    max_artifact_bytes: int = Field(default=2 * 1024**3, ge=0)
    artifact_retention_days: float | None = Field(default=None, gt=0)
    artifact_keep_last: int | None = Field(default=None, ge=1)
    # A running job's checkpoints (<artifact_dir>/<job id>/checkpoints, so as shared as the weights) are
    # deleted when the job ends (succeeded, failed, cancelled) unless this keeps them.
    keep_checkpoints: bool = False
    # The storage tiers of a job's record (app/storage): at most this many step points per run in SQL (every
    # step of a shorter run, else buckets of mean/min/max; None: every step), every step in the job's Parquet
    # archive steps.parquet beside its weights (written in chunks of step_archive_chunk_rows steps).
    metrics_max_step_points: int | None = Field(default=2000, ge=4)
    step_archive: bool = True
    step_archive_chunk_rows: int = Field(default=50_000, ge=1)
    # Retention of finished jobs' records, by days since they finished (None: kept): their step archives,
    # their step points in SQL (the epoch points and the job's result stay), the checkpoints left beside them
    # (keep_checkpoints, or a worker that died). `dynds retention [--dry-run]` applies them, a queued or
    # running job never touched; the weights keep artifact_retention_days / artifact_keep_last above.
    step_archive_retention_days: float | None = Field(default=None, gt=0)
    metric_points_retention_days: float | None = Field(default=None, gt=0)
    checkpoint_retention_days: float | None = Field(default=None, gt=0)

    # Server-sent events: how often the stream looks for news, and a keep-alive comment.
    events_poll_interval_s: float = 0.5
    events_heartbeat_s: float = 15.0
    # A stream with nothing new backs off (doubling) from events_poll_interval_s up to this (seconds).
    events_idle_poll_max_s: float = Field(default=2.0, gt=0)
    # Streams open at once per process; one more is refused with 503 and Retry-After (seconds).
    events_max_streams: int = Field(default=400, ge=1)
    events_retry_after_s: int = Field(default=5, ge=1)
    # Threads the streams' database reads may hold at once (their own limiter: the rest of the API keeps its pool).
    events_db_threads: int = Field(default=2, ge=1)
    # Metric points read and sent per page while a stream replays history (one query, one write each).
    events_page_points: int = Field(default=500, ge=1, le=10_000)
    # Full pages of history kept for other streams replaying the same job (MiB; 0: none; emptied when no stream is open).
    events_page_cache_mb: float = Field(default=16.0, ge=0)
    # GET /leaderboard is served from a cache while the set of succeeded jobs is unchanged.
    leaderboard_cache: bool = True
    # `dynds serve`'s API processes on its one port (its --workers); more than one needs a broker.
    serve_workers: int = Field(default=1, ge=1, le=64)
    # At start-up, fill that cache in the background (the tracks list, the whole board's recommendation): at a
    # million jobs their first build takes about 15 s, which the first visitor would otherwise wait for.
    leaderboard_warm: bool = True
    # Logging of `dynds serve` and `dynds worker` (app/logs.py; their --log-level and --log-format win):
    # the console's level and format ("text", or "json": one object per line), and each job's stored
    # log lines (INFO and above, whatever the console's level): lines per run of a job, characters per line.
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"
    job_log_max_lines: int = Field(default=2000, ge=2, le=1_000_000)
    job_log_max_line_chars: int = Field(default=1000, ge=40, le=1_000_000)

    @field_validator("data_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value):
        if isinstance(value, str):
            return [d for d in value.split(":") if d.strip()]
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, value):
        if isinstance(value, str):
            return [d.strip() for d in value.split(",") if d.strip()]
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value):
        return {"warn": "warning"}.get(value.strip().lower(), value.strip().lower()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = Path(os.path.expanduser(str(self.home)))
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'dynds.db'}"
        if self.data_dirs is None:
            self.data_dirs = [str(self.home / "data"), os.path.expanduser("~/.cache/dynds/data"), "/usr/share/datasets"]
        if self.cache_dir is None:
            self.cache_dir = self.home / "cache"
        self.artifact_dir = Path(os.path.expanduser(str(self.artifact_dir))) if self.artifact_dir else self.home / "artifacts"
        if self.bootstrap_token is not None and self.bootstrap_token_file is not None:
            raise ValueError("set DYNDS_BOOTSTRAP_TOKEN or DYNDS_BOOTSTRAP_TOKEN_FILE, not both")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        # Heartbeats come with metric flushes: a shorter limit would fail jobs that are running fine.
        floor = max(30.0, 5 * self.metrics_flush_interval_s)
        if self.stale_job_after_s < floor:
            raise ValueError(f"stale_job_after_s must be at least {floor:g} s (30 s and 5 metric flush intervals), got {self.stale_job_after_s:g}")
        # Two missed heartbeats are a hiccup (a busy database), not a death.
        if self.worker_timeout_s < 2 * self.worker_heartbeat_s:
            raise ValueError(
                f"worker_timeout_s ({self.worker_timeout_s:g} s) must be at least twice worker_heartbeat_s ({self.worker_heartbeat_s:g} s)"
            )
        if self.stale_check_interval_s <= 0:
            raise ValueError(f"stale_check_interval_s must be > 0 seconds, got {self.stale_check_interval_s:g}")
        return self

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    def bootstrap_secret(self) -> str | None:
        """The bootstrap token given, or None (unset or blank): the value, or the file's content read now
        (around it, whitespace such as a trailing newline is dropped). An unreadable file is a ValueError."""
        if self.bootstrap_token_file is not None:
            path = Path(os.path.expanduser(str(self.bootstrap_token_file)))
            try:
                value = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"DYNDS_BOOTSTRAP_TOKEN_FILE {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        else:
            value = self.bootstrap_token.get_secret_value() if self.bootstrap_token is not None else ""
        return value.strip() or None

    @property
    def data_limits(self):
        """The data limits as dynds_core takes them (``load_dataset(limits=...)``, ``data_policy``)."""
        from dynds_core.data.limits import DataLimits

        return DataLimits(
            max_image_pixels=self.max_image_pixels, max_file_bytes=self.max_file_bytes, max_total_bytes=self.max_total_bytes,
            max_images=self.max_images, max_cache_bytes=self.max_cache_bytes,
        )  # fmt: skip

    @property
    def allowed_data_dirs(self) -> list[str]:
        """The data dirs resolved (symlinks, `..`), as the policy compares them."""
        return [os.path.realpath(os.path.expanduser(d)) for d in self.data_dirs or []]


@lru_cache
def get_settings() -> Settings:
    return Settings()
