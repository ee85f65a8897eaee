"""dynds_core.data: every loader on small fixtures written here, the cache, subsets, augmentation, batching."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dynds_core.data import (
    BatchLoader,
    DataError,
    channel_stats,
    gather_crop_flip,
    imagefolder,
    load_dataset,
    make_loaders,
    normalize,
    random_crop_flip,
    stratified_subset,
)
from dynds_core.spec import DataSpec

SHARED_ARCHIVE = Path(__file__).parents[2].parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"


# ---------------------------------------------------------------- fixture writers


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> Path:
    """An IDX file (gzip-compressed when the name ends in .gz) of a uint8 array."""
    magic = magic if magic is not None else 0x0800 | array.ndim
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_fashion(folder: Path, *, gz: bool, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


def write_cifar10(root: Path, *, per_batch: int = 20, n_test: int = 10, str_keys: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """cifar-10-batches-py with 5 training batches; returns the training images (N, 3, 32, 32) and labels.

    Keys are bytes, as the original Python 2 pickles load with encoding="bytes"; ``str_keys``: str, as a
    Python 3 re-pickle holds them (and as torchvision's reader, with encoding="latin1", needs them)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)

    def dump(obj, path):
        with open(path, "wb") as f:
            pickle.dump({(k.decode() if str_keys else k): v for k, v in obj.items()}, f)

    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        dump({b"batch_label": b"x", b"data": x.reshape(per_batch, -1), b"labels": y}, folder / f"data_batch_{i}")
        xs.append(x)
        ys += y
    x = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    dump({b"data": x.reshape(n_test, -1), b"labels": list(range(n_test))}, folder / "test_batch")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump({b"label_names": [n.decode() for n in names] if str_keys else names, b"num_cases_per_batch": per_batch}, folder / "batches.meta")
    return np.concatenate(xs), np.array(ys)


def write_imagefolder(root: Path, *, top: str | None = "mini", grey: bool = False, val_name: str = "test", size=(8, 6)):
    """PNG images (lossless, so pixels can be compared) in [top/]train|test/<class>/; returns
    {split: [(class, array HxW[x3])...]} in the loader's order (classes sorted, then file names)."""
    base = root / top if top else root
    rng = np.random.default_rng(2)
    written: dict[str, list] = {"train": [], val_name: []}
    for split, per_class in (("train", 3), (val_name, 2)):
        for cls in ("cat", "ant", "bee"):
            d = base / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size[1], size[0]) if grey else (size[1], size[0], 3)
                a = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(a).save(d / f"{i:03d}.png")
                written[split].append((cls, a))
    order = {"ant": 0, "bee": 1, "cat": 2}
    for split in written:  # stable sort: file order within a class is kept
        written[split].sort(key=lambda item: order[item[0]])
    return written


def make_tar(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name)
    return dest


def as_nchw(items: list) -> np.ndarray:
    return np.stack([a.transpose(2, 0, 1) if a.ndim == 3 else a[None] for _, a in items])


# ---------------------------------------------------------------- synthetic


def test_synthetic_shapes_balance_and_independence_from_seed():
    spec = DataSpec(dataset="synthetic", synthetic_size=80, image_size=16, num_classes=4)
    a = load_dataset(spec, seed=0)
    b = load_dataset(spec, seed=7)
    assert a.train_x.shape == (80, 3, 16, 16) and a.train_x.dtype == torch.uint8
    assert a.val_x.shape == (20, 3, 16, 16) and a.train_y.dtype == torch.int64
    assert a.num_classes == 4 and a.in_channels == 3 and a.image_size == (16, 16)
    assert torch.bincount(a.train_y).tolist() == [20, 20, 20, 20]
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)  # the seed does not change the data
    assert len(a.mean) == 3 and all(0 < s for s in a.std)


def test_synthetic_is_learnable_but_not_constant():
    ds = load_dataset(DataSpec(dataset="synthetic", synthetic_size=200))
    x, xv = ds.train_x.float(), ds.val_x.float()
    centroids = torch.stack([x[ds.train_y == k].mean(0) for k in range(10)])
    dist = ((xv[:, None] - centroids[None]) ** 2).flatten(2).sum(-1)
    assert (dist.argmin(1) == ds.val_y).float().mean() > 0.8  # class signal a model can learn
    same_class = x[ds.train_y == 0]
    assert (same_class[0] - same_class[1]).abs().mean() > 10  # ... with noise: images of a class differ


