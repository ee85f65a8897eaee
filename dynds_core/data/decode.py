"""Image decoding, run in (forked) worker processes. Every image's header is checked before any of its
pixels is decoded. Baseline and progressive 8-bit grey or colour JPEGs are then decoded in one batched
call of torchvision's ``decode_jpeg`` (libjpeg-turbo; the same pixels as Pillow, which uses libjpeg-turbo
too), their header read by :func:`jpeg_header` (the frame header's size and components, a few
microseconds; Pillow's header parse costs as much as torchvision's decode of a 32x32 JPEG); every other
image (PNG, BMP, CMYK or 12-bit JPEG, ...) is checked and decoded by Pillow. torch and torchvision are
imported on first use (:func:`prepare_jpeg`)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, cast

import numpy as np
from PIL import Image, UnidentifiedImageError  # imported before any fork: a child must not import under a held lock

from .errors import DataError
from .limits import DEFAULT_LIMITS

# Frame markers whose JPEGs torchvision decodes: baseline, extended and progressive Huffman (SOF0-2).
# Arithmetic-coded, lossless and hierarchical JPEGs, 12-bit ones and CMYK/YCCK (4 components, whose
# conversion to RGB Pillow does its own way) stay with Pillow.
TORCHVISION_SOF = (0xC0, 0xC1, 0xC2)
_OTHER_SOF = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# Set deliberately (Pillow's default is ~89 M pixels): Pillow warns past this and refuses past twice
# it, as a last line behind our own header check (DataLimits.max_image_pixels, per caller).
Image.MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_image_pixels


def image_size(data: bytes, name: str, max_pixels: int = DEFAULT_LIMITS.max_image_pixels) -> tuple[int, int]:
    """(width, height) from the header alone (nothing decoded); DataError past ``max_pixels``."""
    return image_header(data, name, max_pixels)[0]


def image_header(
    data: bytes, name: str, max_pixels: int = DEFAULT_LIMITS.max_image_pixels, expect: tuple[tuple[int, int], str] | None = None
) -> tuple[tuple[int, int], str, str]:
    """((width, height), Pillow's format, Pillow's mode) from the header alone (nothing decoded); DataError
    past ``max_pixels`` or, with ``expect`` ((width, height), the file that has that size), of another size."""
    _allow(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            size, fmt, mode = im.size, im.format or "", im.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(name, exc) from None
    _check_pixels(size, name, max_pixels)
    if expect is not None:
        _check_expected(size, name, expect)
    return size, fmt, mode


def _check_expected(size: tuple[int, int], name: str, expect: tuple[tuple[int, int], str]) -> None:
    if size != expect[0]:
        (w, h), other = expect
        raise DataError(
            f"the image {name} is {size[0]}x{size[1]} but {other} is {w}x{h}; every image must have the same size: resize them beforehand."
        )


def _allow(max_pixels: int) -> None:
    # A caller's limit above Pillow's must not be cut short by Pillow's own bomb check.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise DataError(
            f"the image {name} is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels} pixels per image; "
            "it is not decoded: shrink the images beforehand (or raise the limit)."
        )


def _unreadable(name: str, exc: Exception) -> DataError:
    return DataError(
        f"cannot decode the image {name} ({exc}); replace or remove the file so that every file in the class folders is a readable image."
    )


def decode_image(
    data: bytes, name: str, max_pixels: int = DEFAULT_LIMITS.max_image_pixels, expect: tuple[tuple[int, int], str] | None = None
) -> np.ndarray:
    """(H, W) uint8 for grey images, (H, W, 3) for everything else; DataError naming ``name`` if unreadable.

    The header is checked before any pixel is decoded: at most ``max_pixels`` pixels, and when
    ``expect`` is ((width, height), the file that has that size) exactly that size.
    """
    _allow(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_pixels(im.size, name, max_pixels)
            if expect is not None:
                _check_expected(im.size, name, expect)
            pixels = im.convert("L") if im.mode in GREY_MODES else im.convert("RGB")
            return np.asarray(pixels, dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(name, exc) from None


def read_image_file(name: str, path: str, max_bytes: int) -> bytes:
    """The encoded bytes of an image file, refused (DataError naming it) past ``max_bytes``."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"cannot read the image {name}: {exc.strerror or exc}.") from None
    if len(data) > max_bytes:
        raise DataError(f"the image {name} is larger than the limit of {max_bytes} bytes per file; it is not read.")
    return data


class _TorchvisionJpeg(NamedTuple):
    torch: Any  # the module, imported with the decoder (not at import time: see the module docstring)
    decode_jpeg: Callable[..., Any]
    modes: dict[str, Any]  # "RGB" / "L" -> torchvision's ImageReadMode


_TV: _TorchvisionJpeg | Literal[False] | None = None  # None until prepare_jpeg; False when unavailable


def prepare_jpeg() -> bool:
    """Import torchvision's JPEG decoder now (before forking workers, so that each need not import it);
    False where torchvision has no image ops (then Pillow decodes every image)."""
    global _TV
    if _TV is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import torch
                from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

                decode_jpeg(encode_jpeg(torch.zeros(1, 1, 1, dtype=torch.uint8)))  # the image ops are there
            _TV = _TorchvisionJpeg(torch, decode_jpeg, {"RGB": ImageReadMode.RGB, "L": ImageReadMode.GRAY})
        except Exception:  # no torchvision, or built without its image library
            _TV = False
    return bool(_TV)


