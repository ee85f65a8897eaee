"""`dynds serve --workers N`: several API processes on one port (Celery mode), a clear refusal without a broker,
and an API process killed is replaced while the others answer. Real processes, SQLite under tmp_path, real Redis."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from service_helpers import Proc, free_port, redis_url, subprocess_env, tiny_spec, wait_serving, wait_until  # noqa: E402, F401

API = "/api/v1"


def started(proc: Proc) -> list[int]:
    """The processes that said their app started, in order (JSON log lines)."""
    pids = []
    for line in proc.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "Application startup complete.":
            pids.append(record["process"])
    return pids


def test_without_a_broker_more_than_one_process_is_refused_saying_why(tmp_path):
    proc = Proc(["serve", "--port", str(free_port()), "--workers", "2"], subprocess_env(tmp_path), tmp_path / "refused.log")
    try:
        assert proc.popen.wait(60) == 2
    finally:
        proc.stop()
    assert "needs a broker" in proc.output() and "--broker-url" in proc.output() and "Traceback" not in proc.output(), proc.output()


def test_two_api_processes_serve_one_port_and_a_killed_one_is_replaced(tmp_path, redis_url):  # noqa: F811
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", "2", "--log-format", "json", "--log-level", "info"]
    proc = Proc(args, subprocess_env(tmp_path, DYNDS_BROKER_URL=redis_url), tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url + "/healthz")
        wait_until(lambda: len(set(started(proc))) == 2, 60, "two API processes started")
        first = set(started(proc))
        assert proc.popen.pid not in first and "2 API processes" in proc.output()
        submitted = httpx.post(url + API + "/jobs", json={"spec": tiny_spec(epochs=1)}, timeout=30)
        assert submitted.status_code == 201, submitted.text
        assert httpx.get(f"{url}{API}/jobs/{submitted.json()['id']}", timeout=30).json()["status"] == "queued"

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # The other process answers meanwhile; uvicorn's supervisor starts a third in the victim's place.
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        wait_until(lambda: len(set(started(proc)) - first) == 1, 60, "a new API process in place of the killed one")
        for _ in range(10):
            assert httpx.get(url + API + "/jobs", timeout=10).status_code == 200
    finally:
        proc.stop()
    assert proc.popen.returncode == 0 or proc.popen.returncode == -signal.SIGTERM, proc.output()
