"""What a spec submitted over HTTP must satisfy, with errors in FastAPI's 422 format.

    spec = parse_spec_request(body.spec, settings)     # JobSpec, or RequestValidationError (422)

Beyond JobSpec's own validation: the server's bounds (epochs, batch, subsets, image size; a spec nested
deeper than ``max_spec_depth`` is refused before anything copies or validates it; an empty spec is refused,
``{"defaults": true}`` asks for every default), a reduced input large enough for the network, a batch no
larger than a training set of known size, and the seams checked in their own modules: where the data may
come from (``data_policy``) and the devices DYNDS_DEVICES declares (``device_policy``). A sweep's grid is
expanded and checked point by point in ``sweep_grid``.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.api.data_policy import data_location_error, data_root_error
from app.api.device_policy import declared_device_errors
from app.core.config import Settings
from dynds_core.spec import ARCH_MIN_POOLED_KERNEL, DEFAULTS_KEY, JobSpec, SpecError, empty_spec_problem

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


def depth_error(loc: list, settings: Settings) -> dict[str, Any]:
    return {"loc": loc, "msg": f"nested more than {settings.max_spec_depth} levels deep; a spec needs a few", "type": "value_error.depth"}


def get_dotted(data: dict[str, Any], path: str) -> Any:
    """The value at a dotted key path of a raw spec, or None where a section is missing or not a mapping."""
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
        value = get_dotted(data, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            errors.append(
                {
                    "loc": _split_path(path),
                    "msg": f"must be at most {limit} on this server (got {value})",
                    "type": "value_error.bound",
                    "input": value,
                }
            )
    root = get_dotted(data, "data.root")
    if isinstance(root, str):
        reason = data_root_error(root, settings)
        if reason:
            errors.append({"loc": ["data", "root"], "msg": reason, "type": "value_error.data_dir", "input": root})
    if get_dotted(data, "data.download") is True and not settings.allow_download:
        errors.append({
            "loc": ["data", "download"], "msg": "downloads are off on this server (DYNDS_ALLOW_DOWNLOAD); "
            "put the data set in one of its data directories and set data.root", "type": "value_error.download", "input": True,
        })  # fmt: skip
    return errors


def _spec_errors(spec: JobSpec, settings: Settings) -> list[dict[str, Any]]:
    """Checks that need the validated spec: where its data is (default places included) and that it
    exists, the batch against a training set of known size, the kernel pooling window and the reduced input
    against the network, and the device against DYNDS_DEVICES when set."""
    errors = []
    d = spec.data
    if d.dataset != "synthetic":
        root_error = data_location_error(d.dataset, d.root, settings)
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
    k = spec.dynds.kernel
    side = ARCH_MIN_POOLED_KERNEL[spec.model.arch]
    if k.mode in ("avg", "max") and k.window > side:
        # The library refuses it only when it builds the reduced pass (a ValueError from ops.pool_kernel).
        errors.append({
            "loc": ["dynds", "kernel", "window"], "msg": f"a kernel pooling window of {k.window} is larger than the {side}x{side} "
            f"kernels {spec.model.arch} pools; use a window of at most {side}", "type": "value_error.kernel", "input": k.window,
        })  # fmt: skip
    reduced_error = reduced_input_error(spec)
    if reduced_error:
        factor = spec.dynds.input.factor
        errors.append({"loc": ["dynds", "input", "factor"], "msg": reduced_error, "type": "value_error.reduced_input", "input": factor})
    relative_error = relative_input_error(spec)
    if relative_error:
        key, msg = relative_error
        value = getattr(spec.dynds.schedule, key.rsplit(".", 1)[1])
        errors.append({"loc": key.split("."), "msg": msg, "type": "value_error.reduced_input", "input": value})
    if settings.devices is not None:
        errors += declared_device_errors(spec, settings.devices)
    return errors


def relative_input_error(spec: JobSpec) -> tuple[str, str] | None:
    """(key path, why) when a relative's smallest input size (progressive's initial_scale, mixsize's smallest scale)
    is too small for its network (``dynds_core.flops.relative_input_problem``), where the image size is known."""
    from dynds_core.flops import DATASET_SHAPES, relative_input_problem
    from dynds_core.schedules import smallest_size
    from dynds_core.spec import RELATIVE_KINDS

    d = spec.data
    if spec.dynds.schedule.kind not in RELATIVE_KINDS or (d.dataset != "synthetic" and d.dataset not in DATASET_SHAPES):
        return None
    chw = (3, d.image_size, d.image_size) if d.dataset == "synthetic" else DATASET_SHAPES[d.dataset][0]
    return relative_input_problem(spec, chw, smallest_size(spec.dynds.schedule, chw[1:]))


def reduced_input_error(spec: JobSpec) -> str | None:
    """Why the spec's reduced steps would see too small an input for its network (``dynds_core.flops``'s
    rule, measured on the model), or None; only where the image size is known without reading data (an
    image folder's is found when the job reads it) and where reduced steps run at all."""
    from dynds_core.flops import DATASET_SHAPES, reduced_input_problem

    if spec.dynds.schedule.kind == "none":
        return None
    d = spec.data
    if d.dataset == "synthetic":
        chw = (3, d.image_size, d.image_size)
    elif d.dataset in DATASET_SHAPES:
        chw = DATASET_SHAPES[d.dataset][0]
    else:
        return None
    return reduced_input_problem(spec, chw)


def spec_errors(data: Any, settings: Settings) -> tuple[JobSpec | None, list[dict[str, Any]]]:
    """(spec, []) when ``data`` may run here, else (spec or None, errors) with locs relative to the spec.

    Every key path is reported: JobSpec's own errors and the server's limits together, one per path.
    """
    if not isinstance(data, dict):
        return None, [{"loc": [], "msg": f"expected a mapping of spec sections, got {type(data).__name__}", "type": "dict_type"}]
    if too_deep(data, settings.max_spec_depth):
        return None, [depth_error([], settings)]
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
