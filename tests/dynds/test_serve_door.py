"""The door of `dynds serve`: beyond loopback, no API token means no start unless opened on purpose; the first
token as a secret (a file, Docker-secrets style) or made at first start and printed once. Real processes,
each with a SQLite database under tmp_path; they listen on every address, on a free port, for seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from app.core.db import make_engine, session_factory
from app.models import ApiToken
from app.security import BOOTSTRAP_NAME
from dynds.commands.serve import door_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from service_helpers import Proc, free_port, subprocess_env, tiny_spec, wait_serving, wait_until  # noqa: E402

API = "/api/v1"
SECRET = "bootstrap-0123456789abcdef0123456789abcdef"


def start(tmp_path: Path, *args: str, **env: str) -> tuple[Proc, str]:
    """`dynds serve ARGS` (its own output in a file); returns it and the URL it answers on, once it answers."""
    port = free_port()
    proc = Proc(["serve", "--port", str(port), "--log-level", "info", *args], subprocess_env(tmp_path, **env), tmp_path / f"serve-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url + "/healthz")
    except BaseException:
        proc.stop()
        raise
    return proc, url


def refused(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    """`dynds serve ARGS` expected to end by itself: (exit code, output)."""
    proc = Proc(["serve", "--port", str(free_port()), *args], subprocess_env(tmp_path, **env), tmp_path / "refused.log")
    try:
        rc = proc.popen.wait(60)
    finally:
        proc.stop()
    return rc, proc.output()


def submit(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + API + "/jobs", json={"spec": tiny_spec(epochs=1)}, headers=headers, timeout=30)


def tokens(tmp_path: Path) -> list[ApiToken]:
    engine = make_engine(f"sqlite:///{tmp_path / 'dynds.db'}")
    try:
        with session_factory(engine)() as s:
            return list(s.exec(select(ApiToken)).all())
    finally:
        engine.dispose()


def test_the_door_decision():
    assert door_problem("127.0.0.1", 8000, has_token=False, open_writes=False) is None  # the quick start
    assert door_problem("0.0.0.0", 8000, has_token=True, open_writes=False) is None
    assert door_problem("0.0.0.0", 8000, has_token=False, open_writes=True) is None
    problem = door_problem("192.168.1.20", 8123, has_token=False, open_writes=False)
    for way_out in (
        "DYNDS_BOOTSTRAP_TOKEN_FILE",
        "DYNDS_BOOTSTRAP_TOKEN ",
        "dynds token create",
        "--create-token",
        "--host 127.0.0.1",
        "--open",
        "DYNDS_OPEN_WRITES",
    ):
        assert way_out in problem, way_out
    assert "192.168.1.20" in problem and "port 8123" in problem


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_beyond_loopback_without_a_token_it_refuses_to_start_saying_the_ways_out(tmp_path, host):
    rc, out = refused(tmp_path, "--host", host)
    assert rc == 2, out
    assert f"dynds serve would listen on {host} (beyond this machine) with no API token" in out, out
    assert "DYNDS_BOOTSTRAP_TOKEN_FILE" in out and "--open" in out and "Traceback" not in out, out
    assert not tokens(tmp_path)  # refusing made no token


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_opened_on_purpose_it_starts_takes_writes_and_says_so(tmp_path, how):
    args, env = (["--open"], {}) if how == "flag" else ([], {"DYNDS_OPEN_WRITES": "true"})
    proc, url = start(tmp_path, "--host", "0.0.0.0", *args, **env)
    try:
        assert submit(url).status_code == 201
        assert "WRITES ARE OPEN" in proc.output(), proc.output()
    finally:
        proc.stop()


def test_loopback_without_a_token_stays_open_as_the_quick_start(tmp_path):
    proc, url = start(tmp_path)  # --host's default
    try:
        assert submit(url).status_code == 201
        assert "WRITES ARE OPEN" not in proc.output()  # nothing to warn about: only this machine can reach it
    finally:
        proc.stop()


def test_the_bootstrap_token_file_opens_the_door_to_its_holder_only_and_once(tmp_path):
    secret_file = tmp_path / "dynds_token"
    secret_file.write_text(SECRET + "\n")
    env = {"DYNDS_BOOTSTRAP_TOKEN_FILE": str(secret_file)}
    for restart in (False, True):
        proc, url = start(tmp_path, "--host", "0.0.0.0", **env)
        try:
            r = submit(url)
            assert r.status_code == 401 and "need an API token" in r.json()["detail"], r.text
            assert submit(url, "dynds_not-the-bootstrap-token").status_code == 403  # a wrong token (docs/api.md)
            assert submit(url, SECRET).status_code in ((200, 201) if restart else (201,))
            out = proc.output()
            assert f"API token '{BOOTSTRAP_NAME}' from DYNDS_BOOTSTRAP_TOKEN_FILE: {'unchanged' if restart else 'created'}" in out, out
            assert SECRET not in out  # never printed, never logged
        finally:
            proc.stop()
        # A restart with the same file makes no second token.
        assert [t.name for t in tokens(tmp_path)] == [BOOTSTRAP_NAME]


def test_an_unreadable_bootstrap_file_is_a_clear_refusal(tmp_path):
    rc, out = refused(tmp_path, "--host", "0.0.0.0", DYNDS_BOOTSTRAP_TOKEN_FILE=str(tmp_path / "missing"))
    assert rc == 2 and "DYNDS_BOOTSTRAP_TOKEN_FILE" in out and "cannot be read" in out and "Traceback" not in out, out
    (tmp_path / "weak").write_text("abc\n")
    rc, out = refused(tmp_path, "--host", "0.0.0.0", DYNDS_BOOTSTRAP_TOKEN_FILE=str(tmp_path / "weak"))
    assert rc == 2 and "the bootstrap token is too short" in out and "Traceback" not in out, out


def test_create_token_makes_one_at_first_start_prints_it_once_and_never_again(tmp_path):
    proc, url = start(tmp_path, "--host", "0.0.0.0", "--create-token")
    try:
        wait_until(lambda: "created 'first'" in proc.output(), 10, "the token's announcement")
        out = proc.output()
        token = next(line for line in out.splitlines() if line.startswith("dynds_"))
        assert submit(url).status_code == 401 and submit(url, token).status_code == 201
    finally:
        proc.stop()
    proc, url = start(tmp_path, "--host", "0.0.0.0", "--create-token")
    try:
        assert "created 'first'" not in proc.output() and token not in proc.output()
        assert submit(url, token).status_code in (200, 201)
    finally:
        proc.stop()
    assert [t.name for t in tokens(tmp_path)] == ["first"]
