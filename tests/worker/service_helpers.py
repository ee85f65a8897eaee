"""Helpers and fixtures for the worker and command tests: a migrated SQLite file database, tiny job
specs, real Redis, and `dynds` subprocesses (one torch thread each, killed at teardown).

tests/worker/conftest.py and tests/app/test_commands.py import the fixtures from here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.core.db import init_db, make_engine, session_factory
from dynds_core.spec import JobSpec

REDIS_URL = os.environ.get("DYNDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DYNDS = str(Path(sys.executable).with_name("dynds"))

# resnet20 on 16x16 synthetic images, 4 steps per run: a whole job (baseline + DynDS) in ~2 s on one thread.
TINY_SPEC = {
    "name": "tiny",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 1, "batch_size": 32, "num_threads": 1},
}


def tiny_spec(**train) -> dict:
    spec = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_SPEC.items()}
    spec["train"].update(train)
    return spec


def missing_service(what: str, reason: str) -> None:
    """A service the tests need is down: a failure, everywhere (a skipped fault test proves nothing)."""
    pytest.fail(f"{what} is not reachable: {reason}")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'dynds.db'}",
        broker_url=None,
        worker_threads=1,
        metrics_flush_interval_s=0.2,
    )


@pytest.fixture
def sessions(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def make_job(sessions):
    from app import crud

    def make(spec: dict | None = None, **kw):
        with sessions() as s:
            job, _ = crud.submit_job(session=s, spec=JobSpec.parse(spec or TINY_SPEC), force=True, **kw)
            return job.id

    return make


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL}", str(exc))
    client.flushdb()  # db 15 belongs to the tests
    yield REDIS_URL
    client.flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNDS_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        DYNDS_WORKER_THREADS="1",
        DYNDS_HOME=str(tmp_path / "home"),
        DYNDS_DATABASE_URL=f"sqlite:///{tmp_path / 'dynds.db'}",
        DYNDS_METRICS_FLUSH_INTERVAL_S="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    """A `dynds` subprocess whose output goes to a file (read it when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen([DYNDS, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            # Its own process group: Celery's children go too, and nothing else.
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_serving(proc: Proc, health_url: str, timeout: float = 60) -> None:
    """Until the `dynds serve` in ``proc`` answers ``health_url`` with 200; fails with its output if it exits first."""

    def up():
        if proc.popen.poll() is not None:
            raise AssertionError(f"dynds serve exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            return httpx.get(health_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout, f"dynds serve to answer {health_url}", interval=0.2)


def start_serve(tmp_path: Path, **env: str) -> tuple[Proc, str]:
    """`dynds serve` on a free port (log level warning; ``env`` over subprocess_env), once it answers /healthz:
    (its Proc, its root URL). Stopped again if it never answers."""
    port = free_port()
    proc = Proc(["serve", "--port", str(port), "--log-level", "warning"], subprocess_env(tmp_path, **env), tmp_path / f"serve-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url + "/healthz")
    except BaseException:
        proc.stop()
        raise
    return proc, url


@pytest.fixture
def serve(tmp_path):
    """Start `dynds serve` (embedded executor, SQLite in tmp_path); returns its base URL."""
    procs: list[Proc] = []

    def start(**env_extra: str) -> str:
        proc, url = start_serve(tmp_path, **env_extra)
        procs.append(proc)
        return url

    yield start
    for p in procs:
        p.stop()


# ---------------------------------------------------------------- Redis servers of our own, PostgreSQL databases

PG_ADMIN_URL = os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class RedisServer:
    """A `redis-server` of the test's own on a spare port, with or without persistence (AOF, fsync always),
    a password (``--requirepass``) and TLS only (a self-signed certificate its ``url`` names as the CA: a
    rediss:// URL), that can be killed (SIGKILL) and started again on the same port and directory."""

    def __init__(self, directory: Path, *, persistent: bool, password: str | None = None, tls: bool = False):
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            missing_service("redis-server", "not installed (apt-get install redis-server)")
        self.dir, self.persistent, self.password = directory, persistent, password
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.tls: list[str] = []
        if tls:
            self.tls = self._certificate()
            self.url = f"rediss{self.url[len('redis') :]}?ssl_cert_reqs=required&ssl_ca_certs={self.dir / 'cert.pem'}"
        self.popen: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        persistence += ["--requirepass", self.password] if self.password else []
        ports = ["--port", "0", "--tls-port", str(self.port), *self.tls] if self.tls else ["--port", str(self.port)]
        log = open(self.dir / "redis.log", "ab")
        self.popen = subprocess.Popen(
            [self.binary, *ports, "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "", *persistence],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self._ping, 10, f"redis-server on port {self.port}")

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            if self.popen.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{(self.dir / 'redis.log').read_text()}") from None
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2)

    def _certificate(self) -> list[str]:
        """A self-signed certificate for 127.0.0.1 (openssl), and the redis-server flags serving TLS with it."""
        cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert),
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        return ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def restart(self) -> None:
        """A crash and a restart: SIGKILL (nothing flushed on the way out), then the same port and directory."""
        self.kill()
        self.start()


@pytest.fixture
def redis_server(tmp_path):
    """Start a Redis of our own: ``redis_server(persistent=True, password="pw", tls=True)``; all are killed at teardown."""
    servers: list[RedisServer] = []

    def start(persistent: bool = False, password: str | None = None, tls: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", persistent=persistent, password=password, tls=tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def pg_database():
    """A fresh, empty PostgreSQL database (psycopg URL), dropped afterwards; PostgreSQL down: a failure."""
    import uuid

    import psycopg

    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"dynds_fault_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at {admin}", str(exc).strip().splitlines()[0])
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A migrated database of each kind, for `dynds` processes (subprocess_env's DYNDS_DATABASE_URL)."""
    url = f"sqlite:///{tmp_path / 'dynds.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = make_engine(url)
    init_db(engine)
    engine.dispose()
    return url


def db_sessions(url: str):
    """A session factory on ``url`` for a test to read what the processes wrote (dispose: .engine.dispose())."""
    engine = make_engine(url)
    factory = session_factory(engine)
    factory.engine = engine
    return factory
