"""Helpers for clients: the choices and defaults a spec form needs, presets, and a dry-run validation."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

import dynds_core
from dynds_core import spec as spec_module
from dynds_core.spec import JobSpec, SpecError, resolve_data_root

from app.api.deps import ReadAuthDep, SessionDep, SettingsDep
from app.api.spec_policy import parse_spec_request
from app.security import has_tokens

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
    spec: dict[str, Any] = {}


def estimate(spec: JobSpec) -> dict[str, Any] | None:
    """FLOPs per step from dynds_core (None when this build has no estimator)."""
    try:
        from dynds_core.flops import estimate_spec
    except ImportError:
        return None
    return estimate_spec(spec)


@router.get("/meta")
def meta(session: SessionDep, settings: SettingsDep, _: ReadAuthDep) -> dict[str, Any]:
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
        },
        "defaults": JobSpec().canonical(),
        "presets": load_presets(),
        "data_dirs": settings.data_dirs,
        "limits": {
            "max_epochs": settings.max_epochs,
            "max_batch_size": settings.max_batch_size,
            "max_train_subset": settings.max_train_subset,
            "max_sweep_points": settings.max_sweep_points,
            "max_body_bytes": settings.max_body_bytes,
        },
    }


@router.post("/specs/validate")
def validate_spec(body: ValidateRequest, settings: SettingsDep, _: ReadAuthDep) -> dict[str, Any]:
    spec = parse_spec_request(body.spec, settings)
    return {"spec": spec.canonical(), "spec_hash": spec.spec_hash, "estimate": estimate(spec)}