def jpeg_header(data: bytes) -> tuple[tuple[int, int], str] | None:
    """((width, height), "L" or "RGB") from the frame header of an 8-bit baseline or progressive JPEG
    with 1 or 3 components; None for anything else (then Pillow reads and checks the header).

    Walks the marker segments up to the first frame header (SOF), as libjpeg does; nothing is decoded.
    A file that is not such a JPEG, or whose segments are damaged, gives None, never an error.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA) or marker in _OTHER_SOF:  # end or scan before a frame header, or a frame Pillow takes
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in TORCHVISION_SOF:
            if length < 8 or i + 10 > n:
                return None
            precision, components = data[i + 4], data[i + 9]
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            if precision != 8 or components not in (1, 3) or not width or not height:
                return None  # a height of 0 is set later by a DNL marker: Pillow's business
            return (width, height), "L" if components == 1 else "RGB"
        i += 2 + length
    return None


def decode_jpegs(items: list[tuple[str, bytes, str, tuple[int, int]]]) -> list[np.ndarray]:
    """(C, H, W) uint8 arrays of JPEGs (name, bytes, "L" or "RGB", (width, height) from the header),
    decoded by torchvision's ``decode_jpeg`` in one batched call per mode. Every header must have been
    checked already (:func:`jpeg_header`, the limits): libjpeg allocates what the header asks for."""
    if not _TV:
        raise RuntimeError("decode_jpegs needs torchvision's JPEG decoder: check prepare_jpeg() first")
    torch, decode_jpeg, modes = _TV
    out: list[np.ndarray | None] = [None] * len(items)
    for mode, read_mode in modes.items():
        index = [i for i, item in enumerate(items) if item[2] == mode]
        if not index:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points at TorchCodec
            # Read-only bytes (torch warns that its tensor could write them; decode_jpeg only reads):
            # 20x cheaper than a writable copy (bytearray), which costs as much as the decode.
            warnings.filterwarnings("ignore", "The given buffer is not writable", UserWarning)
            tensors = [torch.frombuffer(items[i][1], dtype=torch.uint8) for i in index]
            try:
                decoded = decode_jpeg(tensors, mode=read_mode)
            except RuntimeError:  # one of them is damaged: decode them singly to name it
                decoded = [_decode_one(decode_jpeg, t, read_mode, items[i][0]) for i, t in zip(index, tensors, strict=True)]
        for i, t in zip(index, decoded, strict=True):
            name, _data, _mode, (w, h) = items[i]
            if tuple(t.shape[1:]) != (h, w):  # never seen: libjpeg follows the header that was checked
                raise DataError(f"the image {name} decoded to {t.shape[2]}x{t.shape[1]}, but its header says {w}x{h}.")
            out[i] = t.numpy()
    return cast(list[np.ndarray], out)  # every slot set: each item has one of the modes


def _decode_one(decode_jpeg, tensor, read_mode, name: str):
    try:
        return decode_jpeg(tensor, mode=read_mode)
    except RuntimeError as exc:
        raise _unreadable(name, RuntimeError(str(exc).rsplit(", ", 1)[-1].strip())) from None


def _chw(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1) if a.ndim == 3 else a[None]


def decode_many(
    items: list[tuple[str, bytes | None, str | None]],
    max_pixels: int = DEFAULT_LIMITS.max_image_pixels,
    expect: tuple[tuple[int, int], str] | None = None,
    max_bytes: int = DEFAULT_LIMITS.max_file_bytes,
    jpeg: str = "torchvision",
) -> list[np.ndarray]:
    """Decode (name, encoded bytes or None, path to read when the bytes are None) in order, into
    (C, H, W) uint8 arrays (C = 1 for grey images, else 3).

    Every image's header is checked before any pixel of it is decoded. ``jpeg``: "torchvision" (the
    JPEGs :func:`jpeg_header` reads, in one batched ``decode_jpeg`` call) or "pillow" (every image with
    Pillow, as before).
    """
    if jpeg not in ("torchvision", "pillow"):
        raise ValueError(f"jpeg must be 'torchvision' or 'pillow', not {jpeg!r}")
    use_tv = jpeg == "torchvision" and prepare_jpeg()
    out: list[np.ndarray | None] = [None] * len(items)
    batch, where = [], []
    for i, (name, data, path) in enumerate(items):
        if data is None:
            if path is None:
                raise ValueError(f"the image {name} has neither bytes nor a path to read them from")
            data = read_image_file(name, path, max_bytes)
        if use_tv:
            header = jpeg_header(data)
            if header is not None:
                size, mode = header
                _check_pixels(size, name, max_pixels)
                if expect is not None:
                    _check_expected(size, name, expect)
                batch.append((name, data, mode, size))
                where.append(i)
                continue
        out[i] = _chw(decode_image(data, name, max_pixels, expect))
    if batch:
        for i, a in zip(where, decode_jpegs(batch), strict=True):
            out[i] = a
    return cast(list[np.ndarray], out)  # every slot set: by Pillow above or by decode_jpegs here
