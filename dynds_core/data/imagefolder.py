"""Image folders (a directory or a .tar.gz) with train/ and test/ (or val/) splits of class folders,
decoded once (JPEGs by torchvision's batched ``decode_jpeg``, other formats by Pillow; every header checked
with Pillow first) and cached as uint8 arrays.

    <root>/train/<class>/<image>          or    <root>/<top>/train/<class>/<image>
    <root>/test/<class>/<image>  (or val/)       (e.g. cifar10/train/airplane/0000.jpg in a tar.gz)

Classes are the training split's folder names, sorted (index = position); images are taken in
file-name order. In a directory, class folders are found by torchvision's ``find_classes`` (hidden
ones dropped); torchvision's ``make_dataset`` is not used: it follows symlinked folders to any depth with
no guard against a symlink loop. The cache lives under ``<cache dir>/imagefolder/<name>-<key>/``, keyed by the
source's resolved path, size and mtime (for a directory: every file's), and is written to a
temporary folder renamed into place, so an interrupted decode never leaves a half cache.

Bounds (``DataLimits``, from the caller): with ``allowed_roots`` every image file must resolve inside
them (a symlink pointing elsewhere is refused); an archive's members are checked from their headers
while streaming (links, devices, absolute or ``..`` names refused; a member larger than
``max_file_bytes`` refused before it is read; everything streamed counts towards ``max_total_bytes``);
each image's pixels are checked from its header before decoding, and the decoded total (images x the
first image's size) before decoding any; the cache is not written past ``max_cache_bytes`` on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import tarfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .base import DataError, Dataset, cache_root, channel_stats
from .decode import GREY_MODES, decode_many, image_header, image_size, prepare_jpeg, read_image_file
from .limits import DEFAULT_LIMITS, DataLimits, check_file_size, check_inside

CACHE_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
TRAIN_SPLIT, VAL_SPLITS = "train", ("test", "val")  # the first validation split present is used
PARALLEL_MIN_IMAGES = 4000  # below this, starting worker processes costs more than it saves
_LAYOUT_HELP = (
    "a directory or .tar.gz holding train/<class>/<image> and test/<class>/<image> (or val/), "
    "possibly inside one top folder (e.g. cifar10/train/airplane/0000.jpg)"
)


def default_decode_workers() -> int:
    """Decoding processes when the caller names none: torch's thread setting (the caller's say in how
    many cores this process may use), at most the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))  # respects taskset and container CPU sets
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus))


@dataclass(frozen=True)
class ImageFile:
    split: str
    label: str  # class folder name
    name: str  # path inside the archive or directory, for error messages
    data: bytes | None = None  # the encoded image (archives); None: read from ``path``
    path: Path | None = None


def load_imagefolder(
    root: Path | None,
    *,
    cache_dir: str | Path | None = None,
    allowed_roots: tuple[str, ...] | None = None,
    limits: DataLimits = DEFAULT_LIMITS,
    decode_workers: int | None = None,
) -> Dataset:
    """Load an image folder or archive, from the cache when it was decoded before.

    ``allowed_roots`` (resolved paths, see ``limits.normalize_roots``): the root and every image
    file must resolve inside one of them. ``limits``: see the module's docstring. ``decode_workers``:
    processes that decode (None: :func:`default_decode_workers`; 1: decode in this process).
    """
    if root is None:
        raise DataError(f"dataset imagefolder needs data.root: {_LAYOUT_HELP}.")
    check_inside(root, allowed_roots, "data.root")
    if not root.exists():
        raise DataError(f"imagefolder root {root} does not exist; set data.root to {_LAYOUT_HELP}.")
    # An archive is keyed by its size and mtime, so a cache hit never opens it; a directory by
    # its listing (file stats only, no image is read).
    files = None if root.is_file() else _scan_directory(root, allowed_roots, limits)
    name = _source_name(root)
    cache = cache_root(cache_dir) / "imagefolder" / f"{name}-{_cache_key(root, files)}"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    if files is None:
        files = _scan_archive(root, limits)
    ds = decode_imagefolder(files, name=name, source=str(root), limits=limits, decode_workers=decode_workers)
    write_cache(cache, ds, max_cache_bytes=limits.max_cache_bytes)
    return ds


