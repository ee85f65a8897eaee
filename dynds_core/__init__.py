"""dynds_core: dynamic input and kernel downsampling (DynDS) for PyTorch.

Pure PyTorch: no web, database or queue. The public names are imported lazily so that
``import dynds_core`` stays cheap for tools that only read specs.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "JobSpec": "spec",
    "SpecError": "spec",
    "JobResult": "result",
    "RunResult": "result",
    "StepMetrics": "result",
    "EpochMetrics": "result",
    "Callback": "callbacks",
    "downsample_input": "ops",
    "pool_kernel": "ops",
    "reduced_pass": "reduced",
    "check_reduced_pass": "reduced",
    "ReducedPassError": "reduced",
    "create_model": "models",
    "DynDS": "method",
    "train": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'dynds_core' has no attribute {name!r}")
