"""Callbacks of the command line: rich progress bars, and Ctrl-C as a cooperative stop."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..callbacks import Callback

RUN_LABELS = {"baseline": "baseline", "dynds": "DynDS", "equal_time": "equal-time"}


class InterruptFlag(Callback):
    """First Ctrl-C: stop after the current step (the finished part is still reported). Second: abort."""

    def __init__(self) -> None:
        self.stopped = False

    def should_stop(self) -> bool:
        return self.stopped

    def _handle(self, signum: int, frame: Any) -> None:
        self.stopped = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)


class ProgressCallback(Callback):
    """One bar per run: steps, last batch loss and accuracy, latest validation accuracy, ETA."""

    def __init__(self, console: Any) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:5.1f}%  val {task.fields[val]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def on_run_start(self, run, info):
        self.tasks[run] = self.progress.add_task(RUN_LABELS.get(run, run), total=info["total_steps"], loss=float("nan"), acc=0.0, val="-")

    def on_step(self, m):
        self.progress.update(self.tasks[m.run], completed=m.step + 1, loss=m.loss, acc=m.acc)

    def on_epoch(self, m):
        self.progress.update(self.tasks[m.run], val=f"{m.val_acc:.1f}% (epoch {m.epoch + 1}/{m.epochs})")