def decode_imagefolder(
    files: list[ImageFile], *, name: str, source: str, limits: DataLimits = DEFAULT_LIMITS, decode_workers: int | None = None
) -> Dataset:
    """Decode every image into one data set (train classes sorted, files in name order)."""
    train = [f for f in files if f.split == TRAIN_SPLIT]
    val_split = next((s for s in VAL_SPLITS if any(f.split == s for f in files)), None)
    if not train or val_split is None:
        found = sorted({f.split for f in files})
        raise DataError(
            f"{source} has no {'train' if not train else 'test or val'} split of class folders "
            f"(splits found: {', '.join(found) or 'none'}); provide {_LAYOUT_HELP}."
        )
    val = [f for f in files if f.split == val_split]
    classes = sorted({f.label for f in train})
    unknown = sorted({f.label for f in val} - set(classes))
    if unknown:
        raise DataError(
            f"{source}: the {val_split} split has class folders that train lacks ({', '.join(unknown[:5])}); "
            "every validation class needs training images: add them or remove those folders."
        )
    index = {c: i for i, c in enumerate(classes)}
    ordered = sorted(train, key=lambda f: (index[f.label], f.name)) + sorted(val, key=lambda f: (index[f.label], f.name))
    # Every image must have the first one's size: its header bounds the decoded total before any decode.
    first = ordered[0]
    size = image_size(
        first.data if first.data is not None else read_image_file(first.name, str(first.path), limits.max_file_bytes),
        first.name,
        limits.max_image_pixels,
    )
    total = len(ordered) * 3 * size[0] * size[1]
    if total > limits.max_total_bytes:
        raise DataError(
            f"{source}: {len(ordered)} images of {size[0]}x{size[1]} (the size of {first.name}) would decode to "
            f"{total} bytes, more than the limit of {limits.max_total_bytes} bytes; nothing was decoded: use "
            "fewer or smaller images (or raise the limit)."
        )
    images = _stack(decode_all(ordered, limits=limits, expect=(size, first.name), workers=decode_workers), ordered)
    labels = np.array([index[f.label] for f in ordered], dtype=np.int64)
    n = len(train)
    train_x = torch.from_numpy(np.ascontiguousarray(images[:n]))
    val_x = torch.from_numpy(np.ascontiguousarray(images[n:]))
    mean, std = channel_stats(train_x)
    return Dataset(
        name=name,
        train_x=train_x,
        train_y=torch.from_numpy(labels[:n]),
        val_x=val_x,
        val_y=torch.from_numpy(labels[n:]),
        classes=classes,
        mean=mean,
        std=std,
        source=source,
    )


def decode_all(
    files: list[ImageFile],
    *,
    limits: DataLimits = DEFAULT_LIMITS,
    expect: tuple[tuple[int, int], str] | None = None,
    workers: int | None = None,
    jpeg: str = "torchvision",
) -> list[np.ndarray]:
    """Decode every image into (C, H, W) arrays, in ``workers`` forked processes for large sets
    (None: :func:`default_decode_workers`). ``jpeg``: see :func:`decode.decode_many`.

    Threads do not help: each image's header is read by Pillow in Python, under the GIL. Forked
    workers read the encoded images from the parent's memory and receive only index ranges. Where no
    process can be started (e.g. inside a daemonic Celery worker) the images are decoded here.
    """
    global _PENDING, _OPTIONS
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"decode_workers must be a positive integer or None, got {workers!r}")
    workers = workers or default_decode_workers()
    items = [(f.name, f.data, str(f.path) if f.path else None) for f in files]
    options = (limits.max_image_pixels, expect, limits.max_file_bytes, jpeg)
    if jpeg == "torchvision":
        prepare_jpeg()  # imported once here, not in every worker
    # fork, not spawn: spawn re-runs the caller's main script, which breaks any script without an
    # ``if __name__ == "__main__"`` guard. The forked children run Pillow and torchvision's decode_jpeg
    # (no intra-op threads), as a DataLoader's forked workers do.
    if workers < 2 or len(items) < PARALLEL_MIN_IMAGES or "fork" not in multiprocessing.get_all_start_methods():
        return decode_many(items, *options)
    size = math.ceil(len(items) / (4 * workers))  # a few chunks per worker evens out their pace
    _PENDING, _OPTIONS = items, options
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            ranges = [(i, min(i + size, len(items))) for i in range(0, len(items), size)]
            return [a for chunk in pool.map(_decode_range, ranges) for a in chunk]
    except (AssertionError, OSError, BrokenProcessPool) as exc:
        # AssertionError: "daemonic processes are not allowed to have children".
        warnings.warn(f"decoding in one process: no worker process could be started ({exc})", stacklevel=2)
        return decode_many(items, *options)
    finally:
        _PENDING = []


_PENDING: list = []  # the items being decoded, inherited by forked workers
_OPTIONS: tuple = (DEFAULT_LIMITS.max_image_pixels, None, DEFAULT_LIMITS.max_file_bytes, "torchvision")  # ... and decode_many's options