def test_synthetic_too_large_is_refused():
    with pytest.raises(DataError, match="synthetic_size"):
        load_dataset(DataSpec(dataset="synthetic", synthetic_size=100_000, image_size=512))


# ---------------------------------------------------------------- fashion-mnist (IDX)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    ds = load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path)))
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.val_x.shape == (10, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert ds.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.classes[0] == "T-shirt/top" and ds.in_channels == 1
    assert ds.mean[0] == pytest.approx(arrays["train-images-idx3-ubyte"].mean() / 255, abs=1e-5)


def test_fashion_mnist_bad_magic_names_the_file(tmp_path):
    write_fashion(tmp_path, gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((30, 28, 28), np.uint8), magic=0x0801)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is not an IDX images file.*0x00000801"):
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path)))


def test_fashion_mnist_truncated_and_mismatched_files(tmp_path):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte has the wrong size"):
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path)))
    write_fashion(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(DataError, match=r"30 images but .*train-labels-idx1-ubyte holds 29 labels"):
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path)))
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path)))


def test_fashion_mnist_missing_says_where_and_what(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(tmp_path / "nowhere")))
    msg = str(exc.value)
    assert str(tmp_path / "nowhere") in msg and "t10k-images-idx3-ubyte" in msg and "dataset-fashion-mnist" in msg
    assert isinstance(exc.value, ValueError)


# ---------------------------------------------------------------- CIFAR


def test_cifar10_pickle_batches(tmp_path):
    x, y = write_cifar10(tmp_path)
    ds = load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.val_x.shape == (10, 3, 32, 32)
    assert np.array_equal(ds.train_x.numpy(), x)  # rows are R, G, B planes of 32x32, in batch order
    assert ds.train_y.tolist() == y.tolist() and ds.val_y.tolist() == list(range(10))
    assert ds.classes[:2] == ["airplane", "automobile"] and ds.num_classes == 10
    # data.root may also name the batches folder itself
    direct = load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path / "cifar-10-batches-py")))
    assert torch.equal(direct.train_x, ds.train_x)


def test_cifar10_reads_what_torchvisions_reader_reads(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    write_cifar10(tmp_path, str_keys=True)
    ds = load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))
    # torchvision's reader on the same (trusted, test-written) files; its md5 checks are for the original archive.
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for train, x, y in ((True, ds.train_x, ds.train_y), (False, ds.val_x, ds.val_y)):
        tv = tv_cifar.CIFAR10(str(tmp_path), train=train)
        assert np.array_equal(x.numpy(), tv.data.transpose(0, 3, 1, 2)) and y.tolist() == tv.targets
    assert ds.classes == tv.classes


def test_cifar100_pickle_files(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = np.arange(4 * 3072, dtype=np.int64).astype(np.uint8).reshape(4, 3072)
    for name, n in (("train", 4), ("test", 2)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x[:n], b"fine_labels": [99, 0, 1, 2][:n], b"coarse_labels": [0] * n}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)
    ds = load_dataset(DataSpec(dataset="cifar100", root=str(tmp_path)))
    assert ds.num_classes == 100 and ds.train_y.tolist() == [99, 0, 1, 2]
    assert ds.train_x[0, 1, 0, 0] == x[0, 1024]  # channel 1 starts at byte 1024


def test_cifar_missing_says_where_and_what(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))
    msg = str(exc.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg
    assert "download: true" in msg and "imagefolder" in msg
    assert "shared" not in msg  # no path of this project's machines in the library's messages


def test_cifar_damaged_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR pickle"):
        load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR batch: expected uint8 data of shape \(N, 3072\)"):
        load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))


# ---------------------------------------------------------------- image folders and their cache


def test_imagefolder_directory(tmp_path):
    written = write_imagefolder(tmp_path / "src")
    ds = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "cache")
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.train_x.shape == (9, 3, 6, 8) and ds.val_x.shape == (6, 3, 6, 8) and ds.image_size == (6, 8)
    assert np.array_equal(ds.train_x.numpy(), as_nchw(written["train"]))
    assert np.array_equal(ds.val_x.numpy(), as_nchw(written["test"]))
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.mean == pytest.approx(tuple(as_nchw(written["train"]).mean(axis=(0, 2, 3)) / 255), abs=1e-5)


