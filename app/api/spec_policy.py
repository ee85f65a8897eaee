"""What a spec submitted over HTTP must satisfy, with errors in FastAPI's 422 format.

    spec = parse_spec_request(body.spec, settings)     # JobSpec, or RequestValidationError (422)

Beyond JobSpec's own validation: data may only come from the configured data directories (paths are
resolved first, so `..` and symlinks cannot escape; a null root is checked as the loader's default
place), the data must exist, `download` needs the server's permission, the device and pinned hardware must
be of a kind DYNDS_DEVICES declares (when set: without it the live workers decide, at submission), a
batch may not exceed a training set of known size, and one job's cost is capped by the settings. A spec
(or sweep base) nested deeper than ``max_spec_depth`` is refused before anything copies or validates it;
an empty spec is refused (``{"defaults": true}`` asks for every default).
The worker checks the data boundary again when it reads (dynds_core.data's ``allowed_roots``).
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.core.config import Settings
from app.fleet.routing import declared_kinds
from app.leaderboard import frontier_epochs
from dynds_core.hardware import requested_queue
from dynds_core.spec import DEFAULTS_KEY, JobSpec, SpecError, empty_spec_problem

SPEC_LOC = ("body", "spec")


def _split_path(path: str) -> list[str | int]:
    # Only ASCII decimal digits make an index: "²".isdigit() is True but int("²") fails.
    return [int(p) if p.isascii() and p.isdigit() else p for p in path.split(".")] if path else []


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests dicts/lists more than ``limit`` levels deep (iterative: no RecursionError)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list, tuple)))
    return False


def _depth_error(loc: list, settings: Settings) -> dict[str, Any]:
    return {"loc": loc, "msg": f"nested more than {settings.max_spec_depth} levels deep; a spec needs a few", "type": "value_error.depth"}


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


def _get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _policy_errors(data: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The server's own limits, checked on the raw values so they are reported with JobSpec's errors."""
    limits = (
        ("train.epochs", settings.max_epochs),
        ("train.batch_size", settings.max_batch_size),
        ("data.train_subset", settings.max_train_subset),
        ("data.val_subset", settings.max_val_subset),
        ("data.synthetic_size", settings.max_synthetic_size),
        ("data.image_size", settings.max_image_size),
    )
    errors = []
    for path, limit in limits:
        value = _get(data, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            errors.append(
                {
                    "loc": _split_path(path),
                    "msg": f"must be at most {limit} on this server (got {value})",
                    "type": "value_error.bound",
                    "input": value,
                }
            )
    root = _get(data, "data.root")
    if isinstance(root, str):
        reason = data_root_error(root, settings)
        if reason:
            errors.append({"loc": ["data", "root"], "msg": reason, "type": "value_error.data_dir", "input": root})
    if _get(data, "data.download") is True and not settings.allow_download:
        errors.append({
            "loc": ["data", "download"], "msg": "downloads are off on this server (DYNDS_ALLOW_DOWNLOAD); "
            "put the data set in one of its data directories and set data.root", "type": "value_error.download", "input": True,
        })  # fmt: skip
    return errors


def _spec_errors(spec: JobSpec, settings: Settings) -> list[dict[str, Any]]:
    """Checks that need the validated spec: where its data is (default places included) and that it
    exists, the batch against a training set of known size, and the device against DYNDS_DEVICES when set."""
    errors = []
    d = spec.data
    if d.dataset != "synthetic":
        root_error = _data_location_error(d.dataset, d.root, settings)
        if root_error:
            errors.append({"loc": ["data", "root"], "msg": root_error, "type": "value_error.data_dir", "input": d.root})
    n_train = d.train_subset if d.train_subset is not None else (d.synthetic_size if d.dataset == "synthetic" else None)
    if n_train is not None and spec.train.batch_size > n_train:
        what = "data.train_subset" if d.train_subset is not None else "data.synthetic_size"
        errors.append({
            "loc": ["train", "batch_size"], "msg": f"train.batch_size {spec.train.batch_size} is larger than the training set "
            f"({what}: {n_train}): no full batch would be left; lower it to at most {n_train}", "type": "value_error.batch_size",
            "input": spec.train.batch_size,
        })  # fmt: skip
    if settings.devices is not None:
        errors += declared_device_errors(spec, settings.devices)
    return errors


def declared_device_errors(spec: JobSpec, declared: list[str]) -> list[dict[str, Any]]:
    """The device or pinned hardware a spec asks for against DYNDS_DEVICES, an operator's override of what the
    live workers offer (e.g. GPU workers started on demand): a kind not declared, or a ``cuda:N`` past the
    declared count, is refused. Without it the live workers decide, at submission (app/api/routes/jobs.py)."""
    offered = tuple(declared)
    device = spec.train.device
    if device.startswith("cuda"):
        index = int(device[5:]) if device.startswith("cuda:") else 0
        count = sum(1 for o in offered if o == "cuda" or o.startswith("cuda:"))
        if "cuda" in offered and not any(o.startswith("cuda:") for o in offered):
            count = max(count, index + 1)  # "cuda" declared without a count: any index is the workers' business
        if index >= count:
            return [{
                "loc": ["train", "device"], "msg": f"train.device {device!r} is not offered here (devices: {', '.join(offered)}); "
                "use auto or cpu", "type": "value_error.device", "input": device,
            }]  # fmt: skip
    pin = getattr(spec.train, "hardware", "auto")
    kind = (requested_queue(device, pin) or "").split(".")[0] if pin != "auto" else ""
    if kind and kind not in declared_kinds(offered):
        return [{
            "loc": ["train", "hardware"], "msg": f"train.hardware {pin!r} is {kind} hardware, which is not offered here "
            f"(devices: {', '.join(offered)}); use auto or hardware of those", "type": "value_error.device", "input": pin,
        }]  # fmt: skip
    return []


def _data_location_error(dataset: str, root: str | None, settings: Settings) -> str | None:
    """Why the data a spec names cannot be read here (outside the data dirs, absent, or a symlink inside
    it pointing out), or None."""
    from dynds_core.data.base import data_root
    from dynds_core.data.fashion_mnist import find_fashion_files

    if root is not None:
        if data_root_error(root, settings):
            return None  # already reported by _policy_errors
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


def spec_errors(data: Any, settings: Settings) -> tuple[JobSpec | None, list[dict[str, Any]]]:
    """(spec, []) when ``data`` may run here, else (spec or None, errors) with locs relative to the spec.

    Every key path is reported: JobSpec's own errors and the server's limits together, one per path.
    """
    if not isinstance(data, dict):
        return None, [{"loc": [], "msg": f"expected a mapping of spec sections, got {type(data).__name__}", "type": "dict_type"}]
    if too_deep(data, settings.max_spec_depth):
        return None, [_depth_error([], settings)]
    problem = empty_spec_problem(data)
    if problem:
        return None, [{"loc": _split_path(problem[0]), "msg": problem[1], "type": "value_error.empty_spec"}]
    if data == {DEFAULTS_KEY: True}:
        data = {}
    spec, errors = None, []
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        friendly = SpecError.from_validation("request", exc).errors
        errors = [{"loc": _split_path(path), "msg": msg, "type": raw["type"]} for (path, msg), raw in zip(friendly, exc.errors(), strict=True)]
    seen = {tuple(e["loc"]) for e in errors}
    errors += [e for e in _policy_errors(data, settings) if tuple(e["loc"]) not in seen]
    if spec is not None and not errors:
        errors += _spec_errors(spec, settings)
    return (spec, errors)


def parse_spec_request(data: Any, settings: Settings, *, loc: tuple = SPEC_LOC) -> JobSpec:
    spec, errors = spec_errors(data, settings)
    if errors:
        raise RequestValidationError([{**e, "loc": [*loc, *e["loc"]]} for e in errors])
    return spec


# ---------------------------------------------------------------- sweeps

_DEFAULTS = JobSpec().canonical()


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def set_dotted(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``path`` (e.g. "dynds.schedule.p") set; missing sections start from the defaults.

    >>> set_dotted({}, "train.seed", 3)["train"]["seed"]
    3
    """
    keys = path.split(".")
    bad = next((k for k in keys if not _KEY.fullmatch(k)), None)
    if bad is not None:
        raise ValueError(
            f"cannot set {path!r}: {bad!r} is not a spec key (ASCII letters, digits and _, not starting with a digit; parts separated by single dots)"
        )
    out = copy.deepcopy(spec)
    node, default = out, _DEFAULTS
    for key in keys[:-1]:
        default = default.get(key) if isinstance(default, dict) else None
        if key not in node:
            node[key] = copy.deepcopy(default) if isinstance(default, dict) else {}
        node = node[key]
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {path}: {key} is not a section")
    node[keys[-1]] = value
    return out


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``, in grid order.

    >>> grid_points({"a": [1, 2], "b": [0]})
    [{'a': 1, 'b': 0}, {'a': 2, 'b': 0}]
    """
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


FRONTIER_BASELINE = {"dynds.schedule": [{"kind": "none"}], "baseline": [False], "equal_time_baseline": [False]}


def effective_grid(
    base: dict[str, Any], grid: dict[str, list[Any]], seeds: list[int] | None = None, preset: str | None = None
) -> dict[str, list[Any]]:
    """The grid a sweep expands: ``grid``, then the preset's keys, then ``train.seed`` over ``seeds`` (innermost).

    preset "frontier": the base spec's baseline alone (schedule none, no paired or equal-time
    baseline) at 25/50/75/100 % of its train.epochs (``app.leaderboard.frontier_epochs``); the grid
    must be empty. 422 for a grid with a preset and for seeds given both ways.
    """
    errors: list[dict[str, Any]] = []
    if preset is not None and grid:
        errors.append(
            {
                "loc": ["body", "grid"],
                "msg": f"a sweep with preset {preset!r} takes no grid (got keys {', '.join(grid)})",
                "type": "value_error.preset_grid",
            }
        )
    if seeds is not None and "train.seed" in grid:
        errors.append(
            {"loc": ["body", "seeds"], "msg": "give the seeds either as seeds or as the grid key train.seed, not both", "type": "value_error.seeds"}
        )
    if errors:
        raise RequestValidationError(errors)
    out = dict(grid)
    if preset == "frontier":
        epochs = _get(base, "train.epochs")
        if epochs is None:
            epochs = _DEFAULTS["train"]["epochs"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise RequestValidationError(
                [
                    {
                        "loc": ["body", "base", "train", "epochs"],
                        "msg": f"the frontier preset needs train.epochs >= 1 (got {epochs!r})",
                        "type": "value_error.preset",
                    }
                ]
            )
        out.update(FRONTIER_BASELINE)
        out["train.epochs"] = frontier_epochs(epochs)
    if seeds is not None:
        out["train.seed"] = list(seeds)
    return out


def sweep_specs(base: Any, grid: dict[str, list[Any]], settings: Settings) -> list[JobSpec]:
    """Every grid point as a validated spec, or one 422 listing each bad grid key/value (and base field).

    Seeds and presets are expanded into the grid first (``effective_grid``).
    """
    errors: list[dict[str, Any]] = []
    if not isinstance(base, dict):
        raise RequestValidationError([{"loc": ["body", "base"], "msg": "expected a mapping of spec sections", "type": "dict_type"}])
    # Before any deepcopy (set_dotted): a base or value nested 900 levels deep was a RecursionError.
    if too_deep(base, settings.max_spec_depth):
        raise RequestValidationError([_depth_error(["body", "base"], settings)])
    for key, values in grid.items():
        if too_deep(values, settings.max_spec_depth):
            raise RequestValidationError([_depth_error(["body", "grid", key], settings)])
        bad = next((k for k in key.split(".") if not _KEY.fullmatch(k)), None)
        if bad is not None:
            errors.append({
                "loc": ["body", "grid", key], "msg": f"grid key {key!r}: {bad!r} is not a spec key (ASCII letters, digits "
                "and _, not starting with a digit; parts separated by single dots, e.g. dynds.schedule.p)", "type": "value_error.path",
            })  # fmt: skip
    for key, values in grid.items():
        if not values:
            errors.append({"loc": ["body", "grid", key], "msg": f"grid key {key} needs at least one value", "type": "value_error.empty"})
    n = 1
    for values in grid.values():
        n *= max(len(values), 1)
    if n > settings.max_sweep_points:
        errors.append(
            {
                "loc": ["body", "grid"],
                "msg": f"the grid has {n} points; at most {settings.max_sweep_points} are allowed",
                "type": "value_error.too_many",
            }
        )
    if errors:
        raise RequestValidationError(errors)

    specs: list[JobSpec] = []
    seen: set[tuple] = set()
    for point in grid_points(grid):
        data = base
        try:
            for k, v in point.items():
                data = set_dotted(data, k, v)
        except ValueError as exc:
            for k in point:
                errors.append({"loc": ["body", "grid", k], "msg": str(exc), "type": "value_error.path"})
            continue
        spec, errs = spec_errors(data, settings)
        for e in errs:
            path = ".".join(str(p) for p in e["loc"])
            key = next((k for k in point if path == k or path.startswith(k + ".")), None)
            if key is not None:
                loc = ["body", "grid", key, grid[key].index(point[key])]
                msg = f"{key}={point[key]!r}: {e['msg']}"
            else:
                loc, msg = ["body", "base", *e["loc"]], e["msg"]
            sig = (tuple(loc), msg)
            if sig not in seen:
                seen.add(sig)
                errors.append({"loc": loc, "msg": msg, "type": e["type"]})
        if not errs:
            specs.append(spec)
    if errors:
        raise RequestValidationError(errors)
    return specs
