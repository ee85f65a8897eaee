"""A worker authenticates to the broker and the database only, with what their URLs carry: a password-protected
Redis of the test's own (``redis-server --requirepass``), a real `dynds serve` and `dynds worker` on a SQLite
database under tmp_path, a job submitted over HTTP with the API's token. The passwords are never printed."""

from __future__ import annotations

import httpx
import pytest
from service_helpers import Proc, redis_server, subprocess_env, tiny_spec, wait_until  # noqa: F401  (fixtures)
from test_faults import QUEUE, start_serve, start_worker

from dynds.commands.common import redact

PASSWORD = "broker-pw-8d1f3a"
TOKEN = "api-token-for-the-broker-test-0123456789"


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["redis", "rediss"])  # slow: 20 s more
def test_a_job_runs_through_a_password_protected_broker_and_no_password_is_printed(tmp_path, redis_server, tls):
    redis = redis_server(password=PASSWORD, tls=tls)
    assert f":{PASSWORD}@" in redis.url and redis.url.startswith("rediss://" if tls else "redis://")
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    (tmp_path / "token").write_text(TOKEN)
    serve, url = start_serve(tmp_path, db_url, DYNDS_BROKER_URL=redis.url, DYNDS_QUEUE=QUEUE, DYNDS_BOOTSTRAP_TOKEN_FILE=str(tmp_path / "token"))
    worker = start_worker(tmp_path, db_url, redis.url, "auth")
    try:
        wait_until(lambda: " ready." in worker.output() or worker.popen.poll() is not None, 120, "the worker to report ready")
        assert worker.popen.poll() is None, worker.output()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{url}/api/v1/jobs", json={"spec": tiny_spec()}, timeout=10).status_code == 401
        r = httpx.post(f"{url}/api/v1/jobs", json={"spec": tiny_spec()}, headers=headers, timeout=10)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def finished():
            assert worker.popen.poll() is None and serve.popen.poll() is None, worker.output()
            job = httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = wait_until(finished, 90, f"job {job_id} to finish", interval=0.5)
        assert job["status"] == "succeeded", f"{job['error']}\n{worker.output()}"
        assert httpx.get(f"{url}/api/v1/readyz", timeout=10).json() == {"database": "ok", "broker": "ok"}
    finally:
        worker.stop()
        serve.stop()
    for proc in (serve, worker):
        out = proc.output()
        assert PASSWORD not in out and TOKEN not in out, f"{proc.log_path.name} printed a secret:\n{out}"
    # The start-up lines, redacted.
    shown = redact(redis.url)
    assert shown.startswith(f"{redis.url.split(':')[0]}://:***@127.0.0.1:{redis.port}/0")
    assert f"on {shown}" in worker.output() and f"via {shown}" in serve.output()


def test_a_wrong_or_missing_broker_password_is_a_clear_error_at_worker_start(tmp_path, redis_server):
    redis = redis_server(password=PASSWORD)
    db_url = f"sqlite:///{tmp_path / 'dynds.db'}"
    wrong = redis.url.replace(PASSWORD, "not-the-password")
    for name, broker in (("wrong", wrong), ("missing", f"redis://127.0.0.1:{redis.port}/0")):
        proc = Proc(
            ["worker", "--queue", "q"], subprocess_env(tmp_path, DYNDS_DATABASE_URL=db_url, DYNDS_BROKER_URL=broker), tmp_path / f"{name}.log"
        )
        try:
            rc = proc.popen.wait(60)
        finally:
            proc.stop()
        out = proc.output()
        assert rc == 2, out
        assert f"error: the broker at redis://{':***@' if name == 'wrong' else ''}127.0.0.1:{redis.port}/0 refused the credentials" in out, out
        assert "Traceback" not in out and "not-the-password" not in out and PASSWORD not in out, out
