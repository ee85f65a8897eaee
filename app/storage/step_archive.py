"""Every step of a job as one Parquet file beside its weights: ``<artifact_dir>/<job id>/steps.parquet``.

    archive = StepArchive(step_chunk_dir(settings, job_id), attempt=2)   # the worker, during training
    archive.append(point)            # each step's point (worker.sink.metric_point)
    archive.flush()                  # at a checkpoint: the steps it covers are on disk before it is
    prune_chunks(directory, kept)    # a resumed attempt first drops what the dead one wrote past its checkpoint
    keep_step_archive(session, settings, job_id)   # the job ended: one file, registered as its artifact

One row per step: run, epoch, step, train_time_s, loss, acc (percent), lr, batch_type, step_time_s, and the
attempt that ran it; zstd-compressed (``WRITE_OPTIONS``), in row groups. Read it with ``pandas.read_parquet`` or
``pyarrow.parquet.read_table``.

While the job runs its steps go to chunk files, ``<job id>/steps/chunk-a<attempt>-<n>.parquet``, each written
whole (temporary name, fsync, rename) every ``chunk_rows`` steps and at each checkpoint: a worker holds at
most one chunk in memory, and a killed one leaves only whole chunks. A resumed attempt deletes the rows of
earlier attempts past its checkpoint (``prune_chunks``, as ``crud.resume_run`` deletes their SQL points),
so no step is stored twice or lost. When the job ends the chunks are merged, in order and one at a time,
into ``steps.parquet`` (the rows of an attempt given up on that a later attempt ran again left out), the
file is recorded as the job's artifact ``steps.parquet`` and the chunks are deleted.

pyarrow comes with ``dynds[service]``; without it (a library-only install) no archive is written and the
worker says so once per job.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app import crud
from app.artifacts import artifact_root, write_atomic
from app.core.config import Settings

log = logging.getLogger(__name__)

ARCHIVE_FILE = "steps.parquet"
CHUNKS = "steps"
NO_PYARROW = "pyarrow is not installed: the per-step archive (steps.parquet) is not written; install dynds[service]"
# The columns, in order; values missing from a point are nulls.
COLUMNS = ("run", "epoch", "step", "train_time_s", "loss", "acc", "lr", "batch_type", "step_time_s", "attempt")
_CHUNK = re.compile(r"chunk-a(\d+)-(\d+)\.parquet$")
# zstd over encodings that suit each column: the floats' bytes split into streams (their exponents repeat),
# the steps as deltas, the run and batch type as dictionaries: ~23 bytes a step, half of plain zstd's.
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["run", "batch_type"],
    "column_encoding": {
        **{c: "BYTE_STREAM_SPLIT" for c in ("train_time_s", "loss", "acc", "lr", "step_time_s")},
        **{c: "DELTA_BINARY_PACKED" for c in ("epoch", "step", "attempt")},
    },
}


def have_pyarrow() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("run", pa.dictionary(pa.int8(), pa.string())),
            ("epoch", pa.int32()),
            ("step", pa.int64()),
            ("train_time_s", pa.float64()),
            ("loss", pa.float64()),
            ("acc", pa.float64()),
            ("lr", pa.float64()),
            ("batch_type", pa.dictionary(pa.int8(), pa.string())),
            ("step_time_s", pa.float64()),
            ("attempt", pa.int16()),
        ]
    )


def step_chunk_dir(settings: Settings, job_id: int) -> Path:
    return artifact_root(settings) / str(int(job_id)) / CHUNKS


def chunk_files(directory: Path) -> list[Path]:
    """The chunks in the order they were written: by attempt, then by number."""
    found = [(m, p) for p in directory.glob("chunk-a*.parquet") if (m := _CHUNK.search(p.name))] if directory.exists() else []
    return [p for m, p in sorted(found, key=lambda mp: (int(mp[0].group(1)), int(mp[0].group(2))))]


def _attempt_of(path: Path) -> int:
    m = _CHUNK.search(path.name)
    return int(m.group(1)) if m else 0


def _write_table(path: Path, table: Any) -> tuple[int, str]:
    import pyarrow.parquet as pq

    return write_atomic(path, lambda f: pq.write_table(table, f, **WRITE_OPTIONS))


class StepArchive:
    """One attempt's steps, written as chunk files of at most ``chunk_rows`` rows (columns kept as lists)."""

    def __init__(self, directory: Path, *, attempt: int, chunk_rows: int = 50_000):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1: {chunk_rows}")
        self.directory = directory
        self.attempt = attempt
        self.chunk_rows = chunk_rows
        self.rows_written = 0
        self._cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        # Numbered after this attempt's chunks already there (a process that ran this attempt before).
        mine = [int(m.group(2)) for p in chunk_files(directory) if (m := _CHUNK.search(p.name)) and int(m.group(1)) == attempt]
        self._seq = 1 + max(mine, default=0)

    def append(self, point: dict[str, Any]) -> None:
        v = point.get("values") or {}
        c = self._cols
        c["run"].append(point["run"])
        c["epoch"].append(point.get("epoch"))
        c["step"].append(point.get("step"))
        c["train_time_s"].append(point.get("train_time_s"))
        for key in ("loss", "acc", "lr", "batch_type", "step_time_s"):
            c[key].append(v.get(key))
        c["attempt"].append(self.attempt)
        if len(c["step"]) >= self.chunk_rows:
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered steps as the next chunk; the chunk's path, or None when there were none."""
        n = len(self._cols["step"])
        if not n:
            return None
        import pyarrow as pa

        table = pa.Table.from_pydict(self._cols, schema=_schema())
        path = self.directory / f"chunk-a{self.attempt:03d}-{self._seq:06d}.parquet"
        _write_table(path, table)
        self._seq += 1
        self.rows_written += n
        self._cols = {c: [] for c in COLUMNS}
        return path


