"""Validation of a run after each epoch: the full-resolution model in eval mode, untimed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .recipe import autocast


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, amp: bool) -> tuple[float, float]:
    """Validation loss (plain cross-entropy) and top-1 accuracy (percent): eval mode, full resolution."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    try:
        for x, y in loader.epoch(0):
            with autocast(device, amp):
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
    finally:
        model.train(was_training)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, 100.0 * correct.item() / seen
