"""A job's trained weights as a file the service keeps: written by the worker, served by the API.

    store_result(session, job_id=12, result=result, attempt=1, spec=spec, settings=settings)  # finish_job, with the weights

The file is ``dynds_core.reduced.full_state_dict(result.model)`` (tensors on the CPU) saved with ``torch.save``
at ``<settings.artifact_dir>/<job id>/attempt-<n>/model.pt``; it loads with ``torch.load(path, weights_only=True)``
into ``dynds_core.create_model(**recipe)`` (``strict=True``), the recipe stored with it. It is written to a
temporary name in the same directory, fsynced, renamed into place and its directory fsynced, before the
row naming it (path relative to the artifact dir, size, sha256 of the bytes on disk) is committed in
the transaction that marks the job succeeded: a succeeded job never points at a half-written file.

The weights never fail a job: a state_dict over ``settings.max_artifact_bytes``, a full disk or any other
error is logged (the worker's log, job id first) and the job succeeds without an artifact. Each store then
applies retention (``artifact_retention_days``, ``artifact_keep_last``): rows first, then their files.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlmodel import Session

from app import crud
from app.core.config import Settings
from app.models import Artifact

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CHECKPOINTS = "checkpoints"


class ArtifactError(Exception):
    """The weights cannot be kept (too large, no loading recipe): the message says why."""


def artifact_root(settings: Settings) -> Path:
    return Path(settings.artifact_dir or settings.home / "artifacts")


def checkpoint_dir(settings: Settings, job_id: int) -> Path:
    """Where a running job's checkpoints go: beside its weights, so storage the API and every worker share
    (the next attempt of an interrupted job, on any worker, continues from them)."""
    return artifact_root(settings) / str(int(job_id)) / CHECKPOINTS


def remove_checkpoints(settings: Settings, job_id: int, *, ended: bool = True, logger: logging.Logger = log) -> bool:
    """Delete a job's checkpoints: when it ends (``ended``: unless ``settings.keep_checkpoints``), or because its
    next attempt starts from scratch. True when there were some."""
    path = checkpoint_dir(settings, job_id)
    if (ended and settings.keep_checkpoints) or not path.exists():
        return False
    files = sum(1 for p in path.iterdir() if p.suffix == ".dynds")
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the job's directory, when nothing else is in it
    if files:
        logger.info("job %s: %d checkpoint%s deleted (%s)", job_id, files, "" if files == 1 else "s", path)
    return True


def resolve(settings: Settings, rel_path: str) -> Path:
    """The file a row's (relative) path names, refusing anything outside the artifact dir."""
    root = artifact_root(settings).resolve()
    path = (root / rel_path).resolve()
    if root not in path.parents:
        raise ArtifactError(f"artifact path {rel_path!r} lies outside the artifact directory")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory fds: the rename stands, unsynced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> tuple[int, str]:
    """``write(f)`` into a temporary file beside ``path``, fsync, rename over ``path``, fsync the directory.
    Returns (size, sha256) of the file as it lies on disk. A failure leaves no file behind (nor a temporary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        size, digest = sha256_of(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return size, digest


def model_recipe(model: Any, arch: str, small_input: bool) -> dict[str, Any]:
    """What ``create_model`` needs to rebuild ``model``: the arch and small_input from the spec, in_channels
    and num_classes read off the model (its first convolution, its last linear layer), and checked by
    building that model on the meta device: every state_dict key and shape must match."""
    import torch
    from torch import nn

    from dynds_core.models import create_model
    from dynds_core.reduced import full_state_dict

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not convs or not linears:
        raise ArtifactError(f"cannot tell how to rebuild the {arch} model (no convolution or no linear layer)")
    recipe = {"arch": arch, "num_classes": int(linears[-1].out_features), "in_channels": int(convs[0].in_channels), "small_input": bool(small_input)}
    with torch.device("meta"):
        fresh = create_model(recipe["arch"], num_classes=recipe["num_classes"], in_channels=recipe["in_channels"], small_input=recipe["small_input"])
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in full_state_dict(model).items()}
    if want != have:
        differ = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
        raise ArtifactError(f"create_model({recipe}) does not match the trained model (first differences: {', '.join(differ[:3])})")
    return recipe


def state_dict_bytes(state: dict[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def save_model(settings: Settings, *, job_id: int, attempt: int, model: Any, arch: str, small_input: bool) -> dict[str, Any]:
    """Write the model's weights for ``job_id``; returns the Artifact columns (no job_id). Raises
    ArtifactError when they are not to be kept (over the size limit, no recipe), OSError on the disk's errors."""
    import torch

    from dynds_core.reduced import full_state_dict

    recipe = model_recipe(model, arch, small_input)
    state = {k: v.detach().cpu() for k, v in full_state_dict(model).items()}
    limit = settings.max_artifact_bytes
    estimate = state_dict_bytes(state)
    if estimate > limit:
        raise ArtifactError(f"its state_dict is {estimate:,} bytes, over DYNDS_MAX_ARTIFACT_BYTES={limit:,}")
    rel = f"{job_id}/attempt-{attempt}/{MODEL_FILE}"
    path = artifact_root(settings) / rel
    size, digest = write_atomic(path, lambda f: torch.save(state, f))
    if size > limit:  # the tensors fitted, the file with its framing does not
        remove_file(settings, rel)
        raise ArtifactError(f"its file is {size:,} bytes, over DYNDS_MAX_ARTIFACT_BYTES={limit:,}")
    return {"name": MODEL_FILE, "path": rel, "size_bytes": size, "sha256": digest, "recipe": recipe}


