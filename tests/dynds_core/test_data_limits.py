"""dynds_core.data's bounds and its data boundary: every limit and every escape, on tiny fixtures.

Bombs are kept tiny by passing small limits (a 2 MB member limit and a 3 MB member, ...).
"""

from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import make_tar, write_cifar10, write_fashion, write_imagefolder

from dynds_core.data import DEFAULT_LIMITS, DataError, DataLimits, data_policy, fashion_mnist, imagefolder, load_dataset
from dynds_core.data.decode import decode_image
from dynds_core.spec import DataSpec

MB = 1_000_000


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def small_archive(path: Path, extra=None) -> Path:
    """A valid train/test archive of 4x4 PNGs; ``extra(tar)`` adds hostile members first."""
    with tarfile.open(path, "w:gz") as tar:
        if extra:
            extra(tar)
        for split in ("train", "test"):
            for cls in ("a", "b"):
                add_bytes(tar, f"mini/{split}/{cls}/0.png", png(4, 4))
    return path


def imagefolder_spec(root: Path) -> DataSpec:
    return DataSpec(dataset="imagefolder", root=str(root))


# ---------------------------------------------------------------- limits


def test_limits_are_validated_and_pillow_is_set_deliberately():
    with pytest.raises(ValueError, match="max_file_bytes"):
        DataLimits(max_file_bytes=0)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= DEFAULT_LIMITS.max_image_pixels
    assert Image.MAX_IMAGE_PIXELS < 89_478_485  # below Pillow's own default: chosen, not inherited


def test_archive_member_past_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    # 3 MB of zeros compress to a few kB: the member "expands" past a 2 MB limit.
    archive = small_archive(tmp_path / "bomb.tar.gz", lambda tar: add_bytes(tar, "mini/train/a/big.png", bytes(3 * MB)))
    assert archive.stat().st_size < 100_000
    reads = []
    real_extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: reads.append(m.name) or real_extract(self, m))
    with pytest.raises(DataError, match=r"member 'mini/train/a/big.png' claims 3000000 bytes, more than the limit of 2000000"):
        load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c", limits=DataLimits(max_file_bytes=2 * MB))
    assert reads == []  # refused while streaming, before anything was read


def test_any_oversized_member_is_refused_even_one_that_is_not_an_image(tmp_path):
    archive = small_archive(tmp_path / "a.tar.gz", lambda tar: add_bytes(tar, "README", bytes(3 * MB)))
    with pytest.raises(DataError, match="README"):
        load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c", limits=DataLimits(max_file_bytes=2 * MB))
    # with the default limits the same archive loads
    assert load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c").train_x.shape == (2, 3, 4, 4)


def test_archive_total_past_the_limit_is_refused(tmp_path):
    def many(tar):
        for i in range(5):
            add_bytes(tar, f"pad/{i}.bin", bytes(MB))

    archive = small_archive(tmp_path / "a.tar.gz", many)
    with pytest.raises(DataError, match="more than the limit of 3000000 bytes"):
        load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c", limits=DataLimits(max_total_bytes=3 * MB))


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("symlink", "symbolic link"),
        ("hardlink", "hard link"),
        ("absolute", "absolute or '..'"),
        ("dotdot", "absolute or '..'"),
        ("fifo", "not a regular file"),
    ],
)
def test_archive_links_devices_and_escaping_names_are_refused(tmp_path, kind, expected):
    def hostile(tar):
        if kind in ("symlink", "hardlink"):
            info = tarfile.TarInfo("mini/train/a/link.png")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        elif kind == "fifo":
            info = tarfile.TarInfo("mini/train/a/pipe.png")
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
        else:
            add_bytes(tar, "/mini/train/a/x.png" if kind == "absolute" else "mini/train/../../x.png", png(4, 4))

    archive = small_archive(tmp_path / f"{kind}.tar.gz", hostile)
    with pytest.raises(DataError, match=expected):
        load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c")


def test_archive_image_count_is_bounded(tmp_path):
    archive = small_archive(tmp_path / "a.tar.gz")
    with pytest.raises(DataError, match="more than the limit of 3 images"):
        load_dataset(imagefolder_spec(archive), cache_dir=tmp_path / "c", limits=DataLimits(max_images=3))


def test_image_pixels_are_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    root = tmp_path / "big"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "0.png").write_bytes(png(300, 200))

    encoded = png(300, 200)

    def no_decode(self, *a, **k):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(Image.Image, "convert", no_decode)
    monkeypatch.setattr(Image.Image, "load", no_decode)
    with pytest.raises(DataError, match=r"the image .*0\.png is 300x200 = 60000 pixels, more than the limit of 10000"):
        load_dataset(imagefolder_spec(root), cache_dir=tmp_path / "c", limits=DataLimits(max_image_pixels=10_000))
    with pytest.raises(DataError, match="300x200"):
        decode_image(encoded, "x.png", max_pixels=10_000)


