"""BatchNorm recalibration at the test resolution (FixRes: Touvron et al. 2019, arXiv:1906.06423).

A network trained on smaller inputs than it is tested on (DynDS's reduced steps, progressive resizing,
Mix&Match) normalises test images with running statistics gathered at other sizes, or, with bn frozen,
only on its full steps. FixRes matches them: after training, recompute every BatchNorm's running mean and
variance on training images at the test resolution; weights, biases and affine parameters stay as trained::

    seen = recalibrate_bn(model, (x for x, _ in loader), num_batches=50)

Mix&Match (Hoffer et al. 2019, arXiv:1908.08986) recalibrates the same way per test size.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], *, num_batches: int) -> int:
    """Recompute the running statistics of ``model``'s BatchNorms as the plain average over the first
    ``num_batches`` of ``batches`` (inputs at the test resolution); return how many were used.

    Only running statistics change (``running_mean``, ``running_var``, ``num_batches_tracked``): no
    gradient is taken, every other module runs in eval mode, and each module's training flag and momentum
    are restored. bn="separate"'s reduced-pass set (``reduced_*`` buffers) is left as it was. A model
    without BatchNorm, or ``batches`` that yields nothing, leaves the model unchanged and returns 0.
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer: {num_batches!r}")
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return 0
    flags = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in bns]
    seen = 0
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches seen, not an EMA weighted to the last
            m.train()
        with torch.no_grad():
            x: torch.Tensor | None = first
            while x is not None and seen < num_batches:
                model(x)
                seen += 1
                x = next(it, None) if seen < num_batches else None
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        for module, training in flags:
            module.training = training
    return seen