def remove_file(settings: Settings, rel_path: str) -> None:
    """Remove an artifact's file and the directories it leaves empty (up to the artifact dir); a missing file is fine."""
    root = artifact_root(settings).resolve()
    path = resolve(settings, rel_path)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty (another attempt's file), or gone
            break
        parent = parent.parent


def remove_files(settings: Settings, rel_paths: list[str], *, what: str, logger: logging.Logger = log) -> None:
    """The files of artifact rows retention has deleted (committed first, so no row names a missing file); a
    file that cannot be removed is logged, not raised: its row is gone either way."""
    for rel in rel_paths:
        try:
            remove_file(settings, rel)
        except (OSError, ArtifactError):
            logger.warning("%s %s: row deleted by retention, file not removed", what, rel, exc_info=True)


def remove_job_files(settings: Settings, job_id: int, artifacts: list[Artifact]) -> None:
    """After a job's rows are deleted: its files, then its whole directory (files of lost runs included)."""
    for a in artifacts:
        remove_file(settings, a.path)
    job_dir = resolve(settings, str(int(job_id)))
    shutil.rmtree(job_dir, ignore_errors=True)


def apply_retention(session: Session, settings: Settings, *, logger: logging.Logger = log) -> list[int]:
    """Delete the artifacts past ``artifact_retention_days`` or beyond the newest ``artifact_keep_last``:
    their rows (committed first, so no row names a file that is gone), then their files. Returns their ids."""
    days, keep = settings.artifact_retention_days, settings.artifact_keep_last
    if days is None and keep is None:
        return []
    older_than = timedelta(days=days) if days is not None else None
    expired = crud.expired_artifacts(session=session, older_than=older_than, keep_last=keep, name=MODEL_FILE)
    if not expired:
        return []
    gone = [(a.id, a.job_id, a.path) for a in expired]
    crud.delete_artifact_rows(session=session, ids=[i for i, _, _ in gone])
    remove_files(settings, [rel for _, _, rel in gone], what="weights", logger=logger)
    logger.info("retention: deleted artifacts %s", [i for i, _, _ in gone])
    return [i for i, _, _ in gone]


def store_result(
    session: Session,
    *,
    job_id: int,
    result: Any,
    attempt: int | None,
    spec: Any,
    settings: Settings,
    logger: logging.Logger = log,
    more: tuple[dict[str, Any], ...] = (),
) -> bool:
    """``crud.finish_job`` with the job's weights kept: the file first, then its row in the finishing
    transaction, with those of ``more`` (files already written: the step archive). Returns finish_job's
    answer (False: the job was no longer this run's; no row, no file). Keeping the files never fails the
    job: every failure is logged and the job succeeds without them."""
    model = None if result.cancelled else result.model
    saved = None
    if model is not None:
        try:
            saved = save_model(settings, job_id=job_id, attempt=attempt or 0, model=model, arch=spec.model.arch, small_input=spec.model.small_input)
        except ArtifactError as exc:
            logger.warning("job %s: model weights not stored: %s; the job succeeds without them", job_id, exc)
        except Exception as exc:
            logger.warning("job %s: model weights not stored (%s: %s); the job succeeds without them", job_id, type(exc).__name__, exc, exc_info=True)
    files = [f for f in (saved, *more) if f is not None]
    if not files:
        return crud.finish_job(session=session, job_id=job_id, result=result, attempt=attempt)
    try:
        row = crud.finish_job_with_artifact(session=session, job_id=job_id, result=result, artifact=files[0], attempt=attempt, more=tuple(files[1:]))
    except Exception as exc:
        session.rollback()
        for f in files:
            _remove_quietly(settings, f["path"], logger)
        names = ", ".join(f["name"] for f in files)
        logger.warning("job %s: %s not recorded (%s: %s); the job succeeds without them", job_id, names, type(exc).__name__, exc, exc_info=True)
        return crud.finish_job(session=session, job_id=job_id, result=result, attempt=attempt)
    if row is None:
        for f in files:
            _remove_quietly(settings, f["path"], logger)
        return False
    if saved is None:
        return True
    logger.info("job %s: model weights stored (%s bytes, sha256 %s)", job_id, saved["size_bytes"], saved["sha256"])
    try:
        apply_retention(session, settings, logger=logger)
    except Exception:
        session.rollback()
        logger.warning("artifact retention failed; the next store tries again", exc_info=True)
    return True


def _remove_quietly(settings: Settings, rel: str, logger: logging.Logger) -> None:
    try:
        remove_file(settings, rel)
    except Exception:
        logger.warning("artifact file %s not removed", rel, exc_info=True)
