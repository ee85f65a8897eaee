"""What a loader may read and how much: the allowed roots and the size limits, given by the caller.

    ds = load_dataset(spec.data, allowed_roots=["/srv/data"], limits=DataLimits(max_image_pixels=1 << 20))
    with data_policy(allowed_roots=settings.allowed_data_dirs, limits=limits):   # e.g. around train(spec)
        ...                                                                       # every load_dataset in here

Every file a loader reads (a data root, each image of a folder, each CIFAR batch, each IDX file) is
resolved (symlinks at any depth, ``..``) and must lie inside one of ``allowed_roots`` when they are
given; None allows everything (the command line). The limits are checked before the work they bound:
a file's size from its stat or its tar header before reading it, an image's pixels from its header
before decoding it, the decoded total from the first image's size before decoding any.

This module imports neither torch nor Pillow: decoding workers import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

MiB, GiB = 1024**2, 1024**3


@dataclass(frozen=True)
class DataLimits:
    """Upper bounds on what loading one data set may cost (defaults: ample for CIFAR, Fashion-MNIST and
    ImageNet-sized folders; far below what a crafted file can ask for)."""

    max_image_pixels: int = 4096 * 4096  # width x height of one image, read from its header before decoding
    max_file_bytes: int = 256 * MiB  # one file or archive member read into memory (CIFAR-100's train: 155 MB)
    max_total_bytes: int = 2 * GiB  # an archive's members streamed, or the decoded arrays of a data set
    max_images: int = 2_000_000  # images in one folder or archive
    max_cache_bytes: int = 8 * GiB  # the decode cache on disk, every entry: past it a new entry is not written

    def __post_init__(self) -> None:
        for name in ("max_image_pixels", "max_file_bytes", "max_total_bytes", "max_images", "max_cache_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DataLimits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = DataLimits()

_POLICY: contextvars.ContextVar[tuple[tuple[str, ...] | None, DataLimits | None]] = contextvars.ContextVar("dynds_data_policy", default=(None, None))


@contextlib.contextmanager
def data_policy(*, allowed_roots: Sequence[str | os.PathLike] | None = None, limits: DataLimits | None = None) -> Iterator[None]:
    """Apply ``allowed_roots`` and ``limits`` to every :func:`load_dataset` inside (that does not pass its own)."""
    token = _POLICY.set((normalize_roots(allowed_roots), limits))
    try:
        yield
    finally:
        _POLICY.reset(token)


def current_policy() -> tuple[tuple[str, ...] | None, DataLimits | None]:
    return _POLICY.get()


def normalize_roots(roots: Sequence[str | os.PathLike] | None) -> tuple[str, ...] | None:
    """The roots resolved as the checks compare them; None stays None (no restriction)."""
    if roots is None:
        return None
    return tuple(os.path.realpath(os.path.expanduser(os.fspath(r))) for r in roots)


def is_inside(path: str | os.PathLike, roots: Sequence[str]) -> bool:
    real = os.path.realpath(os.fspath(path))
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def check_inside(path: str | os.PathLike, roots: Sequence[str] | None, what: str = "the file") -> None:
    """DataError unless ``path`` resolves inside one of ``roots`` (already normalized); None: no check."""
    if roots is None:
        return
    if not is_inside(path, roots):
        real = os.path.realpath(os.fspath(path))
        raise DataError(
            f"{what} {path} resolves to {real}, outside the allowed data directories ({', '.join(roots) or 'none'}); "
            "a data set may only read files inside them (symlinks are followed before this check)."
        )


def find_escape(folder: str | os.PathLike, roots: Sequence[str], *, max_entries: int) -> tuple[str, str] | None:
    """(path, where it resolves) of the first entry under ``folder`` that resolves outside ``roots``, or None.

    Every entry is looked at, hidden ones too, and symlinks at any depth are resolved; a symlinked folder
    that stays inside is walked as well (each real folder once, so a symlink loop ends). ``folder`` itself
    must already resolve inside ``roots``: an entry that is no symlink lies where its folder does. Past
    ``max_entries`` entries, DataError (a folder that large is refused, not walked for ever).
    """
    seen: set[str] = set()
    stack = [os.fspath(folder)]
    entries = 0
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(current) as it:
                children = list(it)
        except OSError:
            continue  # unreadable: the loader reports it when it gets there
        for entry in children:
            entries += 1
            if entries > max_entries:
                raise DataError(f"{folder} holds more than {max_entries} entries; it is not searched further (point data.root at the data set).")
            if entry.is_symlink():
                if not is_inside(entry.path, roots):
                    return entry.path, os.path.realpath(entry.path)
                if os.path.isdir(entry.path):
                    stack.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return None


def check_file_size(path: Path, limits: DataLimits, what: str = "the file") -> int:
    """The size of ``path``; DataError naming it when larger than ``limits.max_file_bytes``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}.") from None
    if size > limits.max_file_bytes:
        raise DataError(
            f"{what} {path} is {size} bytes, more than the limit of {limits.max_file_bytes} bytes per file; "
            "it is not read (raise the limit if the file is genuine)."
        )
    return size


def read_bounded(path: Path, limits: DataLimits, what: str = "the file") -> bytes:
    """The bytes of ``path``, never more than ``limits.max_file_bytes`` read (the file may grow after a stat)."""
    check_file_size(path, limits, what)
    with open(path, "rb") as f:
        data = f.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise DataError(f"{what} {path} is larger than the limit of {limits.max_file_bytes} bytes per file; it is not read.")
    return data
