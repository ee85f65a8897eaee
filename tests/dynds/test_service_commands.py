"""`dynds serve / worker / submit / token` (dynds/commands/): the pure helpers, and the real commands against a live server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from dynds.cli import build_parser, main
from dynds.client import api_base, dashboard_url
from dynds.commands.submit import threshold_failures, validation_lines
from dynds_core.spec import SpecError, read_spec_file

# The serve fixture and helpers are shared with the worker tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from service_helpers import DYNDS, TINY_SPEC, Proc, free_port, serve, subprocess_env, tiny_spec, wait_until  # noqa: E402,F401


def test_threshold_failures_name_the_threshold_missed():
    summary = {"time_saving": 0.12, "acc_delta": -0.8}
    assert threshold_failures(summary, min_time_saving=0.1, max_acc_drop=1.0) == []
    assert threshold_failures(summary, min_time_saving=0.2, max_acc_drop=None) == ["time_saving 0.1200 is below --min-time-saving 0.2"]
    assert threshold_failures(summary, min_time_saving=None, max_acc_drop=0.5) == ["accuracy dropped by 0.80 points, more than --max-acc-drop 0.5"]
    no_baseline = threshold_failures({"time_saving": None, "acc_delta": None}, min_time_saving=0.1, max_acc_drop=0.5)
    assert len(no_baseline) == 2 and all("no baseline" in f for f in no_baseline)


def test_the_wait_summary_gives_the_clock_s_figure_beside_a_lockstep_saving():
    from dynds.commands.submit import format_summary

    summary = {"time_saving": 0.37, "time_saving_interleaved": 0.36, "acc_delta": -5.6}
    lockstep = format_summary({"id": 4, "status": "succeeded", "summary": summary, "result": {"pairing": "lockstep", "time_saving_total": 0.33}})
    assert lockstep.startswith("job 4 succeeded: time_saving 37.0% (lockstep), total-time 33.0%, cross-check 36.0%, acc_delta -5.60 pt")
    sequential = format_summary({"id": 5, "status": "succeeded", "summary": summary, "result": {"pairing": "sequential"}})
    assert "time_saving 37.0% (sequential), cross-check 36.0%" in sequential and "total-time" not in sequential


def test_validation_lines_show_each_key_path():
    detail = [{"loc": ["body", "spec", "train", "epochs"], "msg": "must be >= 1"}, {"loc": ["body", "force"], "msg": "not a bool"}]
    assert validation_lines(detail) == ["  train.epochs: must be >= 1", "  force: not a bool"]


def test_validation_lines_read_a_problem_body():
    problem = {
        "type": "https://dynds.dev/problems/validation",
        "status": 422,
        "detail": "2 invalid fields: ...",
        "errors": [
            {"loc": ["body", "spec", "train", "epochs"], "msg": "must be >= 1", "type": "x"},
            {"loc": ["body", "forse"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
        ],
    }
    assert validation_lines(problem) == ["  train.epochs: must be >= 1", "  forse: Extra inputs are not permitted"]
    assert validation_lines({"status": 422, "detail": "spec is required"}) == ["spec is required"]


def test_api_base_dashboard_url_and_spec_files(tmp_path):
    assert api_base("http://h:8000/") == api_base("http://h:8000/api/v1") == "http://h:8000/api/v1"
    assert dashboard_url("http://h:8000/api/v1", 7) == dashboard_url("http://h:8000/", 7) == "http://h:8000/#/jobs/7"
    (tmp_path / "a.yaml").write_text("train: {epochs: 3}\n")
    assert read_spec_file(tmp_path / "a.yaml") == {"train": {"epochs": 3}}
    (tmp_path / "empty.yaml").write_text("")
    assert read_spec_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(SpecError, match="(?s)b.json.*not valid JSON"):
        read_spec_file(tmp_path / "b.json")
    (tmp_path / "c.yaml").write_text("- a list\n")
    with pytest.raises(SpecError, match="expected a mapping of spec sections, got list"):
        read_spec_file(tmp_path / "c.yaml")
    with pytest.raises(SpecError, match="(?s)missing.yaml.*cannot read the file"):
        read_spec_file(tmp_path / "missing.yaml")


def test_worker_without_a_broker_is_a_clear_error(monkeypatch, capsys):
    from app.core.config import get_settings

    monkeypatch.delenv("DYNDS_BROKER_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["worker"]) == 2
        assert "no broker configured: pass --broker-url or set DYNDS_BROKER_URL" in capsys.readouterr().err
        monkeypatch.setenv("DYNDS_BROKER_URL", "redis://127.0.0.1:1/0")
        get_settings.cache_clear()
        assert main(["worker"]) == 2
        assert "cannot reach the broker at redis://127.0.0.1:1/0" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_token_create_list_revoke(tmp_path, monkeypatch, capsys):
    from app import security
    from app.core.config import get_settings
    from app.core.db import get_engine, session_factory

    monkeypatch.setenv("DYNDS_DATABASE_URL", f"sqlite:///{tmp_path / 'tokens.db'}")
    get_settings.cache_clear()
    try:
        assert main(["token", "create", "ci"]) == 0
        token = capsys.readouterr().out.strip()
        assert token.startswith("dynds_")
        with session_factory(get_engine(get_settings().database_url))() as s:
            assert security.verify_token(session=s, token=token).name == "ci"
            assert security.verify_token(session=s, token=token + "x") is None
        assert main(["token", "list"]) == 0
        listing = capsys.readouterr().out
        assert "\tci\t" in listing and token not in listing  # only the hash is kept
        # The last token: refused without --force (it would open every write), then revoked with it.
        assert main(["token", "revoke", "ci"]) == 2
        assert "last API token" in capsys.readouterr().err
        assert main(["token", "revoke", "ci", "--force"]) == 0
        assert "writes are closed" in capsys.readouterr().err
        with session_factory(get_engine(get_settings().database_url))() as s:
            assert security.verify_token(session=s, token=token) is None
            assert security.has_tokens(session=s) and security.writes_closed(session=s)
        assert main(["token", "list"]) == 0 and "writes are closed" in capsys.readouterr().out
        assert main(["token", "revoke", "--name", "ci"]) == 1  # the earlier spelling still works
        assert "no token named 'ci'" in capsys.readouterr().err
        assert main(["token", "create", "  "]) == 2
        assert main(["token", "create"]) == 2 and "dynds token create NAME" in capsys.readouterr().err
        assert main(["token", "revoke", "a", "--name", "b"]) == 2 and "two names given" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
        get_engine.cache_clear()


def _submit(url, spec_path, *extra, env=None):
    return subprocess.run([DYNDS, "submit", str(spec_path), "--server", url, *extra], capture_output=True, text=True, timeout=180, env=env)


def test_submit_exit_codes_against_a_live_server(tmp_path, serve):
    data_dir = tmp_path / "data"
    (data_dir / "empty").mkdir(parents=True)
    url = serve(DYNDS_DATA_DIRS=str(data_dir))
    env = subprocess_env(tmp_path)

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TINY_SPEC))
    r = _submit(url, good, "--wait", "--max-acc-drop", "100", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{url}/#/jobs/" in r.stdout  # the job's dashboard page, beside its API URL
    assert "succeeded: time_saving" in r.stdout and "(lockstep)" in r.stdout and " pp" not in r.stdout
    assert "\nverdict: Not conclusive: " in r.stdout  # the tiny spec runs no equal-time baseline

    # The identical spec is answered with the finished job; a threshold it misses gives 1, saying which.
    r = _submit(url, good, "--wait", "--min-time-saving", "0.99", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "already exists" in r.stdout and "time_saving" in r.stderr and "below --min-time-saving 0.99" in r.stderr

    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": 0}, "model": {"arch": "vgg"}}')
    r = _submit(url, bad, "--wait", env=env)
    assert r.returncode == 2
    assert "train.epochs:" in r.stderr and "model.arch:" in r.stderr and "Traceback" not in r.stderr

    # A job that fails while running (an empty image folder inside the allowed data dirs) gives 1 with its error.
    failing = tmp_path / "failing.yaml"
    failing.write_text(yaml.safe_dump({**TINY_SPEC, "data": {"dataset": "imagefolder", "root": str(data_dir / "empty")}}))
    r = _submit(url, failing, "--wait", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: " in r.stderr and "Traceback" not in r.stderr

    r = _submit("http://127.0.0.1:9", good, "--retry-for", "1", env=env)
    assert r.returncode == 2 and "cannot reach the server at http://127.0.0.1:9" in r.stderr
    assert "retrying in" in r.stderr and "ConnectError" in r.stderr

    # Once a token exists, writes need it: 2 without, 0 with DYNDS_TOKEN.
    token = subprocess.run([DYNDS, "token", "create", "ci"], capture_output=True, text=True, env=env, check=True).stdout.strip()
    r = _submit(url, good, "--force", env=env)
    assert r.returncode == 2 and "401" in r.stderr and "DYNDS_TOKEN" in r.stderr
    r = _submit(url, good, "--force", env={**env, "DYNDS_TOKEN": token})
    assert r.returncode == 0, r.stderr


def test_two_workers_on_one_host_can_take_their_own_celery_names():
    assert build_parser().parse_args(["worker"]).name == "dynds@%h"
    assert build_parser().parse_args(["worker", "--name", "gpu1@%h"]).name == "gpu1@%h"


def test_submit_wait_rides_out_a_server_restart(tmp_path):
    """The server stops mid-job (SIGTERM: the job is requeued) and comes back on the same port: `dynds submit
    --wait` retries through the refused connections, follows the rerun and exits 0."""
    env = subprocess_env(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/api/v1/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def start(n: int) -> Proc:
        proc = Proc(["serve", "--port", str(port), "--log-level", "warning"], env, tmp_path / f"serve-{n}.log")
        wait_until(healthy, 60, "dynds serve to answer /healthz", interval=0.2)
        return proc

    server = start(1)
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(epochs=15)))  # about 10 s of training, on one thread
    submit = subprocess.Popen(
        [DYNDS, "submit", str(spec), "--server", url, "--wait", "--retry-for", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_until(lambda: httpx.get(f"{url}/api/v1/jobs/1", timeout=2).json().get("status") == "running", 60, "the job to run")
        server.stop()
        assert not healthy()
        server = start(2)
        out, err = submit.communicate(timeout=240)
    finally:
        submit.kill()
        server.stop()
    assert submit.returncode == 0, out + err
    assert "retrying in" in err and "ConnectError" in err  # it saw the server gone, and waited
    assert "job 1 succeeded: time_saving" in out
