"""The service as it is deployed, from the install a user makes: real processes from a clean venv
(`pip install .`, checked alone, then `pip install '.[service]'`, no test extras; tests/deploy/clean_venv.sh), the
services docker-compose.yml describes run
as processes on this machine:

- PostgreSQL: a fresh database on the running server (created here, dropped afterwards);
- Redis: its own database number (DYNDS_DEPLOY_REDIS_URL, default redis://127.0.0.1:6379/14);
- the API: compose's `api` command (`dynds serve`) with compose's DYNDS_* settings, the broker included;
- two workers: compose's `worker` command (`dynds worker`), each with one torch thread.

Ten small jobs go in over HTTP; all must succeed, spread over both workers, and each job's
reproducibility record must name the worker that ran it. Only the test driver runs from the dev venv.

    bash .ci/run                                                   # builds the venv and runs this
    DYNDS_CLEAN_VENV=$(bash tests/deploy/clean_venv.sh) .venv/bin/pytest -m deploy tests/deploy

Nothing here skips: a missing clean venv, PostgreSQL or Redis is a failure saying what is missing.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("DYNDS_DEPLOY_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DYNDS_DEPLOY_REDIS_URL", "redis://127.0.0.1:6379/14")  # the other tests use 15
N_JOBS = 10
# The API's first token, as compose gives it (the secret dynds_bootstrap_token, a file): its port is published.
API_TOKEN = secrets.token_hex(32)

# resnet20 on 16x16 synthetic images, 4 steps per run: a whole job (baseline + DynDS) in a few seconds.
TINY_SPEC = {
    "name": "deploy",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 1, "batch_size": 32, "num_threads": 1},
}


# ---------------------------------------------------------------- the clean install


@pytest.fixture(scope="module")
def clean_venv() -> Path:
    """The clean venv's root; fails (never skips) when it is not there or not a plain install."""
    hint = "build it with `DYNDS_CLEAN_VENV=$(bash tests/deploy/clean_venv.sh)` (.ci/run does)"
    value = os.environ.get("DYNDS_CLEAN_VENV")
    if not value:
        pytest.fail(f"DYNDS_CLEAN_VENV is not set: the deployment test runs the service from a clean venv; {hint}")
    venv = Path(value)
    for exe in ("python", "dynds"):
        if not os.access(venv / "bin" / exe, os.X_OK):
            pytest.fail(f"the clean venv {venv} has no bin/{exe}; {hint}")
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u, app, worker, dynds_core; "
            "print(app.__file__); print(u.find_spec('pytest') is None and u.find_spec('playwright') is None)",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env=_clean_env(venv),
        timeout=60,
    )
    assert probe.returncode == 0, f"dynds does not import in the clean venv {venv}:\n{probe.stderr}"
    app_file, no_extras = probe.stdout.split()
    # An installed copy, not this checkout (an editable install would test the working tree instead).
    assert Path(app_file).resolve().is_relative_to(venv.resolve()), f"app imports from {app_file}, not from {venv}"
    assert no_extras == "True", f"{venv} has the test extras installed: it is not the plain install a user makes"
    return venv


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """This environment without our settings, virtualenv or Python path; the clean venv's bin first."""
    drop = ("DYNDS_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


# ---------------------------------------------------------------- the services


@pytest.fixture
def database_url():
    """A fresh PostgreSQL database, dropped at the end."""
    import psycopg

    name = f"dynds_deploy_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        problem = str(exc)
    else:
        problem = None
    if problem:  # failed outside the except: the message alone, not the driver's traceback
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (DYNDS_DEPLOY_PG_URL): {problem}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker_url():
    """Redis, its own database number, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (DYNDS_DEPLOY_REDIS_URL): {problem}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


class Proc:
    """A process from the clean venv, in its own process group, its output in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path):
        self.name = name
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)  # Celery's pool children go too, nothing else
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_service(compose: dict, name: str, venv: Path, overrides: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """A compose service's command and DYNDS_* environment, for a process here: `dynds` from the venv,
    the settings that name container paths and hosts replaced by ``overrides``."""
    service = compose["services"][name]
    command = list(service["command"])
    assert command[0] == "dynds", f"compose's {name} command does not run dynds: {command}"
    command[0] = str(venv / "bin" / "dynds")
    env = {k: str(v) for k, v in (service.get("environment") or {}).items() if k != "<<"}
    missing = {"DYNDS_DATABASE_URL", "DYNDS_BROKER_URL"} - set(env)
    assert not missing, f"compose's {name} service sets no {sorted(missing)}"
    env.update(overrides)
    return command, env


@pytest.fixture
def deployment(tmp_path, clean_venv, database_url, broker_url):
    """compose's api and two of its workers, as processes; yields (base URL, {worker pid: Proc})."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (tmp_path / "data").mkdir()
    overrides = {
        "DYNDS_DATABASE_URL": database_url,
        "DYNDS_BROKER_URL": broker_url,
        "DYNDS_DATA_DIRS": str(tmp_path / "data"),
        "DYNDS_CACHE_DIR": str(tmp_path / "cache"),
        "DYNDS_HOME": str(tmp_path / "home"),
        "DYNDS_WORKER_THREADS": "1",
        "DYNDS_METRICS_FLUSH_INTERVAL_S": "0.5",
    }
    procs: list[Proc] = []
    try:
        secret = tmp_path / "dynds_bootstrap_token"
        secret.write_text(API_TOKEN + "\n")
        command, env = compose_service(compose, "api", clean_venv, {**overrides, "DYNDS_BOOTSTRAP_TOKEN_FILE": str(secret)})
        port = free_port()
        command = _set_option(_set_option(command, "--host", "127.0.0.1"), "--port", str(port))
        api = Proc("api", command + ["--log-level", "warning"], _clean_env(clean_venv, **env), tmp_path)
        procs.append(api)
        url = f"http://127.0.0.1:{port}"

        def ready():
            api.check_alive()
            try:
                r = httpx.get(url + "/api/v1/readyz", timeout=2)
            except httpx.TransportError:
                return False
            return r.status_code == 200 and r.json()

        health = wait_until(ready, 90, "dynds serve to answer /readyz")
        assert health["database"] == "ok" and health["broker"] == "ok", health

        command, env = compose_service(compose, "worker", clean_venv, overrides)
        workers = [Proc(f"worker{i}", command, _clean_env(clean_venv, **env), tmp_path) for i in (1, 2)]
        procs += workers
        for w in workers:
            # Both consume before any job is sent, or the first one up could take them all.
            def up(w=w):
                w.check_alive()
                return " ready." in w.output(tail=100_000)

            wait_until(up, 120, f"{w.name} to report ready")
        yield url, {w.popen.pid: w for w in workers}
    finally:
        for p in reversed(procs):
            p.stop()


def _set_option(command: list[str], option: str, value: str) -> list[str]:
    if option in command:
        i = command.index(option)
        return command[: i + 1] + [value] + command[i + 2 :]
    return command + [option, value]


# ---------------------------------------------------------------- the test


def test_ten_jobs_over_http_run_on_both_workers_of_a_clean_install(deployment):
    url, workers = deployment
    api = f"{url}/api/v1"

    def logs() -> str:
        return "\n".join(f"--- {w.name} (pid {pid}):\n{w.output()}" for pid, w in workers.items())

    job_ids = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        assert httpx.post(f"{api}/jobs", json={"spec": TINY_SPEC}, timeout=30).status_code == 401  # the door: no token, no job
        for seed in range(N_JOBS):
            spec = {**TINY_SPEC, "train": {**TINY_SPEC["train"], "seed": seed}}
            r = client.post(f"{api}/jobs", json={"spec": spec})
            # 503 "could not dispatch the job: No module named 'packaging'" was a plain install's answer.
            assert r.status_code == 201, f"POST /jobs answered {r.status_code}: {r.text}"
            job_ids.append(r.json()["id"])

        def all_finished():
            for w in workers.values():
                w.check_alive()
            jobs = [client.get(f"{api}/jobs/{i}").json() for i in job_ids]
            return all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) and jobs

        jobs = wait_until(all_finished, 300, f"{N_JOBS} jobs to finish", interval=1.0)

    failed = [f"job {j['id']}: {j['status']} {j.get('error')}" for j in jobs if j["status"] != "succeeded"]
    assert not failed, "\n".join(failed) + "\n" + logs()

    host = socket.gethostname()
    ran_on: dict[int, list[int]] = {pid: [] for pid in workers}
    for job in jobs:
        record = job["reproducibility"]
        assert record, f"job {job['id']} has no reproducibility record"
        name, _, pid = (record.get("worker") or "").rpartition(":")
        assert name == f"dynds@{host}" and pid.isdigit() and int(pid) in workers, (
            f"job {job['id']}'s record names worker {record.get('worker')!r}, not one of {[f'dynds@{host}:{p}' for p in workers]}"
        )
        ran_on[int(pid)].append(job["id"])
        # What ran is the installed package: no checkout beside it, one torch thread per job.
        assert record["git_revision"] is None and record["packages"]["dynds"], record
        assert record["torch_threads"] == 1, record
    idle = [f"{workers[pid].name} (pid {pid})" for pid, ids in ran_on.items() if not ids]
    assert not idle, f"jobs were not spread over both workers: {ran_on}; idle: {idle}\n{logs()}"