def test_imagefolder_targz_equals_directory_and_grey_is_one_channel(tmp_path):
    written = write_imagefolder(tmp_path / "src", grey=True, val_name="val")
    archive = make_tar(tmp_path / "src", tmp_path / "mini.tar.gz")  # holds mini/train/..., mini/val/...
    ds = load_dataset(DataSpec(dataset="imagefolder", root=str(archive)), cache_dir=tmp_path / "cache")
    assert ds.in_channels == 1 and ds.name == "mini"
    assert np.array_equal(ds.train_x.numpy(), as_nchw(written["train"]))
    assert np.array_equal(ds.val_x.numpy(), as_nchw(written["val"]))
    from_dir = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src" / "mini")), cache_dir=tmp_path / "c2")
    assert torch.equal(from_dir.train_x, ds.train_x) and torch.equal(from_dir.val_y, ds.val_y)


def test_imagefolder_cache_hit_does_not_decode(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")
    archive = make_tar(tmp_path / "src", tmp_path / "mini.tar.gz")
    spec = DataSpec(dataset="imagefolder", root=str(archive))
    first = load_dataset(spec, cache_dir=tmp_path / "cache")

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although a cache exists")

    monkeypatch.setattr(imagefolder, "decode_imagefolder", no_decode)
    monkeypatch.setattr(imagefolder, "_scan_archive", no_decode)  # not even opened
    again = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.val_y, first.val_y)
    assert again.classes == first.classes and again.mean == first.mean
    # A changed archive (new mtime) is a cache miss: it must be decoded again.
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset(spec, cache_dir=tmp_path / "cache")


def test_imagefolder_directory_cache_sees_changed_files(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")
    spec = DataSpec(dataset="imagefolder", root=str(tmp_path / "src"))
    load_dataset(spec, cache_dir=tmp_path / "cache")
    calls = []
    real = imagefolder.decode_imagefolder
    monkeypatch.setattr(imagefolder, "decode_imagefolder", lambda *a, **k: calls.append(1) or real(*a, **k))
    load_dataset(spec, cache_dir=tmp_path / "cache")
    assert calls == []
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "src" / "mini" / "train" / "ant" / "009.png")
    ds = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert calls == [1] and len(ds.train_x) == 10


