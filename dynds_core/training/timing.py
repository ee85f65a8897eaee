"""What keeps a run's step times honest: the clock at step boundaries, how often they are read, and
Python's cyclic collector kept out of the timed steps.

A step's interval runs from just before its batch is fetched to the end of its optimizer step
(:mod:`dynds_core.training.loop`). On the CPU its ends are ``time.perf_counter()`` readings; on CUDA,
events on the training device's stream, read in batches (one synchronisation every
:func:`flush_interval` steps), so measuring does not serialise the CPU and the GPU.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

import torch

CUDA_FLUSH_EVERY = 25  # steps between synchronisations on CUDA (losses, times, callbacks)

# With the cyclic collector off during steps, the run collects young garbage itself this often.
COLLECT_EVERY_STEPS = 500


def step_clock(device: torch.device) -> Any:
    """A step boundary: ``time.perf_counter()`` on the CPU; on CUDA an event recorded on the current
    stream of ``device`` (not of the current device: with ``cuda:1`` they differ)."""
    if device.type == "cuda":
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(torch.cuda.current_stream(device))
        return ev
    return time.perf_counter()


def elapsed_s(start: Any, end: Any, cuda: bool) -> float:
    """Seconds between two :func:`step_clock` boundaries (on CUDA, once the end event has completed)."""
    return start.elapsed_time(end) / 1000.0 if cuda else end - start


def flush_interval(device: torch.device) -> int:
    """Steps between reads of the step signals: every step on the CPU (reading is free there); every
    CUDA_FLUSH_EVERY steps on CUDA, for every schedule alike (adaptive included), so that measuring
    does not serialise the CPU and the GPU in one run and not in the other."""
    return CUDA_FLUSH_EVERY if device.type == "cuda" else 1


@contextlib.contextmanager
def collector_between_epochs() -> Iterator[None]:
    """Python's cyclic garbage collector off during a run's steps, on again after it.

    A full collection walks every object torch and the data set built (80-180 ms measured here, once
    or twice a minute of training) and would land inside one timed step of one run, skewing a paired
    comparison. The run collects young garbage itself every COLLECT_EVERY_STEPS steps and at each
    epoch's end, untimed (as Megatron-LM's manual GC does against stragglers); a full collection runs
    before the first step.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collect_after_steps(step: int, flushed: int) -> None:
    """Young cyclic garbage (callbacks') collected when a multiple of COLLECT_EVERY_STEPS was among the
    ``flushed`` steps that ended at ``step``: untimed, like the rest of the bookkeeping."""
    if step % COLLECT_EVERY_STEPS < flushed:
        gc.collect(1)


def collect_at_epoch_end() -> None:
    """The epoch's young cyclic garbage, outside the timed steps."""
    gc.collect(1)
