import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A training step in miniature: many activation-sized tensors alive at once, then all freed.
# Prints the minor page faults of the rounds after the first.
# Both start from glibc's initial thresholds (128 KB) held fixed: left adaptive, glibc sometimes keeps the
# memory by luck of the heap's layout and sometimes not, so "plain" would not reliably show the faults.
SCRIPT = """
import ctypes, resource, sys, torch
from dynds_core.training import allocator
torch.set_num_threads(1)
libc = ctypes.CDLL("libc.so.6")
assert libc.mallopt(allocator.M_MMAP_THRESHOLD, 128 * 1024) and libc.mallopt(allocator.M_TRIM_THRESHOLD, 128 * 1024)
if sys.argv[1] == "retain":
    assert allocator.retain_freed_memory() and allocator.retain_freed_memory()

def step():
    held = [torch.empty(1 << 18).fill_(1.0) for _ in range(64)]  # 64 x 1 MB
    del held

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, **env) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env},
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt")
def test_retained_memory_is_not_faulted_back_in_every_step():
    plain, retained = faults("plain"), faults("retain")
    pages_per_step = 64 * (1 << 20) // 4096
    assert plain > 5 * pages_per_step  # the freed 64 MB handed back, and faulted in again step after step
    assert retained < pages_per_step / 2  # kept: ten more steps fault in less than half of one step's pages


def test_a_user_allocator_choice_is_left_alone():
    # With the user's own malloc settings, nothing is changed and the caller is told so.
    script = "from dynds_core.training.allocator import retain_freed_memory; print(retain_freed_memory())"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"},
    )
    assert out.stdout.strip() == "False", out.stderr
