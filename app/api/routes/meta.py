"""Helpers for clients: the choices and defaults a spec form needs, presets, and a dry-run validation."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

import dynds_core
from app.api.deps import ReadAuthDep, SessionDep, SettingsDep, WriteAuthDep
from app.api.spec_policy import parse_spec_request
from app.fleet import registry
from app.models import SpecBody
from app.security import has_tokens
from dynds_core import spec as spec_module
from dynds_core.schedules import SCHEDULE_DEFAULTS
from dynds_core.spec import JobSpec, SpecError, resolve_data_root

log = logging.getLogger(__name__)
router = APIRouter(tags=["meta"])
# examples/ sits next to the packages in a checkout; an installed wheel may not have it.
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"


def load_presets(directory: Path = EXAMPLES_DIR) -> dict[str, dict[str, Any]]:
    """examples/*.yaml by file stem, as canonical specs; unreadable ones are skipped (and logged)."""
    files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    # Parsed again only when a file changes (YAML parsing is most of a /meta request otherwise).
    return dict(_parse_presets(tuple((str(p), p.stat().st_mtime_ns) for p in files)))


@lru_cache(maxsize=4)
def _parse_presets(files: tuple[tuple[str, int], ...]) -> tuple[tuple[str, dict[str, Any]], ...]:
    presets = []
    for name, _mtime in files:
        path = Path(name)
        try:
            # Example roots are relative to the repository root (where the examples are run from);
            # a submitted spec must name an absolute path.
            spec = JobSpec.from_file(path).canonical()
            presets.append((path.stem, resolve_data_root(spec, path.parent.parent)))
        except SpecError as exc:
            log.warning("preset %s skipped: %s", path, exc)
    return tuple(presets)


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: SpecBody = {}


# Estimates at once: each is CPU-bound Python (no tensor memory: counted on the meta device); more
# requests wait up to the estimate's time limit for a slot, then get no estimate.
ESTIMATE_SLOTS = 2
_SLOTS = threading.BoundedSemaphore(ESTIMATE_SLOTS)


def estimate(spec: JobSpec, timeout_s: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(FLOPs and memory per step from dynds_core, None) or (None, why there is no estimate). Never raises:
    the spec passed submission's checks first, and whatever the estimator still fails on is reported."""
    try:
        from dynds_core.flops import EstimateTimeout, estimate_spec
    except ImportError:
        return None, "this build has no estimator"
    if not _SLOTS.acquire(timeout=timeout_s if timeout_s is not None else -1):
        return None, "the server is busy estimating other specs; try again"
    try:
        return estimate_spec(spec, timeout_s=timeout_s), None
    except EstimateTimeout:
        return None, f"estimating took longer than {timeout_s:g} s"
    except Exception as exc:  # noqa: BLE001 - an estimate is advice: its failure is reported, never a 500
        log.warning("no estimate for spec %s: %s", spec.spec_hash, exc, exc_info=True)
        return None, f"estimate unavailable: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        _SLOTS.release()


@router.get("/meta")
def meta(session: SessionDep, settings: SettingsDep, _: ReadAuthDep) -> dict[str, Any]:
    offers = registry.live_offers(session=session, timeout_s=settings.worker_timeout_s)
    return {
        "version": dynds_core.__version__,
        "auth_required": has_tokens(session=session),
        "read_requires_token": settings.read_requires_token,
        "choices": {
            "arch": list(spec_module.ARCHS),
            "dataset": list(spec_module.DATASETS),
            "input_mode": list(spec_module.INPUT_MODES),
            "kernel_mode": list(spec_module.KERNEL_MODES),
            "kernel_scale": list(spec_module.KERNEL_SCALES),
            "pad_side": list(spec_module.PAD_SIDES),
            "bn": list(spec_module.BN_MODES),
            "schedule_kind": list(spec_module.SCHEDULE_KINDS),
            # DynDS's relatives (input sizes, kernels full): progressive resizing, Mix&Match (docs/spec.md)
            "relative_schedule_kind": list(spec_module.RELATIVE_KINDS),
        },
        "defaults": JobSpec().canonical(),
        # Each schedule kind's settings as it runs when only its kind is given ({"kind": "progressive"}).
        "schedule_defaults": SCHEDULE_DEFAULTS,
        "presets": load_presets(),
        "data_dirs": settings.data_dirs,
        # What train.hardware may name and be served now (GET /workers has the whole fleet); devices: DYNDS_DEVICES.
        "fleet": {
            "live_workers": len(offers),
            "hardware_classes": sorted({o.hardware_class for o in offers}),
            "queues": sorted({q for o in offers for q in o.queues}),
            "default_queue": settings.queue,
            "devices": settings.devices,
        },
        "limits": {
            "max_epochs": settings.max_epochs,
            "max_batch_size": settings.max_batch_size,
            "max_train_subset": settings.max_train_subset,
            "max_sweep_points": settings.max_sweep_points,
            "max_body_bytes": settings.max_body_bytes,
            "max_image_size": settings.max_image_size,
            "max_spec_depth": settings.max_spec_depth,
            "max_predicted_memory_bytes": settings.max_predicted_memory_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_file_bytes": settings.max_file_bytes,
            "max_total_bytes": settings.max_total_bytes,
            "max_images": settings.max_images,
            "allow_download": settings.allow_download,
        },
    }


@router.post("/specs/validate")
def validate_spec(body: ValidateRequest, settings: SettingsDep, _: WriteAuthDep) -> dict[str, Any]:
    """The spec as it would run, its hash, and its predicted cost (``estimate``; ``estimate_error`` says
    why it is null). Behind the write token like a submission: it costs the server CPU.

    422 for a spec a submission would refuse, and for one whose predicted memory
    (``estimate.predicted_memory_bytes``) exceeds ``DYNDS_MAX_PREDICTED_MEMORY_BYTES``.
    """
    spec = parse_spec_request(body.spec, settings)
    est, why = estimate(spec, settings.estimate_timeout_s)
    if est is not None and est.get("predicted_memory_bytes", 0) > settings.max_predicted_memory_bytes:
        raise RequestValidationError([{
            "loc": ["body", "spec"], "type": "value_error.cost", "input": None,
            "msg": f"this job is predicted to need {est['predicted_memory_bytes'] / 1024**3:.1f} GiB of memory "
            f"(data, models, activations at train.batch_size {spec.train.batch_size}); this server allows "
            f"{settings.max_predicted_memory_bytes / 1024**3:.1f} GiB: lower the batch size or the image size",
        }])  # fmt: skip
    return {"spec": spec.canonical(), "spec_hash": spec.spec_hash, "estimate": est, "estimate_error": why}
