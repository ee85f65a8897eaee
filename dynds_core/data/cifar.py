"""CIFAR-10 and CIFAR-100 from torchvision's on-disk format (the python pickle batches).

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

The pickles load in well under a second, so they are not cached again. They are read with a
restricted unpickler (:class:`CifarUnpickler`) that admits only what the format holds (dicts, lists,
bytes, numbers and numpy arrays): a crafted "batch" that would call anything else raises DataError
before any of its code runs. The file names and keys are torchvision's (``CIFAR10``/``CIFAR100``'s
``base_folder``, ``train_list``, ``test_list``, ``meta``); torchvision's reader is not used, as it reads
the batches with plain ``pickle.load`` (code execution from a crafted file) and checks their md5 sums
against the original archive's only.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torchvision

from .base import DataError, Dataset, channel_stats
from .limits import DEFAULT_LIMITS, DataLimits, check_file_size, check_inside

# The only globals a CIFAR python batch refers to: numpy's array reconstruction (numpy 1 and 2 names,
# pickle protocols 2 and 5). Nothing here runs code chosen by the file: they build arrays from bytes.
SAFE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class UnsafePickle(pickle.UnpicklingError):
    """The pickle asked for a global outside SAFE_GLOBALS."""


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but numpy's array reconstruction."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickle(f"it refers to {module}.{name}, which a CIFAR batch never holds")


def _layout(cls, label_key: str) -> tuple:
    """(folder, training files, test file, meta file, label key, class-names key) of torchvision's class:
    the files its reader opens. Its reader itself is not used: it unpickles them with plain
    ``pickle.load``, which runs whatever code a crafted file names."""
    return (
        cls.base_folder,
        [f for f, _md5 in cls.train_list],
        cls.test_list[0][0],
        cls.meta["filename"],
        label_key,
        cls.meta["key"],
    )


LAYOUTS = {
    "cifar10": _layout(torchvision.datasets.CIFAR10, "labels"),
    "cifar100": _layout(torchvision.datasets.CIFAR100, "fine_labels"),
}


def find_cifar_folder(name: str, root: Path) -> Path | None:
    """``root/<folder>``, or ``root`` itself when it is that folder; None when neither holds the files."""
    folder, train_files, test_file, *_ = LAYOUTS[name]
    for candidate in (root / folder, root):
        if all((candidate / f).is_file() for f in [*train_files, test_file]):
            return candidate
    return None


def load_cifar(
    name: str,
    root: Path,
    *,
    download: bool = False,
    allowed_roots: tuple[str, ...] | None = None,
    limits: DataLimits = DEFAULT_LIMITS,
) -> Dataset:
    """Read CIFAR-10/100 from ``root``; with ``download`` fetch it there first through torchvision.

    ``allowed_roots``: the root and every file read must resolve inside them; ``limits``: each file is
    at most ``max_file_bytes``, the arrays together at most ``max_total_bytes``.
    """
    check_inside(root, allowed_roots, "data.root")
    folder = find_cifar_folder(name, root)
    if folder is None and download:
        _download(name, root)
        folder = find_cifar_folder(name, root)
    if folder is None:
        raise DataError(_missing_message(name, root))
    layout_folder, train_files, test_file, meta_file, label_key, names_key = LAYOUTS[name]
    train_x, train_y = _read_batches([folder / f for f in train_files], label_key, allowed_roots=allowed_roots, limits=limits)
    val_x, val_y = _read_batches([folder / test_file], label_key, allowed_roots=allowed_roots, limits=limits)
    if train_x.nbytes + val_x.nbytes > limits.max_total_bytes:
        raise DataError(f"{folder} holds {train_x.nbytes + val_x.nbytes} bytes of images, more than the limit of {limits.max_total_bytes} bytes.")
    classes = _read_class_names(
        folder / meta_file, names_key, num_classes=int(max(train_y.max(), val_y.max())) + 1, allowed_roots=allowed_roots, limits=limits
    )
    mean, std = channel_stats(train_x)
    return Dataset(
        name=name,
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        val_x=torch.from_numpy(val_x),
        val_y=torch.from_numpy(val_y),
        classes=classes,
        mean=mean,
        std=std,
        source=str(folder),
    )


def _read_batches(
    paths: list[Path], label_key: str, *, allowed_roots: tuple[str, ...] | None = None, limits: DataLimits = DEFAULT_LIMITS
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    total = 0
    for path in paths:
        batch = _unpickle(path, allowed_roots=allowed_roots, limits=limits)
        data, labels = batch.get("data"), batch.get(label_key)
        if data is None or labels is None:
            raise DataError(
                f"{path} is not a CIFAR batch: it lacks the keys 'data' and {label_key!r} "
                f"(found {sorted(batch)[:6]}); replace it with the file from the original CIFAR python archive."
            )
        data = np.asarray(data)
        labels = np.asarray(labels, dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise DataError(
                f"{path} is not a CIFAR batch: expected uint8 data of shape (N, 3072) and N labels, got "
                f"{data.dtype} data of shape {data.shape} and {len(labels)} labels; "
                "replace it with the file from the original CIFAR python archive."
            )
        if len(labels) and labels.min() < 0:
            raise DataError(f"{path} holds a negative label ({labels.min()}); the file is damaged.")
        total += data.nbytes
        if total > limits.max_total_bytes:
            raise DataError(f"{path}: the CIFAR batches hold more than the limit of {limits.max_total_bytes} bytes of images.")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def _read_class_names(
    path: Path, key: str, num_classes: int, *, allowed_roots: tuple[str, ...] | None = None, limits: DataLimits = DEFAULT_LIMITS
) -> list[str]:
    # The meta file only names the classes: without it, number them rather than refuse the data.
    if not path.is_file():
        return [f"class{k}" for k in range(num_classes)]
    names = _unpickle(path, allowed_roots=allowed_roots, limits=limits).get(key)
    if not names or len(names) < num_classes:
        raise DataError(f"{path} does not name the {num_classes} classes under {key!r}; the file is damaged.")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _unpickle(path: Path, *, allowed_roots: tuple[str, ...] | None = None, limits: DataLimits = DEFAULT_LIMITS) -> dict:
    # These pickles hold only dicts of bytes, lists and numpy arrays: nothing else is admitted.
    check_inside(path, allowed_roots, "the CIFAR file")
    check_file_size(path, limits, "the CIFAR file")
    try:
        with open(path, "rb") as f:
            obj = CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None
    except UnsafePickle as exc:
        raise DataError(
            f"{path} is not a CIFAR batch and was refused unread: {exc}. A CIFAR python batch holds only "
            "dicts, lists, bytes and numpy arrays; replace it with the file from the original CIFAR python archive."
        ) from None
    except Exception as exc:  # a truncated or foreign file fails in many ways inside pickle
        raise DataError(
            f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); replace it with the file from the original CIFAR python archive."
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR pickle: it holds a {type(obj).__name__}, not a dict of arrays.")
    # The original (Python 2) files' keys load as bytes, a Python 3 re-pickle's as str: both are read.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _download(name: str, root: Path) -> None:
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except Exception as exc:  # network errors come as URLError, OSError, RuntimeError ...
        raise DataError(
            f"downloading {name} into {root} failed ({type(exc).__name__}: {exc}). Without a network, put the "
            f"extracted python-format folder '{LAYOUTS[name][0]}' under {root} yourself"
            + (", or use dataset: imagefolder with root: a CIFAR-10 image archive (train/<class>/*.jpg, test/...)." if name == "cifar10" else ".")
        ) from None


def _missing_message(name: str, root: Path) -> str:
    folder, train_files, test_file, *_ = LAYOUTS[name]
    missing = [f for f in [*train_files, test_file] if not (root / folder / f).is_file()]
    where = f"{root / folder}" + ("" if root.is_dir() else f" (the folder {root} does not exist)")
    msg = (
        f"{name} not found: looked in {where} and in {root} itself for the python-format files "
        f"{', '.join([*train_files, test_file])} (missing: {', '.join(missing)}). Provide them by extracting "
        f"the CIFAR python archive so that {root / folder} holds those files, set data.root to the folder "
        f"that contains '{folder}', or set data.download: true on a machine with a network"
    )
    if name == "cifar10":
        msg += "; or, offline, use dataset: imagefolder with root: a CIFAR-10 image archive or folder (train/<class>/*.jpg, test/...)"
    return msg + "."
