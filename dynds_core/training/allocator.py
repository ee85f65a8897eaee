"""The host allocator: keep freed tensor memory in the process instead of handing it back to the OS.

glibc's malloc serves a block above its mmap threshold (128 KB at first, raised only as such blocks
are freed) with a fresh ``mmap`` and unmaps it on ``free``, and trims the heap top above 128 KB.
A CPU training step frees all its activations at the end of backward, so the next step page-faults
every one of them back in: on this project's 2-core machines a benchmark run of ResNet-20 steps
(batch 128) took about 500,000 minor page faults, and its full steps ran 11-20% slower than with the
memory kept (``python bench/reduced_step.py --allocator plain`` against the default). PyTorch keeps no CPU
cache of its own.

:func:`retain_freed_memory` fixes glibc's thresholds (``mallopt``) so that freed blocks stay in the
heap for the next step. It changes nothing where the user already chose (``GLIBC_TUNABLES`` with
malloc settings, ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, or another allocator
preloaded), and nothing off glibc. The cost: the process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling on 64-bit: blocks up to 32 MB come from the heap
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GB of free heap top


def _user_chose() -> bool:
    env = os.environ
    return (
        "malloc" in env.get("GLIBC_TUNABLES", "")
        or any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        or bool(env.get("LD_PRELOAD", "").strip())
    )


@functools.cache  # once per process
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they are set (now or before)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _user_chose():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