def test_an_image_of_another_size_is_refused_from_its_header(tmp_path, monkeypatch):
    root = tmp_path / "mixed"
    write_imagefolder(root, top=None, size=(8, 6))
    big = root / "train" / "cat" / "999.png"
    big.write_bytes(png(64, 64))
    decoded = []
    real = decode_image

    def spy(data, name, *args):
        out = real(data, name, *args)
        decoded.append(name)
        return out

    monkeypatch.setattr("dynds_core.data.decode.decode_image", spy)
    with pytest.raises(DataError, match=r"999\.png is 64x64 but .* is 8x6"):
        load_dataset(imagefolder_spec(root), cache_dir=tmp_path / "c")
    assert not any(n.endswith("999.png") for n in decoded)


def test_decoded_total_is_checked_before_decoding_any(tmp_path, monkeypatch):
    root = tmp_path / "f"
    write_imagefolder(root, top=None, size=(8, 6))  # 15 images of 8x6x3 = 2160 bytes decoded

    def no_decode(*a, **k):
        raise AssertionError("decoding started")

    monkeypatch.setattr(imagefolder, "decode_all", no_decode)
    with pytest.raises(DataError, match=r"15 images of 8x6 .* would decode to 2160 bytes, more than the limit of 2000"):
        load_dataset(imagefolder_spec(root), cache_dir=tmp_path / "c", limits=DataLimits(max_total_bytes=2000))


def test_directory_image_past_the_file_limit_is_refused_unread(tmp_path):
    root = tmp_path / "f"
    write_imagefolder(root, top=None)
    (root / "train" / "cat" / "huge.png").write_bytes(bytes(3000))
    with pytest.raises(DataError, match=r"huge\.png is 3000 bytes, more than the limit of 2000"):
        load_dataset(imagefolder_spec(root), cache_dir=tmp_path / "c", limits=DataLimits(max_file_bytes=2000))


def test_decode_cache_is_not_written_past_its_limit(tmp_path):
    root = tmp_path / "f"
    write_imagefolder(root, top=None)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="not cached"):
        ds = load_dataset(imagefolder_spec(root), cache_dir=cache, limits=DataLimits(max_cache_bytes=1000))
    assert ds.train_x.shape[0] == 9  # the data is still returned
    assert not any(p.is_file() for p in (cache / "imagefolder").rglob("*")) if (cache / "imagefolder").exists() else True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(imagefolder_spec(root), cache_dir=cache)  # ample default limit: written
    assert any(p.name == "meta.json" for p in (cache / "imagefolder").rglob("*"))


