"""What a model that cannot take a reduced pass is told: :class:`ReducedPassError`, naming the layer.

A shape error inside the model during the pass (a head sized for one resolution) becomes a
ReducedPassError naming the layer and what to change; other errors pass as they are.
:func:`dynds_core.reduced.check_reduced_pass` runs a tiny pass before training to find it early.
"""

from __future__ import annotations

import re

import torch.nn as nn

_SHAPE_ERROR = re.compile(r"shape|size|mat1 and mat2|Expected .*input", re.IGNORECASE)


class ReducedPassError(ValueError):
    """A model that cannot take a reduced pass; the message names the layer and what to change."""


def explain_failure(model: nn.Module, exc: RuntimeError) -> Exception:
    """A shape error inside the model becomes a ReducedPassError naming the layer; others pass as they are."""
    layer = failing_layer(model, exc)
    if layer is None or not _SHAPE_ERROR.search(str(exc)):
        return exc
    name, m = layer
    fix = (
        "put an adaptive pooling layer (e.g. nn.AdaptiveAvgPool2d(1)) before the flatten, "
        "or train this model without reduced batches (dynds.schedule.kind: none)"
    )
    if isinstance(m, nn.Linear):
        return ReducedPassError(
            f"layer {name!r} (Linear, in_features={m.in_features}) needs a fixed spatial input size: "
            f"the reduced pass feeds it a smaller feature map ({exc}). To use DynDS, {fix}"
        )
    return ReducedPassError(f"layer {name!r} ({type(m).__name__}) failed in the reduced pass: {exc}. If it needs a fixed spatial input size, {fix}")


def failing_layer(model: nn.Module, exc: BaseException) -> tuple[str, nn.Module] | None:
    """The innermost module of ``model`` whose code was running when ``exc`` was raised."""
    names = {id(m): n for n, m in model.named_modules()}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and id(owner) in names and isinstance(owner, nn.Module):
            found = (names[id(owner)] or type(owner).__name__, owner)
        tb = tb.tb_next
    return found


def naming_the_layer(model: nn.Module, exc: ReducedPassError) -> ReducedPassError | None:
    """``exc`` again, prefixed with the layer of ``model`` it was raised in; None when no layer raised it."""
    layer = failing_layer(model, exc)
    if layer is None:
        return None
    return ReducedPassError(f"layer {layer[0]!r} ({type(layer[1]).__name__}): {exc}")
