"""Image decoding with Pillow, run in worker processes: this module imports neither torch nor the
rest of the package, so a spawned worker starts in a fraction of a second."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError  # imported before any fork: a child must not import under a held lock

from .errors import DataError
from .limits import DEFAULT_LIMITS

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# Set deliberately (Pillow's default is ~89 M pixels): Pillow warns past this and refuses past twice
# it, as a last line behind our own header check (DataLimits.max_image_pixels, per caller).
Image.MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_image_pixels


def image_size(data: bytes, name: str, max_pixels: int = DEFAULT_LIMITS.max_image_pixels) -> tuple[int, int]:
    """(width, height) from the header alone (nothing decoded); DataError past ``max_pixels``."""
    _allow(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(name, exc) from None
    _check_pixels(size, name, max_pixels)
    return size


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
        f"cannot decode the image {name} ({exc}); replace or remove the file so that every file in the "
        "class folders is a readable image."
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
            if expect is not None and im.size != expect[0]:
                (w, h), other = expect
                raise DataError(
                    f"the image {name} is {im.size[0]}x{im.size[1]} but {other} is {w}x{h}; "
                    "every image must have the same size: resize them beforehand."
                )
            im = im.convert("L") if im.mode in GREY_MODES else im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
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


def decode_many(
    items: list[tuple[str, bytes | None, str | None]],
    max_pixels: int = DEFAULT_LIMITS.max_image_pixels,
    expect: tuple[tuple[int, int], str] | None = None,
    max_bytes: int = DEFAULT_LIMITS.max_file_bytes,
) -> list[np.ndarray]:
    """Decode (name, encoded bytes or None, path to read when the bytes are None) in order."""
    out = []
    for name, data, path in items:
        if data is None:
            data = read_image_file(name, path, max_bytes)
        out.append(decode_image(data, name, max_pixels, expect))
    return out
