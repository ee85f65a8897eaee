"""Fashion-MNIST from its original IDX files (plain or .gz), e.g. from the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).

IDX: two zero bytes, a type byte (0x08: unsigned byte), the number of dimensions, then one
big-endian int32 per dimension, then the values. Images are (N, 28, 28), labels (N,).

Read here rather than by torchvision's ``FashionMNIST``: that class opens only uncompressed files under
``<root>/FashionMNIST/raw`` (the Debian package ships .gz files; torchvision gunzips its own downloads),
and its IDX parser (``read_sn3_pascalvincent_tensor``) reads a file whole, with no size bound, accepts a
truncated image file (``strict=False``) and checks the header with ``assert`` (gone under ``python -O``).
Its folder layout is one of the places looked in.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import DataError, Dataset, channel_stats
from .limits import DEFAULT_LIMITS, DataLimits, check_file_size, is_inside

SYSTEM_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def candidate_folders(root: Path | None) -> list[Path]:
    """Where the IDX files may be: the given root (or its fashion-mnist / FashionMNIST/raw folder),
    else the default data folder and the Debian package's folder."""
    from .base import DEFAULT_DATA_ROOT

    bases = [root] if root is not None else [DEFAULT_DATA_ROOT.expanduser(), SYSTEM_ROOT]
    out = []
    for base in bases:
        out += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    return out


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_files(root: Path | None, allowed_roots: tuple[str, ...] | None = None) -> tuple[dict[str, Path] | None, list[Path], list[Path]]:
    """(the four IDX files of the first folder that holds them all, the folders looked in, the folders
    skipped because a file there resolves outside ``allowed_roots``)."""
    folders, skipped = candidate_folders(root), []
    for folder in folders:
        found = {key: path for key, stem in FILES.items() if (path := find_idx_file(folder, stem)) is not None}
        if len(found) == len(FILES):
            if allowed_roots is not None and not all(is_inside(p, allowed_roots) for p in found.values()):
                skipped.append(folder)
                continue
            return found, folders, skipped
    return None, folders, skipped


def load_fashion_mnist(root: Path | None, *, allowed_roots: tuple[str, ...] | None = None, limits: DataLimits = DEFAULT_LIMITS) -> Dataset:
    """Read Fashion-MNIST from ``root`` (None: the default folders). With ``allowed_roots`` a folder
    whose files resolve elsewhere is not read (default folders included)."""
    found, folders, skipped = find_fashion_files(root, allowed_roots)
    if found is None:
        outside = (
            f" The files in {', '.join(str(f) for f in skipped)} resolve outside the allowed data directories "
            f"({', '.join(allowed_roots or ())}) and were not read."
            if skipped
            else ""
        )
        raise DataError(
            f"fashion-mnist not found: looked for {', '.join(FILES.values())} (each plain or .gz) in "
            f"{', '.join(str(f) for f in folders)}.{outside} Provide them by setting data.root to the folder that holds "
            "these four IDX files, or install the Debian package dataset-fashion-mnist "
            f"(apt-get install -y dataset-fashion-mnist puts them in {SYSTEM_ROOT})."
        )
    train_x = read_idx(found["train_images"], IMAGES_MAGIC, limits)
    train_y = read_idx(found["train_labels"], LABELS_MAGIC, limits)
    val_x = read_idx(found["test_images"], IMAGES_MAGIC, limits)
    val_y = read_idx(found["test_labels"], LABELS_MAGIC, limits)
    for images, labels, ipath, lpath in (
        (train_x, train_y, found["train_images"], found["train_labels"]),
        (val_x, val_y, found["test_images"], found["test_labels"]),
    ):
        if len(images) != len(labels):
            raise DataError(f"{ipath} holds {len(images)} images but {lpath} holds {len(labels)} labels; one of them is damaged.")
        if len(labels) and labels.max() >= len(CLASSES):
            raise DataError(f"{lpath} holds label {labels.max()}, but Fashion-MNIST has {len(CLASSES)} classes (0..9).")
    train_x, val_x = train_x[:, None], val_x[:, None]  # one (grey) channel
    mean, std = channel_stats(train_x)
    return Dataset(
        name="fashion-mnist",
        train_x=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_y=torch.from_numpy(train_y.astype(np.int64)),
        val_x=torch.from_numpy(np.ascontiguousarray(val_x)),
        val_y=torch.from_numpy(val_y.astype(np.int64)),
        classes=list(CLASSES),
        mean=mean,
        std=std,
        source=str(found["train_images"].parent),
    )


def read_idx(path: Path, magic: int, limits: DataLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The uint8 array of an IDX file whose magic number must be ``magic`` (0x803 images, 0x801 labels).

    At most ``limits.max_file_bytes`` are read, decompressed ones included (a .gz is refused as soon
    as it expands past the limit), and an image is at most ``limits.max_image_pixels``.
    """
    check_file_size(path, limits, "the IDX file")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read(limits.max_file_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}; replace it with the original IDX file.") from None
    if len(raw) > limits.max_file_bytes:
        raise DataError(f"{path} expands to more than the limit of {limits.max_file_bytes} bytes per file; it is not read further.")
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file: it holds only {len(raw)} bytes; replace it with the original IDX {kind} file.")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DataError(
            f"{path} is not an IDX {kind} file: its magic number is 0x{found:08x}, expected 0x{magic:08x} "
            f"(unsigned bytes, {magic & 0xFF} dimensions); replace it with the original IDX {kind} file."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header ({len(raw)} bytes); replace it with the original IDX {kind} file.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if ndim == 3 and dims[1] * dims[2] > limits.max_image_pixels:
        raise DataError(f"{path} holds {dims[1]}x{dims[2]} images, more than the limit of {limits.max_image_pixels} pixels per image.")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} has the wrong size: its header announces {' x '.join(map(str, dims))} = {expected} values "
            f"but {len(raw) - header} bytes follow; the file is truncated or damaged, replace it with the original."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()
