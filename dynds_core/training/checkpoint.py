"""Checkpoints: everything a job's runs need to continue where they stopped, written so that a crash
while writing never leaves the last good one unreadable.

    saver = Checkpointer("ckpt/", spec.spec_hash, every_s=600)
    saver.due()                                   # True once every_s seconds have passed since the last save
    saver.save(payload)                           # ckpt/ckpt-000003.dynds; the oldest beyond `keep` removed
    ckpt = load_checkpoint("ckpt/", spec.spec_hash)   # the newest valid one (a corrupt one is skipped, named)

A file is a one-line JSON header (format, spec hash, sha256 and length of the payload, where the runs
stood) and the payload, ``torch.save`` of plain containers and tensors, read back with ``weights_only``
(a checkpoint from shared storage runs no code). What a run's part holds is
:meth:`dynds_core.training.loop.TrainingRun.state_dict`; the data order and augmentation need only
(epoch, batch index), since the loader draws them from (seed, epoch). The global RNGs are restored last,
after the runs are rebuilt (torchrl's rule), so that whatever rebuilding drew does not shift them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"DYNDS-CHECKPOINT\n"
KEEP_LAST = 2  # a crash while writing the newest still leaves one good file besides it
_NAME = re.compile(r"^ckpt-(\d{6,})\.dynds$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, failed its checksum, of another spec or format."""


@dataclass
class Checkpoint:
    """A checkpoint read back: its header, its payload, and the file it came from."""

    path: Path
    header: dict[str, Any]
    payload: dict[str, Any] = field(repr=False)


def checkpoint_path(directory: str | Path, index: int) -> Path:
    return Path(directory) / f"ckpt-{index:06d}.dynds"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The checkpoint files of ``directory``, newest first (by their sequence number)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / name) for name in os.listdir(d) if (m := _NAME.match(name))]
    return [p for _, p in sorted(found, reverse=True)]


def encode(payload: dict[str, Any], header: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file: magic, JSON header line (with the payload's sha256 and length), payload."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    head = {**header, "format": FORMAT_VERSION, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    return MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n" + body


def decode(data: bytes, *, source: str = "checkpoint") -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a checkpoint file's bytes; CheckpointError if truncated, corrupt or of another format."""
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{source}: not a DynDS checkpoint (no header)")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise CheckpointError(f"{source}: truncated in its header")
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError as exc:
        raise CheckpointError(f"{source}: unreadable header ({exc})") from None
    if header.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{source}: written in checkpoint format {header.get('format')!r}; this version of dynds reads format {FORMAT_VERSION}")
    body = data[end + 1 :]
    if len(body) != header.get("size"):
        raise CheckpointError(f"{source}: truncated ({len(body)} of {header.get('size')} payload bytes)")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CheckpointError(f"{source}: checksum mismatch (the file is corrupt)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle's and torch's errors alike: a payload holding more than data
        raise CheckpointError(f"{source}: payload unreadable ({type(exc).__name__}: {exc})") from None
    return header, payload


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never part of it:
    a temporary file beside it, fsynced, renamed over it, and the directory fsynced (the rename itself
    survives a power cut)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: str | Path, spec_hash: str | None = None) -> Checkpoint:
    """One checkpoint file, verified; CheckpointError if it is unusable or (with ``spec_hash``) of another spec."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot be read ({exc})") from None
    header, payload = decode(data, source=str(p))
    if spec_hash is not None and header.get("spec_hash") != spec_hash:
        raise CheckpointError(
            f"{p} belongs to spec {header.get('spec_hash')}, not to this one ({spec_hash}): a changed recipe cannot "
            "continue another's run; resume with the spec it was written for, or start afresh without --resume"
        )
    return Checkpoint(p, header, payload)


def load_checkpoint(source: str | Path, spec_hash: str | None = None) -> Checkpoint:
    """The checkpoint to resume from: ``source`` itself if a file, else the newest valid one of the directory.

    A file that fails to read or its checksum is refused with a warning naming it, and the one before is
    used; a checkpoint of another spec stops the search with CheckpointError (the directory is not this job's).
    """
    p = Path(source)
    if p.is_file():
        return read_checkpoint(p, spec_hash)
    candidates = list_checkpoints(p)
    refused = []
    for path in candidates:
        try:
            header, payload = decode(path.read_bytes(), source=str(path))
        except (CheckpointError, OSError) as exc:
            log.warning("checkpoint refused, trying the one before: %s", exc)
            refused.append(path.name)
            continue
        if spec_hash is not None and header.get("spec_hash") != spec_hash:
            return read_checkpoint(path, spec_hash)  # raises, naming both hashes
        return Checkpoint(path, header, payload)
    why = f" (refused: {', '.join(refused)})" if refused else ""
    raise CheckpointError(f"no usable checkpoint in {p}{why}")


class Checkpointer:
    """Writes a job's checkpoints into ``directory`` every ``every_s`` seconds (0: only when asked),
    numbered after those already there, keeping the newest ``keep``.

    A write that fails (a full disk) stops checkpointing with a warning; the job goes on.
    """

    def __init__(self, directory: str | Path, spec_hash: str, every_s: float = 0.0, *, keep: int = KEEP_LAST):
        if keep < 1:
            raise ValueError(f"keep must be at least 1: {keep}")
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0 (0: no periodic checkpoints): {every_s}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spec_hash, self.every_s, self.keep = spec_hash, float(every_s), keep
        # A writer killed mid-write (SIGKILL, power cut) leaves its temporary file: never a checkpoint (only a
        # rename makes one), and one run writes a job's directory at a time, so what is left now is garbage.
        for stale in self.directory.glob(".ckpt-*.tmp"):
            log.warning("removing %s, a checkpoint whose writing was cut off", stale.name)
            stale.unlink(missing_ok=True)
        existing = list_checkpoints(self.directory)
        self.index = int(_NAME.match(existing[0].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        self.last_save = time.monotonic()
        self.enabled = True
        self.saves: list[float] = []  # seconds each save took (bench/checkpoint_cost.py)

    def due(self) -> bool:
        return self.enabled and self.every_s > 0 and time.monotonic() - self.last_save >= self.every_s

    def save(self, payload: dict[str, Any], header: dict[str, Any] | None = None) -> Path | None:
        """Write ``payload`` as the next checkpoint; the path, or None when checkpointing is off or failed."""
        if not self.enabled:
            return None
        t0 = time.perf_counter()
        path = checkpoint_path(self.directory, self.index)
        try:
            data = encode(payload, {**(header or {}), "spec_hash": self.spec_hash, "saved_at": time.time()})
            write_atomic(path, data)
        except OSError as exc:
            log.warning("checkpointing stopped, the job goes on without it: cannot write %s (%s)", path, exc)
            self.enabled = False
            return None
        self.index += 1
        for old in list_checkpoints(self.directory)[self.keep :]:
            old.unlink(missing_ok=True)
        self.last_save = time.monotonic()
        self.saves.append(time.perf_counter() - t0)
        return path


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNGs (Python, NumPy, torch CPU, and CUDA when the job runs there), as plain data and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
