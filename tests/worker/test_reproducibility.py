"""The reproducibility record's device is where training lands: dynds_core's resolve_device, never raising."""

import torch

from dynds_core.spec import JobSpec
from dynds_core.training import recipe
from worker.reproducibility import reproducibility_record


def _record(device, tmp_path):
    return reproducibility_record(JobSpec.parse({"train": {"device": device}}), repo_dir=tmp_path)


def test_the_recorded_device_is_the_one_training_resolves(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _record("auto", tmp_path)["device"] == "cpu"
    asked = []
    monkeypatch.setattr(recipe, "resolve_device", lambda name, **kw: asked.append(name) or torch.device("cpu"))
    assert _record("auto", tmp_path)["device"] == "cpu" and asked == ["auto"]  # the library's, not a copy


def test_a_device_this_machine_cannot_use_is_recorded_as_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    record = _record("cuda:1", tmp_path)  # training refuses the job; the record says what was asked
    assert record["device"] == "cuda:1" and record["git_revision"] is None


def test_the_git_state_is_read_without_writing_the_checkouts_index_and_once_per_process(tmp_path):
    """Workers run from a developer's checkout: their `git status` must not take its index.lock (the
    developer's own commit would fail meanwhile), and the state recorded is the one the process loaded."""
    import os
    import subprocess

    from worker.reproducibility import _read_git_state, git_state

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True, text=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    head = git("rev-parse", "HEAD").stdout.strip()
    index = tmp_path / ".git" / "index"
    future = index.stat().st_mtime + 100
    os.utime(tmp_path / "a.txt", (future, future))  # stat data the index no longer matches: a plain status rewrites it
    before = index.stat().st_mtime_ns, index.read_bytes()
    assert git_state(tmp_path) == (head, False)
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before
    (tmp_path / "b.txt").write_text("b")  # after the process read it: the record keeps what it loaded
    assert git_state(tmp_path) == (head, False) and _read_git_state.__wrapped__(tmp_path) == (head, True)


def test_the_worker_start_up_read_of_the_git_state_is_the_one_each_job_record_uses(monkeypatch):
    # worker/celery_app.py warms git_state() before the pool forks; run_job records git_state(PROJECT_DIR).
    from worker import reproducibility
    from worker.reproducibility import PROJECT_DIR, _read_git_state, git_state

    _read_git_state.cache_clear()
    calls: list = []
    real = reproducibility._git
    monkeypatch.setattr(reproducibility, "_git", lambda args, cwd: calls.append(args) or real(args, cwd))
    first = git_state()
    n = len(calls)
    assert git_state(PROJECT_DIR) == first and len(calls) == n  # no git process again
