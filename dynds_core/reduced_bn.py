"""BatchNorm in a reduced pass: what its three modes do, and the extra set bn="separate" needs.

  frozen    reduced batches normalise with their own batch statistics but never update the
            running statistics (the default: they would wreck evaluation)
  shared    plain BatchNorm behaviour
  separate  reduced passes use their own affine parameters and running statistics, registered
            by :func:`attach_separate_bn` (call it before building the optimizer). The model's
            ``state_dict`` then holds the extra ``reduced_*`` entries too (:func:`full_state_dict`
            leaves them out). Under DDP each step leaves one of the two sets unused: wrap with
            ``find_unused_parameters=True``.

The reduced pass intercepts ``F.batch_norm`` and the module's ``num_batches_tracked.add_``, and hands
them to :class:`ReducedBatchNorm`; nothing on the model is changed during the pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .reduced_diagnostics import ReducedPassError

# Names of the per-BatchNorm parameters/buffers of bn="separate", paired with the originals.
SEPARATE_BN_PARAMS = (("weight", "reduced_weight"), ("bias", "reduced_bias"))
SEPARATE_BN_BUFFERS = (
    ("running_mean", "reduced_running_mean"),
    ("running_var", "reduced_running_var"),
    ("num_batches_tracked", "reduced_num_batches_tracked"),
)

BATCH_COUNT = torch.Tensor.add_  # how _BatchNorm.forward counts batches


def attach_separate_bn(model: nn.Module) -> nn.Module:
    """Give every BatchNorm its own reduced-pass parameters and running statistics (bn="separate").

    They start as copies of the current ones. Call this before building the optimizer, so that
    it also updates the ``reduced_weight``/``reduced_bias`` parameters. Idempotent.
    """
    for m in model.modules():
        if not isinstance(m, _BatchNorm) or "reduced_running_mean" in m._buffers:
            continue
        for orig, extra in SEPARATE_BN_PARAMS:
            p = getattr(m, orig)
            m.register_parameter(extra, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for orig, extra in SEPARATE_BN_BUFFERS:
            b = getattr(m, orig)
            m.register_buffer(extra, None if b is None else b.detach().clone())
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the reduced-pass BatchNorm set of bn="separate": what evaluation
    uses, loadable into the plain model (``create_model(...).load_state_dict(full_state_dict(m))``)."""
    extras = tuple(f".{extra}" for _, extra in SEPARATE_BN_PARAMS + SEPARATE_BN_BUFFERS)
    return {k: v for k, v in model.state_dict().items() if not k.endswith(extras)}


def _check_separate(model: nn.Module) -> None:
    """ReducedPassError unless ``model`` can take bn="separate" passes."""
    ddp = torch.nn.parallel.DistributedDataParallel
    if isinstance(model, ddp) and not model.find_unused_parameters:
        raise ReducedPassError(
            "bn='separate' under DistributedDataParallel leaves the full BatchNorm parameters unused in reduced steps "
            "and the reduced ones in full steps: wrap the model with DistributedDataParallel(..., find_unused_parameters=True), "
            "or use bn='frozen'"
        )
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and "reduced_running_mean" not in m._buffers:
            raise ReducedPassError(
                f"bn='separate' needs the reduced-pass BatchNorm set, which BatchNorm {name!r} lacks: "
                "call dynds_core.reduced.attach_separate_bn(model) once before building the optimizer"
            )


class ReducedBatchNorm:
    """What ``F.batch_norm`` and a BatchNorm's batch counter do in one reduced pass over ``model``, for
    bn="frozen" or "separate" (bn="shared" needs nothing of it)."""

    def __init__(self, model: nn.Module, mode: str):
        if mode == "separate":
            _check_separate(model)
        self.mode = mode
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        # The BatchNorms by their running mean (what F.batch_norm is given) and by their batch counter
        # (what the module's forward increments). Any: their reduced_* set is registered at run time.
        self.by_mean: dict[int, Any] = {id(m.running_mean): m for m in bns if m.running_mean is not None}
        self.by_counter: dict[int, Any] = {id(m.num_batches_tracked): m for m in bns if m.num_batches_tracked is not None}

    def count(self, counter: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``counter.add_(*args, **kwargs)`` of a BatchNorm in ``by_counter``, as this mode has it."""
        if self.mode == "frozen":
            return counter  # reduced batches are not counted: nothing of the running state moves
        m = self.by_counter[id(counter)]
        return m.reduced_num_batches_tracked.add_(*args, **kwargs)

    def batch_norm(
        self,
        x: torch.Tensor,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        training: bool,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        """``F.batch_norm`` with these arguments, as this mode has it."""
        if self.mode == "frozen":
            if training:  # batch statistics, and the running ones left untouched
                running_mean = running_var = None
        else:  # separate
            m = self.by_mean.get(id(running_mean)) if running_mean is not None else None
            if m is not None:
                running_mean, running_var = m.reduced_running_mean, m.reduced_running_var
                weight, bias = m.reduced_weight, m.reduced_bias
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