def test_cache_dir_defaults_to_env(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")
    monkeypatch.setenv("DYNDS_CACHE_DIR", str(tmp_path / "envcache"))
    load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")))
    assert list((tmp_path / "envcache" / "imagefolder").glob("src-*/train_x.npy"))


def test_interrupted_cache_write_leaves_no_cache(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")
    spec = DataSpec(dataset="imagefolder", root=str(tmp_path / "src"))
    cache = tmp_path / "cache"
    real_save = np.save
    saved = []

    def save_then_die(path, *args, **kwargs):
        if saved:
            raise KeyboardInterrupt  # the user stops the run between two files
        saved.append(path)
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(imagefolder.np, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(spec, cache_dir=cache)
    monkeypatch.setattr(imagefolder.np, "save", real_save)
    assert saved and list((cache / "imagefolder").iterdir()) == []  # neither a cache nor a temporary folder
    ds = load_dataset(spec, cache_dir=cache)  # decodes again and now caches
    assert len(ds.train_x) == 9 and [p.name for p in (cache / "imagefolder").iterdir()][0].startswith("src-")


def test_unwritable_cache_still_returns_the_data(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imagefolder.np, "save", disk_full)
    with pytest.warns(UserWarning, match="could not cache"):
        ds = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "cache")
    assert len(ds.train_x) == 9


def test_imagefolder_decodes_in_worker_processes(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "src")
    serial = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c1")
    monkeypatch.setattr(imagefolder, "PARALLEL_MIN_IMAGES", 0)
    workers = []
    real = imagefolder.ProcessPoolExecutor
    monkeypatch.setattr(imagefolder, "ProcessPoolExecutor", lambda *a, **k: workers.append(k) or real(*a, **k))
    parallel = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c2", decode_workers=3)
    assert workers and workers[0]["max_workers"] == 3  # the caller's number, not a constant
    assert torch.equal(parallel.train_x, serial.train_x) and torch.equal(parallel.val_x, serial.val_x)
    workers.clear()
    load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c3", decode_workers=1)
    assert workers == []  # one worker: decoded in this process
    with pytest.raises(ValueError, match="decode_workers"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c4", decode_workers=0)


def test_default_decode_workers_follow_torch_threads_and_the_cpus_allowed(monkeypatch):
    monkeypatch.setattr(imagefolder.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(imagefolder.torch, "get_num_threads", lambda: 8)
    assert imagefolder.default_decode_workers() == 3  # the CPUs this process may run on
    monkeypatch.setattr(imagefolder.torch, "get_num_threads", lambda: 2)
    assert imagefolder.default_decode_workers() == 2  # the caller's thread setting


def write_jpegs(root: Path, *, mode: str = "RGB", size=(10, 7), per_class: int = 2) -> dict[str, list[np.ndarray]]:
    """JPEGs in train|test/<class>/; returns what Pillow decodes of each, (C, H, W), in the loader's order."""
    rng = np.random.default_rng(3)
    decoded: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size[1], size[0], 3) if mode != "L" else (size[1], size[0])
                img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
                img = img.convert(mode) if mode != img.mode else img
                path = root / split / cls / f"{i}.jpg"
                img.save(path, format="JPEG", quality=80)
                with Image.open(path) as back:
                    a = np.asarray(back.convert("L") if back.mode == "L" else back.convert("RGB"))
                decoded[split].append(a.transpose(2, 0, 1) if a.ndim == 3 else a[None])
    return decoded


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpegs_are_decoded_by_torchvision_with_pillows_pixels(tmp_path, monkeypatch, mode):
    from dynds_core.data import decode

    expected = write_jpegs(tmp_path / "src", mode=mode)
    batches, pillow = [], []
    real_jpegs, real_pillow = decode.decode_jpegs, decode.decode_image
    monkeypatch.setattr(decode, "decode_jpegs", lambda items: batches.append(len(items)) or real_jpegs(items))
    monkeypatch.setattr(decode, "decode_image", lambda *a, **k: pillow.append(a[1]) or real_pillow(*a, **k))
    ds = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c", decode_workers=1)
    assert batches == [8] and pillow == []  # every JPEG in one batched torchvision call, none by Pillow
    assert ds.in_channels == (1 if mode == "L" else 3)
    assert np.array_equal(ds.train_x.numpy(), np.stack(expected["train"]))
    assert np.array_equal(ds.val_x.numpy(), np.stack(expected["test"]))


def test_pillow_and_torchvision_decoders_agree_and_cmyk_stays_with_pillow(tmp_path):
    from dynds_core.data import decode

    write_jpegs(tmp_path / "rgb")
    write_jpegs(tmp_path / "cmyk", mode="CMYK")  # not a mode torchvision is given: Pillow converts it
    png = io_png(np.zeros((7, 10, 3), np.uint8))
    for root in (tmp_path / "rgb", tmp_path / "cmyk"):
        items = [(str(p), p.read_bytes(), None) for p in sorted(root.rglob("*.jpg"))] + [("x.png", png, None)]
        new, old = decode.decode_many(items), decode.decode_many(items, jpeg="pillow")
        assert len(new) == len(old) == 9 and all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))
        assert all(a.shape == (3, 7, 10) and a.dtype == np.uint8 for a in new)
    with pytest.raises(ValueError, match="jpeg must be"):
        decode.decode_many([], jpeg="libjpeg")


def io_png(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_a_damaged_jpeg_in_a_batch_is_named(tmp_path):
    write_jpegs(tmp_path / "src")
    bad = tmp_path / "src" / "train" / "b" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # the header intact, the scan cut short
    with pytest.raises(DataError, match=r"cannot decode the image .*train/b/1\.jpg"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c")


def test_jpeg_headers_are_checked_before_torchvision_decodes_any(tmp_path, monkeypatch):
    from dynds_core.data import DataLimits, decode

    write_jpegs(tmp_path / "src", size=(40, 30))

    def no_decode(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(decode, "decode_jpegs", no_decode)
    with pytest.raises(DataError, match=r"40x30 = 1200 pixels, more than the limit of 1000"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c", limits=DataLimits(max_image_pixels=1000))
    Image.fromarray(np.zeros((31, 40, 3), np.uint8)).save(tmp_path / "src" / "test" / "b" / "9.jpg")
    with pytest.raises(DataError, match=r"9\.jpg is 40x31 but .* is 40x30"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c")


def test_directory_classes_come_from_torchvision_find_classes(tmp_path, monkeypatch):
    import torchvision.datasets.folder as tv_folder

    written = write_imagefolder(tmp_path / "src")
    base = tmp_path / "src" / "mini"
    (base / "train" / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(base / "train" / ".ipynb_checkpoints" / "0.png")
    (base / "train" / "ant" / "._000.png").write_bytes(b"macOS resource fork")  # hidden files are skipped
    (base / "train" / "ant" / "notes.txt").write_text("not an image")
    (base / "train" / "ant" / "deeper").mkdir()  # images below a class folder are not taken
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(base / "train" / "ant" / "deeper" / "0.png")
    (base / "train" / "bee" / "loop").symlink_to(base / "train" / "bee")  # a symlink loop walks nowhere
    seen = []
    real = tv_folder.find_classes
    monkeypatch.setattr(tv_folder, "find_classes", lambda d: seen.append(os.path.basename(d)) or real(d))
    ds = load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c")
    assert sorted(seen) == ["test", "train"]
    assert ds.classes == ["ant", "bee", "cat"] and np.array_equal(ds.train_x.numpy(), as_nchw(written["train"]))
    # Images under two top folders: two data sets, refused.
    write_imagefolder(tmp_path / "src", top="other")
    with pytest.raises(DataError, match="holds several data sets"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "c")


def test_imagefolder_unreadable_image_is_named(tmp_path):
    write_imagefolder(tmp_path / "src")
    (tmp_path / "src" / "mini" / "train" / "bee" / "001.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"cannot decode the image .*train/bee/001\.png"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "cache")
    # The same inside an archive, named by archive and member
    archive = make_tar(tmp_path / "src", tmp_path / "bad.tar.gz")
    with pytest.raises(DataError, match=r"bad\.tar\.gz:mini/train/bee/001\.png"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(archive)), cache_dir=tmp_path / "cache")


def test_imagefolder_mixed_sizes_are_named(tmp_path):
    write_imagefolder(tmp_path / "src")
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(tmp_path / "src" / "mini" / "test" / "cat" / "000.png")
    with pytest.raises(DataError, match=r"test/cat/000\.png is 8x7 but .* is 8x6"):
        load_dataset(DataSpec(dataset="imagefolder", root=str(tmp_path / "src")), cache_dir=tmp_path / "cache")


def test_imagefolder_layout_errors(tmp_path):
    def load(root):
        return load_dataset(DataSpec(dataset="imagefolder", root=str(root)), cache_dir=tmp_path / "cache")

    with pytest.raises(DataError, match="needs data.root"):
        load_dataset(DataSpec(dataset="imagefolder"), cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"nowhere does not exist.*train/<class>/<image>"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images in class folders"):
        load(tmp_path / "empty")
    write_imagefolder(tmp_path / "notest")
    for p in (tmp_path / "notest" / "mini" / "test").rglob("*.png"):
        p.unlink()
    with pytest.raises(DataError, match=r"has no test or val split.*splits found: train"):
        load(tmp_path / "notest")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match=r"cannot read the archive .*junk\.tar\.gz"):
        load(tmp_path / "junk.tar.gz")


# ---------------------------------------------------------------- subsets


def test_stratified_subset_keeps_proportions_and_is_seeded():
    y = torch.tensor([0] * 500 + [1] * 300 + [2] * 150 + [3] * 50)
    idx = stratified_subset(y, 100, seed=3)
    assert torch.bincount(y[idx]).tolist() == [50, 30, 15, 5]
    assert len(idx.unique()) == 100 and torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, stratified_subset(y, 100, seed=3))
    assert not torch.equal(idx, stratified_subset(y, 100, seed=4))
    odd = stratified_subset(y, 7, seed=0)  # 3.5, 2.1, 1.05, 0.35: the remainders decide
    assert torch.bincount(y[odd], minlength=4).tolist() == [4, 2, 1, 0]
    with pytest.raises(ValueError, match="between 1 and 1000"):
        stratified_subset(y, 1001, seed=0)


def test_load_dataset_subsets(tmp_path):
    spec = DataSpec(dataset="synthetic", synthetic_size=400, train_subset=100, val_subset=20)
    a, b, c = load_dataset(spec, seed=1), load_dataset(spec, seed=1), load_dataset(spec, seed=2)
    assert len(a.train_x) == 100 and torch.bincount(a.train_y).tolist() == [10] * 10
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    assert len(a.val_x) == 20 and torch.equal(a.val_x, c.val_x)  # validation images do not depend on the seed
    full = load_dataset(DataSpec(dataset="synthetic", synthetic_size=400))
    assert a.mean == full.mean  # normalization from the full training set
    with pytest.raises(DataError, match=r"train_subset is 500, but synthetic has only 400 train images"):
        load_dataset(DataSpec(dataset="synthetic", synthetic_size=400, train_subset=500))


# ---------------------------------------------------------------- augmentation


def reference_crop_flip(x: torch.Tensor, dy: int, dx: int, flip: bool, padding: int, mode: str) -> torch.Tensor:
    """One image at a time with F.pad and slicing: what the vectorised gather must equal."""
    h, w = x.shape[-2:]
    padded = F.pad(x[None].float(), [padding] * 4, mode="reflect" if mode == "reflect" else "constant")[0]
    out = padded[:, dy : dy + h, dx : dx + w]
    return (out.flip(-1) if flip else out).to(x.dtype)


@pytest.mark.parametrize("mode", ["reflect", "zero"])
def test_gather_crop_flip_equals_pad_then_crop(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 10, 12), dtype=torch.uint8, generator=g)
    index = torch.tensor([5, 0, 3, 3])
    dy, dx = torch.tensor([0, 8, 4, 2]), torch.tensor([8, 0, 4, 7])
    flip = torch.tensor([True, False, False, True])
    out = gather_crop_flip(x, index, dy, dx, flip, padding=4, pad_mode=mode)
    assert out.shape == (4, 3, 10, 12) and out.dtype == torch.uint8
    for k in range(4):
        expected = reference_crop_flip(x[index[k]], int(dy[k]), int(dx[k]), bool(flip[k]), 4, mode)
        assert torch.equal(out[k], expected), k


def test_random_crop_flip_is_seeded_and_changes_images():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    changed = (a != x).flatten(1).any(1).float().mean()
    assert changed > 0.9  # only an unshifted, unflipped draw (1 in 162) leaves an image as it was
    assert torch.equal(random_crop_flip(x, padding=0), x)
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        random_crop_flip(x, pad_mode="wrap")


def test_normalize():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = normalize(x, torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1))
    assert out.dtype == torch.float32 and out.flatten().tolist() == pytest.approx([-2.0, 2.0])
    assert normalize(x, None, None).flatten().tolist() == pytest.approx([0.0, 1.0])


def test_channel_stats_are_exact():
    x = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(2, 1, 1, 2).repeat(1, 2, 1, 1)
    x[:, 1] = 51
    mean, std = channel_stats(x)
    assert mean == pytest.approx((0.5, 0.2)) and std == pytest.approx((0.5, 1.0))  # constant channel: std 1


# ---------------------------------------------------------------- BatchLoader


def small_set(n=100, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def collect(loader, epoch):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch)]


def test_loader_order_depends_only_on_seed_and_epoch():
    x, y = small_set()
    kw = dict(batch_size=16, device="cpu", mean=(0.5,) * 3, std=(0.25,) * 3, augment=True)
    one, two = BatchLoader(x, y, seed=3, **kw), BatchLoader(x, y, seed=3, **kw)
    a, b = collect(one, 0), collect(two, 0)
    assert len(one) == 6 and len(a) == 6  # 100 // 16, the partial batch dropped
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert not torch.equal(torch.cat([p[1] for p in a]), torch.cat([p[1] for p in collect(one, 1)]))
    assert not torch.equal(torch.cat([p[1] for p in a]), torch.cat([p[1] for p in collect(BatchLoader(x, y, seed=4, **kw), 0)]))
    plain = collect(BatchLoader(x, y, seed=3, **{**kw, "augment": False}), 0)
    assert all(torch.equal(p[1], q[1]) for p, q in zip(a, plain, strict=True))  # augmentation does not change the order
    assert any(not torch.equal(p[0], q[0]) for p, q in zip(a, plain, strict=True))  # ... but does change the images


def test_loader_batches_are_augmented_images_of_their_labels():
    # Each image is filled with its own index: a crop of it stays that constant, so labels must match pixels.
    n = 40
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    y = torch.arange(n)
    loader = BatchLoader(x, y, batch_size=8, device="cpu", augment=True, seed=0, pad_mode="reflect")
    for images, labels in loader.epoch(0):
        assert torch.allclose(images * 255, labels.view(-1, 1, 1, 1).float().expand_as(images), atol=1e-4)


def test_eval_loader_covers_everything_in_order():
    x, y = small_set(n=50)
    ds_mean, ds_std = channel_stats(x)
    loader = BatchLoader(x, y, batch_size=16, device="cpu", mean=ds_mean, std=ds_std, shuffle=False, drop_last=False)
    batches = collect(loader, 0)
    assert len(loader) == 4 and [len(b[1]) for b in batches] == [16, 16, 16, 2]
    images = torch.cat([b[0] for b in batches])
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert images.mean(dim=(0, 2, 3)) == pytest.approx([0.0] * 3, abs=1e-4)
    assert images.std(dim=(0, 2, 3)) == pytest.approx([1.0] * 3, abs=1e-2)
    assert torch.allclose(images, normalize(x, loader.mean, loader.std))


def test_loader_channels_last_and_argument_errors():
    x, y = small_set()
    loader = BatchLoader(x, y, batch_size=32, device="cpu", augment=True, channels_last=True)
    images, _ = next(loader.epoch(0))
    assert images.is_contiguous(memory_format=torch.channels_last) and images.shape == (32, 3, 8, 8)
    plain = next(BatchLoader(x, y, batch_size=32, device="cpu", augment=True).epoch(0))[0]
    assert torch.equal(images, plain)
    with pytest.raises(ValueError, match="batch_size 128 is larger than the 100 images"):
        BatchLoader(x, y, batch_size=128, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        BatchLoader(x.float(), y, batch_size=8, device="cpu")
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        BatchLoader(x, y, batch_size=8, device="cpu", mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="reflect padding 8 needs images larger"):
        BatchLoader(x, y, batch_size=8, device="cpu", augment=True, padding=8)


def test_make_loaders_train_and_eval_settings():
    ds = load_dataset(DataSpec(dataset="synthetic", synthetic_size=100))
    train, val = make_loaders(ds, batch_size=32, device="cpu", seed=1, channels_last=True)
    assert (train.shuffle, train.augment, train.drop_last, len(train)) == (True, True, True, 3)
    assert (val.shuffle, val.augment, val.drop_last, len(val)) == (False, False, False, 1)
    images, labels = next(val.epoch(0))
    assert torch.equal(labels, ds.val_y) and images.is_contiguous(memory_format=torch.channels_last)
    assert images.mean().abs() < 0.2  # normalized with the data set's statistics
    raw, _ = next(make_loaders(ds, batch_size=32, device="cpu", normalize=False)[1].epoch(0))
    assert 0 <= raw.min() and raw.max() <= 1 and raw.mean() > 0.3


# ---------------------------------------------------------------- the real archive


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"{SHARED_ARCHIVE} not present")
def test_shared_cifar10_archive(tmp_path):
    ds = load_dataset(DataSpec(dataset="imagefolder", root=str(SHARED_ARCHIVE)), cache_dir=tmp_path)
    assert ds.train_x.shape == (50_000, 3, 32, 32) and ds.val_x.shape == (10_000, 3, 32, 32)
    assert ds.classes[0] == "airplane" and torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert [255 * m for m in ds.mean] == pytest.approx([125.3, 122.9, 113.9], abs=0.1)
    again = load_dataset(DataSpec(dataset="imagefolder", root=str(SHARED_ARCHIVE)), cache_dir=tmp_path)
    assert torch.equal(again.val_x, ds.val_x)
