"""Hooks through which a caller watches a training job and stops it.

``train`` calls these from its training loop; every method is optional to override::

    class Printer(Callback):
        def on_epoch(self, m): print(m.run, m.epoch, m.val_acc)

Cancelling is cooperative: ``should_stop`` is asked before every step, so a run stops within
one step of it returning True, and ``train`` returns a result with ``cancelled=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .result import EpochMetrics, RunKind, RunResult, StepMetrics


class Callback:
    def on_run_start(self, run: RunKind, info: dict[str, Any]) -> None:
        """A run begins; ``info`` holds total_steps, epochs, device, flops per step type."""

    def on_step(self, m: StepMetrics) -> None:
        """After every training step (keep it cheap: it is on the hot path)."""

    def on_epoch(self, m: EpochMetrics) -> None:
        """After every epoch's evaluation."""

    def on_run_end(self, result: RunResult) -> None:
        """A run finished (or was cancelled)."""

    def should_stop(self) -> bool:
        return False

    def on_checkpoint(self) -> None:
        """A checkpoint is about to be written (every step it covers was reported): a callback that stores
        what it saw (the service's metrics sink) does so now, so that what a resumption keeps is stored."""


class CallbackList(Callback):
    """Fans every hook out to several callbacks."""

    def __init__(self, callbacks: Sequence[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_run_start(self, run, info):
        for cb in self.callbacks:
            cb.on_run_start(run, info)

    def on_step(self, m):
        for cb in self.callbacks:
            cb.on_step(m)

    def on_epoch(self, m):
        for cb in self.callbacks:
            cb.on_epoch(m)

    def on_run_end(self, result):
        for cb in self.callbacks:
            cb.on_run_end(result)

    def should_stop(self):
        return any(cb.should_stop() for cb in self.callbacks)

    def on_checkpoint(self):
        for cb in self.callbacks:
            cb.on_checkpoint()
