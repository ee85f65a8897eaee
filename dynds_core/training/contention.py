"""Did a run have its hardware to itself? The CPU its training threads got during its steps, the time they
spent waiting for one, and on CUDA the device's other users.

    meter = CpuMeter(threads=torch.get_num_threads())
    meter.begin(); <one step>; meter.end()        # around each step, outside its timed interval
    meter.cpu_share()     # 0.97 alone; 0.5 beside a process burning the same core
    meter.wait_share()    # 0.01 alone; 0.5 there (None where the kernel does not say)

Which threads: the one that calls the meter (the training loop) and the process's native threads that no
Python ``threading.Thread`` owns: torch's intra-op (OpenMP) pool, which does a step's work with it. With N
torch threads the training thread alone is not the whole story: a starved pool thread leaves it waiting
at the end of each parallel op. The process's other Python threads (an API's request threads, a log
writer) are not the run's: their CPU would hide a starved run, their waits would accuse a quiet one.

Where from: Linux's ``/proc/self/task/<tid>/schedstat`` (nanoseconds on a CPU, nanoseconds runnable but
waiting on a run queue), read with one ``pread`` per thread (about 0.5 us). Elsewhere only the training
thread's CPU time (``time.thread_time``) is known, and no wait.

- ``cpu_share``: CPU seconds the threads got / (wall seconds of the steps x torch threads). It also drops
  when a thread blocks on something other than a CPU (a GPU, a lock, I/O), so on its own it does not prove
  a neighbour took the CPU.
- ``wait_share``: seconds the threads were runnable but not running / (wall x threads): exactly the time
  a neighbour (another process, the API in the same process) took from them. What Contention flags.
"""

from __future__ import annotations

import os
import re
import threading
import time

import torch

_TASKS = "/proc/self/task"


def _python_thread_ids() -> set[int]:
    """Native ids of this process's Python threads other than the calling one."""
    me = threading.get_native_id()
    return {t.native_id for t in threading.enumerate() if t.native_id is not None and t.native_id != me}


def training_tasks() -> list[int]:
    """The calling thread's id first, then the native threads no Python thread owns (torch's pools)."""
    me = threading.get_native_id()
    try:
        tids = [int(t) for t in os.listdir(_TASKS)]
    except OSError:
        return [me]
    python = _python_thread_ids()
    return [me] + sorted(t for t in tids if t != me and t not in python)


def share(part_s: float, wall_s: float, threads: int) -> float | None:
    """``part_s / (wall_s x threads)``; None without wall time."""
    if wall_s <= 0 or threads < 1:
        return None
    return part_s / (wall_s * threads)


class CpuMeter:
    """Sums over a run's steps: their wall seconds, the CPU seconds its threads got, the seconds they waited.

    ``begin()`` before a step, ``end()`` after it; a ``begin()`` without its ``end()`` (the last, empty
    fetch of an epoch) is forgotten at the next ``begin()``. ``close()`` releases the files it reads.
    """

    def __init__(self, threads: int | None = None):
        self.threads = max(1, threads or torch.get_num_threads())
        self.wall_s = self.cpu_s = self.wait_s = 0.0
        self.steps = 0
        self._fds: dict[int, int] = {}  # tid -> open schedstat file
        self._listed = -1  # how many tasks the process had when the set was last listed
        self._at: float = 0.0
        self._start: dict[int, tuple[int, int]] = {}
        self._thread_cpu = 0.0
        # Readable here? (not Linux, or /proc hidden: the training thread's CPU time alone, no wait)
        self.schedstat = os.path.exists(f"{_TASKS}/{threading.get_native_id()}/schedstat")

    def _refresh(self) -> None:
        """Re-list the threads when their number changed (torch starts its pool at its first parallel op)."""
        try:
            n = len(os.listdir(_TASKS))
        except OSError:
            n = 0
        if n == self._listed:
            return
        self._listed = n
        keep = set(training_tasks())
        for tid in [t for t in self._fds if t not in keep]:
            os.close(self._fds.pop(tid))
        for tid in keep - self._fds.keys():
            try:
                self._fds[tid] = os.open(f"{_TASKS}/{tid}/schedstat", os.O_RDONLY)
            except OSError:  # gone meanwhile
                pass

    def _read(self) -> dict[int, tuple[int, int]]:
        out = {}
        for tid, fd in list(self._fds.items()):
            try:
                fields = os.pread(fd, 96, 0).split()
                out[tid] = (int(fields[0]), int(fields[1]))
            except (OSError, ValueError, IndexError):  # the thread ended: its figures leave the sums
                os.close(self._fds.pop(tid))
        return out

    def begin(self) -> None:
        if self.schedstat:
            self._refresh()
            self._start = self._read()
        else:
            self._thread_cpu = time.thread_time()
        self._at = time.perf_counter()

    def end(self) -> None:
        self.wall_s += time.perf_counter() - self._at
        self.steps += 1
        if not self.schedstat:
            self.cpu_s += time.thread_time() - self._thread_cpu
            return
        for tid, (cpu, wait) in self._read().items():
            if tid in self._start:  # a thread started during the step counts from its next one
                cpu0, wait0 = self._start[tid]
                self.cpu_s += (cpu - cpu0) / 1e9
                self.wait_s += (wait - wait0) / 1e9

    def cpu_share(self) -> float | None:
        # Without schedstat only the training thread was measured: its share of one thread's wall time.
        return share(self.cpu_s, self.wall_s, self.threads if self.schedstat else 1)

    def wait_share(self) -> float | None:
        return share(self.wait_s, self.wall_s, self.threads) if self.schedstat else None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._listed = -1


_PROCESS_LINE = re.compile(r"process\s+(\d+)\s+uses\s+([\d.]+)\s+MB")


def device_users(device: torch.device) -> tuple[int | None, str | None]:
    """(how many other processes use ``device``, in words) on CUDA, as NVML sees them through
    ``torch.cuda.list_gpu_processes``; (None, "unknown: ...") when it cannot see (no pynvml); (None, None)
    on other devices.

    In a container NVML may give the host's pids: when ours is not among them, one of them is taken to be us.
    """
    if device.type != "cuda":
        return None, None
    try:
        text = torch.cuda.list_gpu_processes(device)
    except Exception as exc:  # NVML errors vary by driver; seeing nothing is not an error of the run
        return None, f"unknown: {type(exc).__name__}: {exc}"[:200]
    if not text.startswith("GPU:"):
        return None, f"unknown: {text}"[:200]
    procs = [(int(pid), float(mb)) for pid, mb in _PROCESS_LINE.findall(text)]
    me = os.getpid()
    others = [p for p in procs if p[0] != me]
    if len(others) == len(procs) and others:
        others = others[1:] if len(others) > 1 else []
    if not others:
        return 0, "none"
    listed = ", ".join(f"pid {pid} ({mb / 1024:.1f} GiB)" for pid, mb in others[:5])
    return len(others), f"{len(others)} other process{'es' if len(others) > 1 else ''}: {listed}"
