"""Image decoding with Pillow, run in worker processes: this module imports neither torch nor the
rest of the package, so a spawned worker starts in a fraction of a second."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError  # imported before any fork: a child must not import under a held lock

from .errors import DataError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def decode_image(data: bytes, name: str) -> np.ndarray:
    """(H, W) uint8 for grey images, (H, W, 3) for everything else; DataError naming ``name`` if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("L") if im.mode in GREY_MODES else im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"cannot decode the image {name} ({exc}); replace or remove the file so that every file in the "
            "class folders is a readable image."
        ) from None


def decode_many(items: list[tuple[str, bytes | None, str | None]]) -> list[np.ndarray]:
    """Decode (name, encoded bytes or None, path to read when the bytes are None) in order."""
    out = []
    for name, data, path in items:
        if data is None:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read the image {name}: {exc.strerror or exc}.") from None
        out.append(decode_image(data, name))
    return out
