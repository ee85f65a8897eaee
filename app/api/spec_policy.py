"""What a spec submitted over HTTP must satisfy, with errors in FastAPI's 422 format.

    spec = parse_spec_request(body.spec, settings)     # JobSpec, or RequestValidationError (422)

Beyond JobSpec's own validation: data may only come from the configured data directories (paths are
resolved first, so `..` and symlinks cannot escape), and one job's cost is capped by the settings.
"""

from __future__ import annotations

import copy
import itertools
import os
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from dynds_core.spec import JobSpec, SpecError

from app.core.config import Settings
from app.leaderboard import frontier_epochs

SPEC_LOC = ("body", "spec")


def _split_path(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")] if path else []


def data_root_error(root: str, settings: Settings) -> str | None:
    """None when ``root`` lies inside an allowed data directory, else the reason (naming what is allowed)."""
    allowed = settings.allowed_data_dirs
    listed = ", ".join(allowed) or "(none configured)"
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
            errors.append({"loc": _split_path(path), "msg": f"must be at most {limit} on this server (got {value})", "type": "value_error.bound", "input": value})
    root = _get(data, "data.root")
    if isinstance(root, str):
        reason = data_root_error(root, settings)
        if reason:
            errors.append({"loc": ["data", "root"], "msg": reason, "type": "value_error.data_dir", "input": root})
    return errors


def spec_errors(data: Any, settings: Settings) -> tuple[JobSpec | None, list[dict[str, Any]]]:
    """(spec, []) when ``data`` may run here, else (spec or None, errors) with locs relative to the spec.

    Every key path is reported: JobSpec's own errors and the server's limits together, one per path.
    """
    if not isinstance(data, dict):
        return None, [{"loc": [], "msg": f"expected a mapping of spec sections, got {type(data).__name__}", "type": "dict_type"}]
    spec, errors = None, []
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        friendly = SpecError.from_validation("request", exc).errors
        errors = [{"loc": _split_path(path), "msg": msg, "type": raw["type"]} for (path, msg), raw in zip(friendly, exc.errors())]
    seen = {tuple(e["loc"]) for e in errors}
    errors += [e for e in _policy_errors(data, settings) if tuple(e["loc"]) not in seen]
    return (spec, errors)


def parse_spec_request(data: Any, settings: Settings, *, loc: tuple = SPEC_LOC) -> JobSpec:
    spec, errors = spec_errors(data, settings)
    if errors:
        raise RequestValidationError([{**e, "loc": [*loc, *e["loc"]]} for e in errors])
    return spec


# ---------------------------------------------------------------- sweeps

_DEFAULTS = JobSpec().canonical()


def set_dotted(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``path`` (e.g. "dynds.schedule.p") set; missing sections start from the defaults.

    >>> set_dotted({}, "train.seed", 3)["train"]["seed"]
    3
    """
    out = copy.deepcopy(spec)
    keys = path.split(".")
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
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


FRONTIER_BASELINE = {"dynds.schedule": [{"kind": "none"}], "baseline": [False], "equal_time_baseline": [False]}


def effective_grid(base: dict[str, Any], grid: dict[str, list[Any]], seeds: list[int] | None = None, preset: str | None = None) -> dict[str, list[Any]]:
    """The grid a sweep expands: ``grid``, then the preset's keys, then ``train.seed`` over ``seeds`` (innermost).

    preset "frontier": the base spec's baseline alone (schedule none, no paired or equal-time
    baseline) at 25/50/75/100 % of its train.epochs (``app.leaderboard.frontier_epochs``); the grid
    must be empty. 422 for a grid with a preset and for seeds given both ways.
    """
    errors: list[dict[str, Any]] = []
    if preset is not None and grid:
        errors.append({"loc": ["body", "grid"], "msg": f"a sweep with preset {preset!r} takes no grid (got keys {', '.join(grid)})", "type": "value_error.preset_grid"})
    if seeds is not None and "train.seed" in grid:
        errors.append({"loc": ["body", "seeds"], "msg": "give the seeds either as seeds or as the grid key train.seed, not both", "type": "value_error.seeds"})
    if errors:
        raise RequestValidationError(errors)
    out = dict(grid)
    if preset == "frontier":
        epochs = _get(base, "train.epochs")
        if epochs is None:
            epochs = _DEFAULTS["train"]["epochs"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise RequestValidationError([{"loc": ["body", "base", "train", "epochs"], "msg": f"the frontier preset needs train.epochs >= 1 (got {epochs!r})", "type": "value_error.preset"}])
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
    for key, values in grid.items():
        if not values:
            errors.append({"loc": ["body", "grid", key], "msg": f"grid key {key} needs at least one value", "type": "value_error.empty"})
    n = 1
    for values in grid.values():
        n *= max(len(values), 1)
    if n > settings.max_sweep_points:
        errors.append({"loc": ["body", "grid"], "msg": f"the grid has {n} points; at most {settings.max_sweep_points} are allowed", "type": "value_error.too_many"})
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