def prune_chunks(directory: Path, kept: dict[str, tuple[int, int] | None]) -> int:
    """Before a resumed attempt runs: delete the rows earlier attempts wrote that its checkpoint does not cover
    (``kept`` as for ``crud.resume_run``: None keeps a run whole, (step, epoch) its steps before ``step``, a run
    not named loses all). Chunks are rewritten whole or deleted. Returns the rows deleted."""
    files = chunk_files(directory)
    if not files:
        return 0
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dropped = 0
    for path in files:
        table = pq.read_table(path)
        runs = table.column("run").cast(pa.string())
        keep = pa.array([False] * table.num_rows)
        for run, where in kept.items():
            this = pc.equal(runs, run)
            if where is not None:
                this = pc.and_(this, pc.less(table.column("step"), where[0]))
            keep = pc.or_(keep, this)
        left = int(pc.sum(keep).as_py() or 0)
        if left == table.num_rows:
            continue
        dropped += table.num_rows - left
        if left == 0:
            path.unlink(missing_ok=True)
        else:
            _write_table(path, table.filter(keep))
    return dropped


def merge_chunks(directory: Path, out: Path) -> tuple[int, int, str] | None:
    """The chunks merged in order into ``out`` (one row group per chunk, one chunk in memory at a time):
    (rows, size, sha256), or None when there are none. A later attempt wins: rows of an earlier attempt at
    or past the first step a later one wrote for that run are left out (an attempt given up on that went on)."""
    files = chunk_files(directory)
    if not files:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # The first step each attempt wrote for each run.
    first: dict[tuple[int, str], int] = {}
    for path in files:
        t = pq.read_table(path, columns=["run", "step"])
        a = _attempt_of(path)
        for run in pc.unique(t.column("run").cast(pa.string())).to_pylist():
            lo = pc.min(t.filter(pc.equal(t.column("run").cast(pa.string()), run)).column("step")).as_py()
            if lo is not None:
                first[(a, run)] = min(first.get((a, run), lo), lo)
    rows = 0

    def write(f: Any) -> None:
        nonlocal rows
        with pq.ParquetWriter(f, _schema(), **WRITE_OPTIONS) as writer:
            for path in files:
                table = pq.read_table(path)
                a = _attempt_of(path)
                runs = table.column("run").cast(pa.string())
                for run in pc.unique(runs).to_pylist():
                    later = [s for (b, r), s in first.items() if r == run and b > a]
                    if later:
                        drop = pc.and_(pc.equal(runs, run), pc.greater_equal(table.column("step"), min(later)))
                        table = table.filter(pc.invert(drop))
                        runs = table.column("run").cast(pa.string())
                if table.num_rows:
                    writer.write_table(table.cast(_schema()))
                    rows += table.num_rows

    size, digest = write_atomic(out, write)
    return rows, size, digest


def remove_chunks(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def merge_step_archive(settings: Settings, job_id: int, *, logger: logging.Logger = log) -> dict[str, Any] | None:
    """The job's chunks merged into ``steps.parquet`` (the chunks stay until its row exists): the Artifact
    columns for it (no job_id), or None (no chunks, no pyarrow, or an error: logged, never raised)."""
    directory = step_chunk_dir(settings, job_id)
    if not chunk_files(directory):
        return None
    if not have_pyarrow():
        logger.warning("job %s: %s", job_id, NO_PYARROW)
        return None
    rel = f"{int(job_id)}/{ARCHIVE_FILE}"
    try:
        merged = merge_chunks(directory, artifact_root(settings) / rel)
    except Exception as exc:
        logger.warning("job %s: step archive not merged (%s: %s); its chunks stay in %s", job_id, type(exc).__name__, exc, directory, exc_info=True)
        return None
    if merged is None:
        return None
    rows, size, digest = merged
    recipe = {"format": "parquet", "rows": rows, "columns": list(COLUMNS)}
    return {"name": ARCHIVE_FILE, "path": rel, "size_bytes": size, "sha256": digest, "recipe": recipe}


def keep_step_archive(session: Session, settings: Settings, job_id: int, *, logger: logging.Logger = log) -> bool:
    """A job that ended: its step archive merged and recorded as its artifact (the row after the file; already
    recorded in its finishing transaction: ``store_result(more=...)``), then its chunks deleted. Never raises:
    the job's outcome stands without it. True when the job has its archive."""
    directory = step_chunk_dir(settings, job_id)
    if not chunk_files(directory):
        return False
    if crud.job_artifact(session=session, job_id=job_id, name=ARCHIVE_FILE) is None:
        artifact = merge_step_archive(settings, job_id, logger=logger)
        if artifact is None:
            return False
        try:
            crud.record_artifact(session=session, job_id=job_id, artifact=artifact)
        except Exception as exc:
            session.rollback()
            logger.warning(
                "job %s: step archive not recorded (%s: %s); its chunks stay in %s", job_id, type(exc).__name__, exc, directory, exc_info=True
            )
            return False
    remove_chunks(directory)
    logger.info("job %s: step archive stored (%s)", job_id, ARCHIVE_FILE)
    return True
