"""What keeps a run's step times honest: the clock at step boundaries, how often they are read, and
Python's cyclic collector kept out of the timed steps.

A step's interval runs from just before its batch is fetched to the end of its optimizer step
(:mod:`dynds_core.training.loop`). On the CPU its ends are ``time.perf_counter()`` readings; on CUDA,
events on the training device's stream, read in batches (one synchronisation every
:func:`flush_interval` steps), so measuring does not serialise the CPU and the GPU.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import statistics
import time
from collections.abc import Iterator, Sequence
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


def host_clock() -> float:
    """The host's clock, where a step sits in time among other runs' steps (on CUDA, when it was queued)."""
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


def step_shape(batch_type: str, size: tuple[int, int] | None = None) -> int:
    """A step's shape as lockstep pairing groups steps: 0 full; 1 reduced at DynDS's factor; a relative's reduced
    step at (h, w) its own code (each input size costs its own time, so each is its own group).

    >>> step_shape("full"), step_shape("reduced"), step_shape("reduced", (16, 16)) != step_shape("reduced", (24, 24))
    (0, 1, True)
    """
    if batch_type != "reduced":
        return 0
    return 1 if size is None else 2 + int(size[0]) * 65536 + int(size[1])


def lockstep_time_ratio(
    dynds_times: Sequence[float],
    dynds_reduced: Sequence[int],
    dynds_at: Sequence[float],
    baseline_times: Sequence[float],
    baseline_at: Sequence[float],
) -> float | None:
    """T_dynds / T_baseline of two runs timed in lockstep, from each DynDS step against the baseline's
    steps around it in time.

    Each DynDS step (time ``dynds_times[i]``, started at ``dynds_at[i]`` on the host clock, of shape
    ``dynds_reduced[i]``: :func:`step_shape`, 0 full) is divided by the baseline's step time interpolated
    linearly to its midpoint between the two baseline steps whose midpoints bracket it: both ran within a
    step of each other, on the same machine, and a load that drifts within a round cancels to first order.
    Per shape (full, reduced, or each input size of a relative's reduced steps) the median of those ratios is
    taken, and the shapes are weighted by their step counts. One median over all of a relative's reduced
    sizes would be the middle size's cost, not their mean: progressive resizing's 16 px majority made its
    saving read 7 points high, Mix&Match's 24 px majority 6 points low (against the total-time ratio).
    Why medians: a burst of load does not slow a short reduced step and a long full step by the same
    factor (bench/pairing.py), so the ratio of the two runs' total times moves with how much of the
    job a burst covered; the medians do not, as long as bursts cover less than half of each type's
    steps. Under a load that stays, they are that load's ratio. None without a positive baseline time.
    On CUDA the host clock says when a step was queued: its order among the other run's steps is
    right, its spacing approximate.
    """
    mids = [a + t / 2 for a, t in zip(baseline_at, baseline_times, strict=True)]
    if not mids:
        return None
    ratios: dict[int, list[float]] = {}
    for d, shape, a in zip(dynds_times, dynds_reduced, dynds_at, strict=True):
        m = a + d / 2
        j = bisect.bisect_left(mids, m)
        if j == 0 or j == len(mids):  # before the baseline's first step or after its last: the nearest one
            b = baseline_times[0 if j == 0 else -1]
        else:
            span = mids[j] - mids[j - 1]
            w = (m - mids[j - 1]) / span if span > 0 else 0.5
            b = baseline_times[j - 1] + (baseline_times[j] - baseline_times[j - 1]) * w
        if b > 0 and d >= 0:
            ratios.setdefault(int(shape), []).append(d / b)
    paired = sum(len(r) for r in ratios.values())
    if paired == 0:
        return None
    return sum(len(r) * statistics.median(r) for r in ratios.values() if r) / paired