def test_fashion_gz_expanding_past_the_limit_is_refused(tmp_path):
    root = tmp_path / "fm"
    write_fashion(root, gz=True)
    bomb = gzip.compress(b"\x00\x00\x08\x03" + (100_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(3 * MB))
    (root / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz expands to more than the limit of 2000000"):
        load_dataset(DataSpec(dataset="fashion-mnist", root=str(root)), limits=DataLimits(max_file_bytes=2 * MB))


def test_synthetic_respects_the_total_limit():
    with pytest.raises(DataError, match="synthetic"):
        load_dataset(DataSpec(synthetic_size=64, image_size=32), limits=DataLimits(max_total_bytes=100_000))


# ---------------------------------------------------------------- the data boundary


def test_symlinked_image_inside_an_allowed_folder_pointing_outside_is_refused(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    write_imagefolder(allowed / "set", top=None)
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(8, 6))
    os.symlink(outside / "secret.png", allowed / "set" / "train" / "cat" / "zzz.png")
    with pytest.raises(DataError, match=r"zzz\.png resolves to .*secret\.png, outside the allowed data directories"):
        load_dataset(imagefolder_spec(allowed / "set"), cache_dir=tmp_path / "c", allowed_roots=[allowed])
    # the command line (no allowed roots) reads it; a symlink that stays inside is fine
    assert load_dataset(imagefolder_spec(allowed / "set"), cache_dir=tmp_path / "c").train_x.shape[0] == 10
    (allowed / "set" / "train" / "cat" / "zzz.png").unlink()
    os.symlink(allowed / "set" / "train" / "cat" / "000.png", allowed / "set" / "train" / "cat" / "zzz.png")
    assert load_dataset(imagefolder_spec(allowed / "set"), cache_dir=tmp_path / "c", allowed_roots=[allowed]).train_x.shape[0] == 10


def test_roots_outside_or_symlinked_outside_are_refused(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    write_imagefolder(outside / "set", top=None)
    archive = make_tar(outside / "set", outside / "set.tar.gz")
    os.symlink(outside / "set", allowed / "link")
    for root in (outside / "set", archive, allowed / "link", allowed / ".." / "outside" / "set"):
        with pytest.raises(DataError, match="outside the allowed data directories"):
            load_dataset(imagefolder_spec(root), cache_dir=tmp_path / "c", allowed_roots=[str(allowed)])


def test_data_policy_applies_to_every_load_inside(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    write_imagefolder(outside, top=None)
    with data_policy(allowed_roots=[allowed], limits=DataLimits(max_images=100)):
        with pytest.raises(DataError, match="outside"):
            load_dataset(imagefolder_spec(outside), cache_dir=tmp_path / "c")
    assert load_dataset(imagefolder_spec(outside), cache_dir=tmp_path / "c").train_x.shape[0] == 9


def test_cifar_files_outside_the_allowed_roots_are_refused(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    write_cifar10(outside)
    (allowed / "cifar-10-batches-py").mkdir(parents=True)
    for f in (outside / "cifar-10-batches-py").iterdir():
        os.symlink(f, allowed / "cifar-10-batches-py" / f.name)
    with pytest.raises(DataError, match=r"data_batch_1 resolves to .*outside"):
        load_dataset(DataSpec(dataset="cifar10", root=str(allowed)), allowed_roots=[allowed])
    assert len(load_dataset(DataSpec(dataset="cifar10", root=str(allowed)), allowed_roots=[tmp_path]).train_y) == 100


def test_cifar_default_root_is_checked_too(tmp_path, monkeypatch):
    from dynds_core.data import base

    default = tmp_path / "default"
    write_cifar10(default)
    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", default)
    with pytest.raises(DataError, match="data.root .* outside"):
        load_dataset(DataSpec(dataset="cifar10"), allowed_roots=[tmp_path / "elsewhere"])
    assert len(load_dataset(DataSpec(dataset="cifar10"), allowed_roots=[tmp_path]).train_y) == 100


def test_fashion_default_folders_outside_the_allowed_roots_are_not_read(tmp_path, monkeypatch):
    default, system = tmp_path / "default", tmp_path / "system"
    write_fashion(system, gz=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_ROOT", system)
    monkeypatch.setattr("dynds_core.data.base.DEFAULT_DATA_ROOT", default)
    with pytest.raises(DataError, match="resolve outside the allowed data directories"):
        load_dataset(DataSpec(dataset="fashion-mnist"), allowed_roots=[default])
    assert len(load_dataset(DataSpec(dataset="fashion-mnist"), allowed_roots=[system]).train_y) == 30


def test_a_crafted_cifar_pickle_runs_no_code(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (builtins.open, (str(marker), "w"))

    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR batch and was refused unread: it refers to (io|builtins)\.open"):
        load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def test_cifar_files_past_the_file_limit_are_refused(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="data_batch_1 is .* bytes, more than the limit of 1000"):
        load_dataset(DataSpec(dataset="cifar10", root=str(tmp_path)), limits=DataLimits(max_file_bytes=1000))


# ---------------------------------------------------------------- JPEG headers read before torchvision decodes


def jpeg(w: int, h: int, mode: str = "RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="JPEG", **save)
    return buf.getvalue()


def with_frame_size(data: bytes, w: int, h: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) claiming w x h: a decompression bomb of a few hundred bytes."""
    i = next(k for k in range(2, len(data) - 1) if data[k] == 0xFF and data[k + 1] in (0xC0, 0xC2))
    return data[: i + 5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + data[i + 9 :]


def test_jpeg_header_reads_the_frame_size_and_leaves_the_rest_to_pillow():
    from dynds_core.data.decode import jpeg_header

    assert jpeg_header(jpeg(40, 30)) == ((40, 30), "RGB")
    assert jpeg_header(jpeg(7, 5, "L")) == ((7, 5), "L")
    assert jpeg_header(jpeg(9, 4, progressive=True)) == ((9, 4), "RGB")
    assert jpeg_header(jpeg(8, 8, "CMYK")) is None  # 4 components: Pillow converts them
    assert jpeg_header(png(8, 8)) is None and jpeg_header(b"") is None and jpeg_header(b"\xff\xd8\xff") is None
    assert jpeg_header(jpeg(40, 30)[:12]) is None  # cut before the frame header
    assert jpeg_header(with_frame_size(jpeg(4, 4), 65000, 65000)) == ((65000, 65000), "RGB")


@pytest.mark.parametrize("progressive", [False, True])
def test_a_crafted_jpeg_frame_size_is_refused_before_anything_is_decoded(tmp_path, monkeypatch, progressive):
    from dynds_core.data import decode

    def no_decode(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(decode, "decode_jpegs", no_decode)
    monkeypatch.setattr(decode, "decode_image", no_decode)
    bomb = with_frame_size(jpeg(4, 4, progressive=progressive), 60000, 60000)  # 10.8 GB decoded
    with pytest.raises(DataError, match=r"60000x60000 = 3600000000 pixels, more than the limit"):
        decode.decode_many([("bomb.jpg", bomb, None)])
