"""The model zoo: one registry, one factory.

    model = create_model("resnet20", num_classes=10)
    model = create_model("resnet18", num_classes=100, small_input=True)   # 3x3 stem, no max-pool

Each architecture is a function registered by name with :func:`register_model`; it takes
``(num_classes, in_channels, small_input)`` and returns an ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

ModelFactory = Callable[[int, int, bool], nn.Module]

MODELS: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Decorator: make ``fn`` buildable as ``create_model(fn.__name__)``."""
    if fn.__name__ in MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """Build a registered model with fresh (seeded by the caller) weights; no download.

    ``small_input`` applies to the torchvision ResNets (3x3 stride-1 stem, no max-pool, for 32x32
    images); the CIFAR ResNets are built for small inputs already and ignore it.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer: {value!r}")
    return MODELS[name](num_classes, in_channels, bool(small_input))


# Importing the modules registers their models.
from . import cifar_resnet, torchvision_resnet  # noqa: E402,F401

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