def _worker_init() -> None:
    torch.set_num_threads(1)  # as a DataLoader worker: the parent's intra-op pool is not the child's


def _decode_range(bounds: tuple[int, int]) -> list[np.ndarray] | np.ndarray:
    arrays = decode_many(_PENDING[bounds[0] : bounds[1]], *_OPTIONS)
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)  # one array back through the pipe, not thousands (pickled 3x faster)
    return arrays  # _stack names the image of another size


def _stack(arrays: list[np.ndarray], files: list[ImageFile]) -> np.ndarray:
    """(N, C, H, W) of (C, H, W) arrays: C = 1 when every image is grey, else grey images are repeated to RGB."""
    h, w = arrays[0].shape[1:]
    for a, f in zip(arrays, files, strict=True):
        if a.shape[1:] != (h, w):
            raise DataError(
                f"the image {f.name} is {a.shape[2]}x{a.shape[1]} but {files[0].name} is {w}x{h}; "
                "every image must have the same size: resize them beforehand."
            )
    channels = 3 if any(a.shape[0] == 3 for a in arrays) else 1
    out = np.empty((len(arrays), channels, h, w), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a  # a grey (1, H, W) broadcasts to every channel
    return out


def _split_of(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) of a path ``[top/]split/class/file``; None for anything else."""
    if len(parts) not in (3, 4) or any(p.startswith(".") for p in parts):
        return None
    if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    split = parts[-3].lower()
    return (split, parts[-2]) if split in (TRAIN_SPLIT, *VAL_SPLITS) else None


def _check_one_top(tops: set[tuple[str, ...]], count: int, source: Path) -> None:
    """The images must sit under one top folder at most (``train/...`` or ``cifar10/train/...``)."""
    if count == 0:
        raise DataError(f"{source} holds no images in class folders; provide {_LAYOUT_HELP}.")
    if len(tops) > 1:
        listed = ", ".join("/".join(t) or "." for t in sorted(tops))
        raise DataError(f"{source} holds several data sets ({listed}); point data.root at one of them: {_LAYOUT_HELP}.")


def _member_parts(name: str) -> tuple[str, ...]:
    while name.startswith("./"):
        name = name[2:]
    return PurePosixPath(name).parts


def _check_member(path: Path, member: tarfile.TarInfo, limits: DataLimits) -> None:
    """Refuse what no image archive needs: links, devices, names outside the archive, oversized members."""
    where = f"the archive {path}: member {member.name!r}"
    if member.issym() or member.islnk():
        raise DataError(f"{where} is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r}); links are refused in data archives.")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{where} is not a regular file or folder (type {member.type!r}); such members are refused in data archives.")
    if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts or "\x00" in member.name:
        raise DataError(f"{where} has an absolute or '..' name; such members are refused in data archives.")
    if member.isfile() and member.size > limits.max_file_bytes:
        raise DataError(
            f"{where} claims {member.size} bytes, more than the limit of {limits.max_file_bytes} bytes per member; "
            "it is not read (raise the limit if the archive is genuine)."
        )


def _scan_archive(path: Path, limits: DataLimits = DEFAULT_LIMITS, *, deadline: float | None = None, headers_only: bool = False) -> list[ImageFile]:
    """The archive's images, read in one streaming pass. ``headers_only``: the bytes of the first training
    image only (a probe's count and size; the rest are streamed past, unread)."""
    files: list[ImageFile] = []
    tops: set[tuple[str, ...]] = set()
    streamed = 0  # bytes of every member's data, read or skipped: the stream has to decompress them all
    try:
        # Stream mode ("r|*"): one pass, no seeking; 2x faster than "r:*" on the 60,000-member CIFAR archive.
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"reading the archive {path} took longer than its time limit")
                _check_member(path, member, limits)
                streamed += member.size if member.isfile() else 0
                if streamed > limits.max_total_bytes:
                    raise DataError(
                        f"the archive {path} holds more than the limit of {limits.max_total_bytes} bytes "
                        f"(reached at member {member.name!r}); it is not read further."
                    )
                parts = _member_parts(member.name) if member.isfile() else ()
                where = _split_of(parts)
                if where is None:
                    continue
                if len(files) >= limits.max_images:
                    raise DataError(f"the archive {path} holds more than the limit of {limits.max_images} images.")
                if headers_only and (where[0] != TRAIN_SPLIT or any(f.data is not None for f in files[:1])):
                    files.append(ImageFile(split=where[0], label=where[1], name=f"{path}:{member.name}"))
                    tops.add(parts[:-3])
                    continue
                member_file = tar.extractfile(member)
                assert member_file is not None  # a regular file (others have no parts, so no split)
                data = member_file.read(limits.max_file_bytes + 1)
                if headers_only:
                    files.insert(0, ImageFile(split=where[0], label=where[1], name=f"{path}:{member.name}", data=data))
                    tops.add(parts[:-3])
                    continue
                if len(data) > limits.max_file_bytes:  # never past the header's claim, which was checked; kept as a guard
                    raise DataError(f"the archive {path}: member {member.name!r} is larger than the limit of {limits.max_file_bytes} bytes.")
                files.append(ImageFile(split=where[0], label=where[1], name=f"{path}:{member.name}", data=data))
                tops.add(parts[:-3])
    except TimeoutError:  # an OSError, but not the archive's fault
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read the archive {path} ({exc}); provide a readable .tar, .tar.gz or a directory: {_LAYOUT_HELP}.") from None
    _check_one_top(tops, len(files), path)
    return files


def _subdirs(folder: Path) -> list[os.DirEntry]:
    """The non-hidden folders (symlinks to folders included) directly inside ``folder``, by name."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".") and e.is_dir()), key=lambda e: e.name)
    except OSError:
        return []


def _scan_directory(root: Path, allowed_roots: tuple[str, ...] | None = None, limits: DataLimits = DEFAULT_LIMITS) -> list[ImageFile]:
    """The images of ``[top/]split/class/image`` under ``root``. Class folders are found by torchvision's
    ``find_classes`` (hidden ones dropped); the images directly inside each class folder are listed here
    (one level, no deeper: torchvision's ``make_dataset`` would follow symlinked folders to any depth)."""
    from torchvision.datasets.folder import find_classes

    splits = (TRAIN_SPLIT, *VAL_SPLITS)
    # The folders that may hold the splits: root itself and each folder directly inside it.
    bases = [root] + [Path(d.path) for d in _subdirs(root) if d.name.lower() not in splits]
    files: list[ImageFile] = []
    tops: set[tuple[str, ...]] = set()
    for base in bases:
        for split_dir in _subdirs(base):
            split = split_dir.name.lower()
            if split not in splits:
                continue
            try:
                classes, _ = find_classes(split_dir.path)
            except FileNotFoundError:  # no class folder in it
                continue
            for cls in classes:
                if cls.startswith("."):
                    continue
                try:
                    with os.scandir(os.path.join(split_dir.path, cls)) as it:
                        names = sorted(e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
                except OSError as exc:
                    raise DataError(f"cannot list the class folder {split_dir.path}/{cls}: {exc.strerror or exc}.") from None
                for fn in names:
                    path = Path(split_dir.path) / cls / fn
                    check_inside(path, allowed_roots, "the image")  # a symlink inside the folder may point anywhere
                    check_file_size(path, limits, "the image")
                    if len(files) >= limits.max_images:
                        raise DataError(f"{root} holds more than the limit of {limits.max_images} images.")
                    files.append(ImageFile(split=split, label=cls, name=str(path), path=path))
                    tops.add(base.relative_to(root).parts)
    _check_one_top(tops, len(files), root)
    return files


def probe_imagefolder(
    root: Path | str | None,
    *,
    cache_dir: str | Path | None = None,
    allowed_roots: tuple[str, ...] | None = None,
    limits: DataLimits = DEFAULT_LIMITS,
    deadline: float | None = None,
) -> tuple[tuple[int, int, int], int, int]:
    """((C, H, W), training images, validation images) of an image folder or archive, without decoding it.

    From the decode cache when there is one; else the images are counted (a directory's listing, an
    archive's member headers: it is streamed once, 1-3 s for the 60,000 CIFAR-10 JPEGs) and C, H and W
    read from the header of one training image (C = 1 when it is grey). ``deadline`` (time.monotonic()):
    TimeoutError past it. Raises DataError as :func:`load_imagefolder` does for a missing or malformed source.
    """
    if root is None:
        raise DataError(f"dataset imagefolder needs data.root: {_LAYOUT_HELP}.")
    root = Path(root).expanduser()
    check_inside(root, allowed_roots, "data.root")
    if not root.exists():
        raise DataError(f"imagefolder root {root} does not exist; set data.root to {_LAYOUT_HELP}.")
    files = None if root.is_file() else _scan_directory(root, allowed_roots, limits)
    key = _cache_key(root, files)
    cached = _probe_cache(cache_root(cache_dir) / "imagefolder" / f"{_source_name(root)}-{key}")
    if cached is not None:
        return cached
    with _PROBED_LOCK:
        if key in _PROBED:
            return _PROBED[key]
    if files is None:
        files = _scan_archive(root, limits, deadline=deadline, headers_only=True)
    train = [f for f in files if f.split == TRAIN_SPLIT]
    val_split = next((s for s in VAL_SPLITS if any(f.split == s for f in files)), None)
    if not train or val_split is None:
        raise DataError(f"{root} has no {'train' if not train else 'test or val'} split of class folders; provide {_LAYOUT_HELP}.")
    first = train[0] if train[0].data is not None else min(train, key=lambda f: (f.label, f.name))
    data = first.data if first.data is not None else read_image_file(first.name, str(first.path), limits.max_file_bytes)
    (w, h), _fmt, mode = image_header(data, first.name, limits.max_image_pixels)
    out = ((1 if mode in GREY_MODES else 3, h, w), len(train), sum(f.split == val_split for f in files))
    with _PROBED_LOCK:
        _PROBED[key] = out
        while len(_PROBED) > 64:
            _PROBED.pop(next(iter(_PROBED)))
    return out


_PROBED: dict[str, tuple[tuple[int, int, int], int, int]] = {}  # cache key -> probe, for sources not decoded yet
_PROBED_LOCK = threading.Lock()


def _probe_cache(folder: Path) -> tuple[tuple[int, int, int], int, int] | None:
    """The shapes of a complete decode cache, read from the arrays' headers (no image is loaded)."""
    try:
        if json.loads((folder / "meta.json").read_text()).get("version") != CACHE_VERSION:
            return None
        train = np.load(folder / "train_x.npy", mmap_mode="r", allow_pickle=False).shape
        val = np.load(folder / "val_x.npy", mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError, KeyError):
        return None
    return (int(train[1]), int(train[2]), int(train[3])), int(train[0]), int(val[0])


def _cache_key(root: Path, files: list[ImageFile] | None) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}".encode())
    if files is None:  # an archive: its size and mtime stand for its content
        st = root.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    else:  # a directory: every image file's size and mtime
        for f in sorted(files, key=lambda f: f.name):
            assert f.path is not None  # listed from a directory: every file has its path
            st = f.path.stat()
            h.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _source_name(root: Path) -> str:
    name = root.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name or "imagefolder"


_ARRAYS = ("train_x", "train_y", "val_x", "val_y")


def read_cache(folder: Path) -> Dataset | None:
    """The cached data set, or None when there is no complete cache of the current version."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        arrays = {k: torch.from_numpy(np.load(folder / f"{k}.npy", allow_pickle=False)) for k in _ARRAYS}
    except (OSError, ValueError, KeyError):
        return None  # absent or unreadable: decode again (the new cache replaces it)
    return Dataset(
        name=meta["name"],
        train_x=arrays["train_x"],
        train_y=arrays["train_y"],
        val_x=arrays["val_x"],
        val_y=arrays["val_y"],
        classes=meta["classes"],
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        source=meta["source"],
    )


def _disk_usage(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, filenames in os.walk(folder):
        for fn in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, fn)).st_size
            except OSError:
                pass
    return total


def write_cache(folder: Path, ds: Dataset, *, max_cache_bytes: int = DEFAULT_LIMITS.max_cache_bytes) -> None:
    """Write the arrays into a temporary folder, then rename it into place (atomic on POSIX).

    Not written (a warning says why) when the cache's folder would hold more than ``max_cache_bytes``.
    """
    needed = sum(getattr(ds, k).numel() * getattr(ds, k).element_size() for k in _ARRAYS)
    used = _disk_usage(folder.parent) if folder.parent.is_dir() else 0
    if used + needed > max_cache_bytes:
        warnings.warn(
            f"the decoded images ({needed} bytes) are not cached in {folder}: the cache {folder.parent} holds "
            f"{used} bytes and may hold at most {max_cache_bytes}; clear it or raise the limit",
            stacklevel=3,
        )
        return
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", getattr(ds, k).numpy(), allow_pickle=False)
        meta = {
            "version": CACHE_VERSION,
            "name": ds.name,
            "classes": ds.classes,
            "mean": ds.mean,
            "std": ds.std,
            "source": ds.source,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():  # a stale or damaged cache of the same key
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if read_cache(folder) is None:  # not another process that finished first
                raise
    except OSError as exc:
        # A read-only or full cache disk costs the next run a decode, not this run its data.
        warnings.warn(f"could not cache the decoded images in {folder}: {exc}", stacklevel=3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
