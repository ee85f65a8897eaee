"""Where a spec's data may come from: inside the configured data directories, existing, and with no
symlink inside leading out.

    data_root_error("/srv/data/cifar10", settings)        # None, or why (naming the allowed directories)
    data_location_error("cifar10", None, settings)        # a null root is checked as the loader's default place

Paths are resolved first, so `..` and symlinks cannot escape. The worker checks the same boundary again when
it reads (dynds_core.data's ``allowed_roots``).
"""

from __future__ import annotations

import os

from app.core.config import Settings


def data_root_error(root: str, settings: Settings) -> str | None:
    """None when ``root`` lies inside an allowed data directory, else the reason (naming what is allowed)."""
    allowed = settings.allowed_data_dirs
    listed = ", ".join(allowed) or "(none configured)"
    if "\x00" in root:
        return "data.root must not contain NUL bytes (\\x00)"
    if not os.path.isabs(os.path.expanduser(root)):
        return f"data.root must be an absolute path inside one of the server's data directories ({listed}), got {root!r}"
    real = os.path.realpath(os.path.expanduser(root))
    if any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in allowed):
        return None
    return (
        f"data.root {root!r} (resolved: {real}) is outside the server's data directories ({listed}); "
        "put the data set there or ask the admin to add its directory to DYNDS_DATA_DIRS"
    )


def data_location_error(dataset: str, root: str | None, settings: Settings) -> str | None:
    """Why the data a spec names cannot be read here (outside the data dirs, absent, or a symlink inside
    it pointing out), or None."""
    from dynds_core.data.base import data_root
    from dynds_core.data.fashion_mnist import find_fashion_files

    if root is not None:
        if data_root_error(root, settings):
            return None  # already reported by spec_policy's bounds (data_root_error)
        real = os.path.realpath(os.path.expanduser(root))
        if not os.path.exists(real):
            return f"data.root {root!r} does not exist on this server; put the data set there or correct the path"
        return _escape_error(real, settings)
    allowed = settings.allowed_data_dirs
    listed = ", ".join(allowed) or "(none configured)"
    if dataset == "imagefolder":
        return "dataset imagefolder needs data.root: a directory or .tar.gz inside the server's data directories"
    if dataset == "fashion-mnist":
        found, folders, _ = find_fashion_files(None, tuple(allowed))
        if found is None:
            return (
                f"data.root is null: the default places ({', '.join(map(str, folders))}) hold no Fashion-MNIST inside the "
                f"server's data directories ({listed}); set data.root to the folder that holds its IDX files"
            )
        return None
    default = str(data_root(None))  # cifar10/cifar100: the loader's default folder
    reason = data_root_error(default, settings)
    if reason:
        return f"data.root is null, which means the default folder {default}; it is outside the server's data directories ({listed}): set data.root"
    if not os.path.isdir(default):
        return f"data.root is null, which means the default folder {default}; it does not exist on this server: set data.root"
    return _escape_error(default, settings)


def _escape_error(folder: str, settings: Settings) -> str | None:
    """Why a data folder cannot be read (a symlink somewhere inside it points outside the data
    directories, or it is too large to search), or None; a file (an archive) has nothing inside to check
    here: its members are read from the archive, never from the filesystem."""
    from dynds_core.data import DataError
    from dynds_core.data.limits import find_escape, normalize_roots

    if not os.path.isdir(folder):
        return None
    roots = normalize_roots(settings.allowed_data_dirs) or ()
    try:
        escape = find_escape(folder, roots, max_entries=2 * settings.data_limits.max_images + 10_000)
    except DataError as exc:
        return str(exc)
    if escape is None:
        return None
    path, real = escape
    return (
        f"{path} inside data.root is a symlink to {real}, outside the server's data directories "
        f"({', '.join(settings.allowed_data_dirs)}); a job may read only inside them: remove the link or copy the data in"
    )
