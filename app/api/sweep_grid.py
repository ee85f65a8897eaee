"""A sweep's grid, expanded into specs: each point is the base spec with the grid's key paths set, and is
checked as a submission is (``spec_policy.spec_errors``), its errors named by grid key and value.

    effective_grid(base, {"dynds.schedule.p": [0.3, 0.5]}, seeds=[0, 1])   # seeds as the innermost key
    sweep_specs(base, grid, settings)     # [JobSpec, ...] or one 422 listing each bad key/value
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from fastapi.exceptions import RequestValidationError

from app.api.spec_policy import depth_error, get_dotted, spec_errors, too_deep
from app.core.config import Settings
from app.leaderboard import frontier_epochs
from dynds_core.spec import JobSpec

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
        epochs = get_dotted(base, "train.epochs")
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
        raise RequestValidationError([depth_error(["body", "base"], settings)])
    for key, values in grid.items():
        if too_deep(values, settings.max_spec_depth):
            raise RequestValidationError([depth_error(["body", "grid", key], settings)])
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
