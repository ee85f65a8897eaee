"""What a job ran on: enough to rerun it and to explain a difference between two results.

    record = reproducibility_record(spec)
    record["packages"]["torch"], record["git_revision"], record["git_dirty"], record["worker"]

Everything here is best effort: a field that cannot be known is None, never an exception,
because a missing git binary must not fail a training job.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# The packages whose versions can change a result or the service's behaviour.
RECORDED_PACKAGES = ("dynds", "torch", "torchvision", "numpy", "Pillow", "pydantic", "sqlmodel", "celery")

# Where this checkout lives: the repo root is the parent of the `worker` package.
PROJECT_DIR = Path(__file__).resolve().parent.parent


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    # No optional locks: `git status` would otherwise take the checkout's index.lock to refresh it, and a
    # fleet of workers running from a checkout would make its developer's own git commands fail meanwhile.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(repo_dir: Path = PROJECT_DIR) -> tuple[str | None, bool | None]:
    """(HEAD revision, dirty flag) of the checkout at ``repo_dir``; (None, None) when it is not one.

    Read once per process and checkout, however the path is passed: the code a worker runs is what it
    imported when it started (a Celery worker reads it before its pool forks: worker/celery_app.py), not
    what the checkout holds after a later commit, and two git processes per job are not paid again. An
    installed wheel has no .git beside it, so its revision is unknown rather than guessed.
    """
    return _read_git_state(Path(repo_dir).resolve())


@functools.lru_cache(maxsize=8)
def _read_git_state(repo_dir: Path) -> tuple[str | None, bool | None]:
    if not (repo_dir / ".git").exists():
        return None, None
    head = _git(["rev-parse", "HEAD"], repo_dir)
    if head is None:
        return None, None
    # Untracked files count: a new module changes what runs; junk belongs in .gitignore.
    status = _git(["status", "--porcelain"], repo_dir)
    return head.strip(), (None if status is None else bool(status.strip()))


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_name()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def worker_identity() -> str:
    """Who ran the job, as ``NAME:PID``: the worker process an operator started and can find again.

    Under Celery NAME is the worker's nodename (``dynds@HOST``) and PID that of the ``dynds worker``
    process itself, not of the pool child running the job (a fresh one per job); with the embedded
    executor NAME is the host and PID the serving process. The pid tells apart two workers on one host,
    whose nodenames are the same.
    """
    celery = sys.modules.get("celery")  # not imported: not in a Celery worker (the API never imports it)
    task = getattr(celery, "current_task", None) if celery is not None else None
    nodename = getattr(getattr(task, "request", None), "hostname", None) if task else None
    if not nodename:
        return f"{socket.gethostname()}:{os.getpid()}"
    pid = os.getpid()
    billiard = sys.modules.get("billiard.process")
    if billiard is not None:
        # A prefork pool child knows the pid of the worker process that forked it (None in that process).
        pid = getattr(billiard.current_process(), "_parent_pid", None) or pid
    return f"{nodename}:{pid}"


def reproducibility_record(spec: Any, *, repo_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The record stored with a job (see docs/api.md, ``reproducibility``)."""
    import torch

    from dynds_core.spec import SpecError
    from dynds_core.training.recipe import resolve_device

    try:
        device = str(resolve_device(spec.train.device))  # where training lands ('auto' -> cuda when present, else cpu)
    except SpecError:  # a device this machine cannot use: recorded as asked (training refuses the job, saying why)
        device = spec.train.device
    from dynds_core.hardware import detect_hardware

    revision, dirty = git_state(repo_dir)
    # The hardware the run will have (train() measures it again and its result holds that): the threads
    # the spec asks for, else this process's; never the routing tests' override.
    hardware = detect_hardware(device, threads=spec.train.num_threads, override=False)
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "worker": worker_identity(),
        "platform": platform.platform(),
        "seed": spec.train.seed,
        "git_revision": revision,
        "git_dirty": dirty,
        "hardware": hardware.model_dump(mode="json"),
    }
