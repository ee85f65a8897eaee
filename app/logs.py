"""Logging for `dynds serve` and `dynds worker`: one configuration, and each job's lines kept with the job.

    configure_logging("info", "json")          # once per process (dictConfig); `dynds serve|worker --log-level --log-format`
    with job_context(12):                      # worker.runner.run_job: every line logged meanwhile carries job_id 12
        start_job_log(12, session_factory, settings)   # once the job is claimed: its lines are stored too
        ...
        stop_job_log(12)                       # the last batch written (also done when job_context ends)

- One stdlib configuration (``logging.config.dictConfig``) for both commands: a console handler on stderr
  in ``text`` or ``json`` (one object per line) at ``--log-level`` (DYNDS_LOG_LEVEL), and the job log
  handler. uvicorn's loggers (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``) and Celery's (``celery``)
  have no handlers of their own: their lines go through the root logger, in the same format.
- The job id: ``job_context`` sets a context variable for the thread running the job; ``JobContextFilter``
  (on the console handler) puts it on every record as ``job_id``, shown as ``[job 12]`` in text and as
  ``"job_id": 12`` in JSON (``null`` outside a job).
- Stored job lines: while a job runs in this process, ``JobLogHandler`` hands the records logged in its
  context (INFO and above, whatever the console's level: the root logger is set to at most INFO) to
  the job's ``JobLogCollector``, which writes them to the ``job_log`` table in batches (every
  ``flush_interval_s`` on a thread of its own, and at the job's end). Bounded: at most
  ``job_log_max_lines`` lines per run of a job (the oldest kept; the last one says how many were
  dropped) and ``job_log_max_line_chars`` characters per line (a traceback keeps its end, where the error is).
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

LEVELS = ("critical", "error", "warning", "info", "debug")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job_tag)s: %(message)s"
TRUNCATED = "log truncated: {dropped} later lines dropped (at most {max} lines are stored per run of a job)"
CUT = " … [cut]"

current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("dynds_job_id", default=None)
_chosen: dict[str, str] = {}  # what configure_logging was last given (a Celery child reapplies it)


# ---------------------------------------------------------------- the job id on every line


class StderrHandler(logging.StreamHandler):
    """A console handler that writes to whatever ``sys.stderr`` is when a record comes, not the stream it
    saw when logging was configured (a test's captured stderr, closed since, would raise on every line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ and setStream assign it; stderr is always used
        pass


def record_job_id(record: logging.LogRecord) -> int | None:
    job_id = getattr(record, "job_id", None)  # set by the filter, or passed as extra={"job_id": ...}
    return job_id if job_id is not None else current_job.get()


class JobContextFilter(logging.Filter):
    """Puts the running job's id on each record: ``record.job_id`` (None outside a job) and ``record.job_tag``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = record_job_id(record)
        record.job_tag = f" [job {record.job_id}]" if record.job_id is not None else ""
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None):
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "job_tag"):  # a handler without the filter
            JobContextFilter().filter(record)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job_id, and exc_info when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": record_job_id(record),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


# ---------------------------------------------------------------- configuration


def normalize_level(level: str | int | None) -> str:
    if isinstance(level, int):
        return logging.getLevelName(level).lower()
    level = (level or "info").strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    return level


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """The dictConfig of both commands (see the module docstring)."""
    level = normalize_level(level)
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")
    console = level.upper()
    # The job log handler stores INFO and above whatever the console shows: the root lets INFO through.
    root = logging.getLevelName(min(logging.getLevelName(console), logging.INFO))
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": JobContextFilter}},
        "formatters": {"text": {"()": TextFormatter}, "json": {"()": JsonFormatter}},
        "handlers": {
            "console": {"()": StderrHandler, "formatter": fmt, "filters": ["job"], "level": console},
            "jobs": {"()": job_log_handler},
        },
        "loggers": {
            "uvicorn": {"level": console, **quiet},
            "uvicorn.error": {"level": console, **quiet},
            "uvicorn.access": {"level": console, **quiet},
            "celery": {"level": console, **quiet},
        },
        "root": {"level": root, "handlers": ["console", "jobs"]},
    }


def configure_logging(level: str | None = None, fmt: str | None = None) -> dict[str, str]:
    """Configure this process's logging; unset arguments: what an earlier call chose, else the settings
    (DYNDS_LOG_LEVEL, DYNDS_LOG_FORMAT). Returns {"level", "format"} as applied."""
    if level is None or fmt is None:
        if _chosen:
            level, fmt = level or _chosen["level"], fmt or _chosen["format"]
        else:
            from app.core.config import get_settings

            settings = get_settings()
            level, fmt = level or settings.log_level, fmt or settings.log_format
    logging.config.dictConfig(logging_config(level, fmt))
    logging.captureWarnings(True)
    _chosen.update(level=normalize_level(level), format=fmt)
    return dict(_chosen)


def chosen_logging() -> dict[str, str]:
    """What ``configure_logging`` last applied in this process ({} before it ran): a spawned child (the
    embedded executor's) passes it to its own ``configure_logging``."""
    return dict(_chosen)


# ---------------------------------------------------------------- each job's lines, stored


def clip(text: str, max_chars: int, *, keep_end: bool = False) -> str:
    """``text`` in at most ``max_chars`` characters; cut in the middle (its first line and its end) when ``keep_end``."""
    if len(text) <= max_chars:
        return text
    room = max(0, max_chars - len(CUT))
    if not keep_end:
        return text[:room] + CUT
    first = text.split("\n", 1)[0][: room // 2]
    tail = room - len(first)
    return first + CUT + (text[-tail:] if tail > 0 else "")


class JobLogCollector:
    """One job's log lines in this process: buffered, written in batches (see the module docstring)."""

    def __init__(
        self,
        job_id: int,
        session_factory: Callable[[], AbstractContextManager[Any]],
        *,
        max_lines: int = 2000,
        max_chars: int = 1000,
        flush_interval_s: float = 2.0,
        start_seq: int = 0,
    ):
        if max_lines < 2 or max_chars < 40:
            raise ValueError(f"a job log needs at least 2 lines of 40 characters: {max_lines}, {max_chars}")
        self.job_id = job_id
        self.session_factory = session_factory
        self.max_lines = max_lines
        self.max_chars = max_chars
        self.flush_interval_s = flush_interval_s
        self.seq = start_seq  # the last line's number
        self.kept = 0  # lines of this run
        self.dropped = 0
        self.marker_seq: int | None = None
        self.written = 0
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._formatter = logging.Formatter()
        self._thread = threading.Thread(target=self._run, name=f"dynds-job-log-{job_id}", daemon=True)
        self._thread.start()

    def add(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self._formatter.formatException(record.exc_info)
        row = {
            "job_id": self.job_id,
            "created_at": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelname[:8],
            "logger": record.name[:200],
        }
        with self._lock:
            if self.kept < self.max_lines - 1:
                self.kept += 1
                self.seq += 1
                self._buffer.append({**row, "seq": self.seq, "message": clip(message, self.max_chars, keep_end=bool(record.exc_info))})
            elif self.marker_seq is None:  # the last line says the log was cut; its count is final at close
                self.kept += 1
                self.seq += 1
                self.marker_seq = self.seq
                self.dropped = 1
                self._buffer.append({**row, "seq": self.seq, "level": "WARNING", "logger": __name__, "message": self._marker()})
            else:
                self.dropped += 1

    def _marker(self) -> str:
        return clip(TRUNCATED.format(max=self.max_lines, dropped=self.dropped), self.max_chars)

    def flush(self) -> bool:
        """Write the buffered lines (one INSERT); kept for the next flush if the write fails."""
        from app import crud

        with self._write_lock:
            with self._lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return True
            try:
                with self.session_factory() as session:
                    crud.append_job_logs(session=session, rows=rows)
            except Exception as exc:
                with self._lock:
                    self._buffer = rows + self._buffer
                logging.getLogger(__name__).warning("job %s: cannot store %d log lines (%s); will retry", self.job_id, len(rows), exc)
                return False
            self.written += len(rows)
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def close(self) -> None:
        """The last batch, and the final count of dropped lines in the marker."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.flush()
        if self.marker_seq is not None and self.dropped > 1:
            from app import crud

            try:
                with self.session_factory() as session:
                    crud.set_job_log_message(session=session, job_id=self.job_id, seq=self.marker_seq, message=self._marker())
            except Exception as exc:
                logging.getLogger(__name__).warning("job %s: cannot update the log's truncation line (%s)", self.job_id, exc)


class JobLogHandler(logging.Handler):
    """Routes records logged in a job's context to that job's collector (jobs running in this process only)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.collectors: dict[int, JobLogCollector] = {}
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        job_id = current_job.get()
        if job_id is None:
            return
        collector = self.collectors.get(job_id)
        if collector is None or getattr(self._busy, "on", False):
            return
        self._busy.on = True  # a line logged while storing one is not stored (no loops)
        try:
            collector.add(record)
        except Exception:
            self.handleError(record)
        finally:
            self._busy.on = False

    def close(self) -> None:  # dictConfig closes the handlers it replaces: this one lives with the process
        pass


_HANDLER = JobLogHandler()


def job_log_handler() -> JobLogHandler:
    """The process's one job log handler (dictConfig's factory for it)."""
    return _HANDLER


def _attach() -> None:
    root = logging.getLogger()
    if _HANDLER not in root.handlers:  # run_job in a process that never called configure_logging
        root.addHandler(_HANDLER)


@contextmanager
def job_context(job_id: int) -> Iterator[None]:
    """Every line logged meanwhile (in this thread) carries ``job_id``; the job's stored log ends with it."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        try:
            stop_job_log(job_id)
        finally:
            current_job.reset(token)


def start_job_log(job_id: int, session_factory: Callable[[], AbstractContextManager[Any]], settings=None) -> JobLogCollector:
    """Store job ``job_id``'s lines (those logged in its ``job_context``) from now on, numbered after its
    earlier runs' lines; call it only once this process has claimed the job."""
    from app import crud
    from app.core.config import get_settings

    settings = settings or get_settings()
    stop_job_log(job_id)
    try:
        with session_factory() as session:
            start = crud.last_job_log_seq(session=session, job_id=job_id)
    except Exception:
        start = 0
    collector = JobLogCollector(
        job_id,
        session_factory,
        max_lines=settings.job_log_max_lines,
        max_chars=settings.job_log_max_line_chars,
        flush_interval_s=settings.metrics_flush_interval_s,
        start_seq=start,
    )
    _attach()
    _HANDLER.collectors[job_id] = collector
    return collector


def stop_job_log(job_id: int) -> JobLogCollector | None:
    collector = _HANDLER.collectors.pop(job_id, None)
    if collector is not None:
        collector.close()
    return collector


def one_line(text: str) -> str:
    """A message on one line (a user error's several lines joined)."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


__all__ = [
    "configure_logging",
    "logging_config",
    "job_context",
    "start_job_log",
    "stop_job_log",
    "current_job",
    "JobContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "JobLogCollector",
    "JobLogHandler",
    "clip",
    "one_line",
    "LEVELS",
    "FORMATS",
]
