"""Logging (issue 9, deliverable 6): one configuration for `dynds serve` and `dynds worker`, the job id on
every job line (text and JSON), user errors on one line, and each job's lines stored (bounded) and served."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from service_helpers import Proc, free_port, subprocess_env, tiny_spec, wait_serving, wait_until

from app import crud
from app.logs import CUT, configure_logging, job_context, logging_config, start_job_log, stop_job_log
from dynds.cli import build_parser
from worker.runner import run_job

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "celery")


@pytest.fixture
def restore_logging():
    """configure_logging changes the process's loggers: put them back afterwards."""
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers), logging.getLogger(name).propagate) for name in LOGGERS}
    yield
    for name, (level, handlers, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def _lines(sessions, job_id):
    with sessions() as s:
        return crud.job_logs_after(session=s, job_id=job_id, limit=100_000)


def _job_lines(err: str, job_id: int) -> list[str]:
    return [line for line in err.splitlines() if f"job {job_id}" in line]


# ---------------------------------------------------------------- the flags


@pytest.mark.parametrize("command", [["serve"], ["worker"]])
def test_serve_and_worker_take_the_same_log_flags(command):
    parser = build_parser()
    args = parser.parse_args(command + ["--log-level", "WARNING", "--log-format", "json"])
    assert args.log_level == "warning" and args.log_format == "json"
    defaults = parser.parse_args(command)
    assert defaults.log_level is None and defaults.log_format is None  # then DYNDS_LOG_LEVEL / DYNDS_LOG_FORMAT
    with pytest.raises(SystemExit):
        parser.parse_args(command + ["--log-format", "xml"])


def test_the_worker_still_takes_its_old_loglevel_spelling_without_showing_it(capsys):
    parser = build_parser()
    assert parser.parse_args(["worker", "--loglevel", "debug"]).log_level == "debug"
    with pytest.raises(SystemExit):
        parser.parse_args(["worker", "--help"])
    help_text = capsys.readouterr().out
    assert "--log-level" in help_text and "--loglevel" not in help_text


def test_settings_give_the_defaults(monkeypatch):
    from app.core.config import Settings

    monkeypatch.setenv("DYNDS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("DYNDS_LOG_FORMAT", "json")
    s = Settings()
    assert (s.log_level, s.log_format, s.job_log_max_lines, s.job_log_max_line_chars) == ("warning", "json", 2000, 1000)


def test_one_config_routes_uvicorn_and_celery_through_the_root(restore_logging):
    cfg = logging_config("warning", "json")
    assert cfg["handlers"]["console"]["level"] == "WARNING" and cfg["root"]["level"] == "INFO"  # jobs still store INFO
    configure_logging("warning", "json")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        lg = logging.getLogger(name)
        assert lg.handlers == [] and lg.propagate, name


def test_celery_does_not_configure_logging_of_its_own(restore_logging, settings):
    from worker.celery_app import make_celery

    configure_logging("info", "text")
    root = logging.getLogger()
    celery = make_celery(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))  # never connected
    celery.log.already_setup = False
    celery.log.setup_logging_subsystem(loglevel="ERROR")
    # Celery's setup_logging went to app.logs: our two handlers, our format, the root at INFO (not Celery's ERROR).
    assert [type(h).__name__ for h in root.handlers] == ["StderrHandler", "JobLogHandler"]
    assert type(root.handlers[0].formatter).__name__ == "TextFormatter" and root.level == logging.INFO


# ---------------------------------------------------------------- the job id on every line


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_jobs_console_lines_carry_its_id(restore_logging, capsys, sessions, settings, make_job, fmt):
    configure_logging("info", fmt)
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    err = capsys.readouterr().err
    runner_lines = [line for line in err.splitlines() if "worker.runner" in line]
    assert len(runner_lines) >= 2, err  # claimed, succeeded
    for line in runner_lines:
        if fmt == "json":
            record = json.loads(line)
            assert record["job_id"] == job_id and record["logger"] == "worker.runner" and record["level"] == "INFO"
        else:
            assert f"[job {job_id}]" in line, line
    logging.getLogger("elsewhere").warning("not in a job")
    outside = capsys.readouterr().err.strip().splitlines()[-1]
    assert (json.loads(outside)["job_id"] is None) if fmt == "json" else "[job" not in outside


# ---------------------------------------------------------------- stored and served


def test_a_jobs_info_lines_reach_the_table_and_the_endpoint(restore_logging, sessions, settings, make_job):
    from fastapi.testclient import TestClient

    from app.main import create_app

    configure_logging("warning", "text")  # the console shows warnings only; the job still stores INFO
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    lines = _lines(sessions, job_id)
    messages = [line["message"] for line in lines]
    assert any("claimed by" in m for m in messages) and messages[-1] == f"job {job_id} succeeded", messages
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert {line["level"] for line in lines} <= {"INFO", "WARNING"} and lines[0]["logger"] == "worker.runner"

    with TestClient(create_app(settings)) as client:
        page = client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1}).json()
        assert page["data"][0]["message"] == messages[0] and page["next_cursor"] == 1
        rest = client.get(f"/api/v1/jobs/{job_id}/logs", params={"after": 1}).json()
        assert [line["message"] for line in rest["data"]] == messages[1:]
        assert client.get(f"/api/v1/jobs/{job_id}/logs", params={"after": rest["next_cursor"]}).json() == {
            "data": [],
            "next_cursor": rest["next_cursor"],
        }
        assert client.get("/api/v1/jobs/999999/logs").status_code == 404


def test_a_skipped_delivery_stores_nothing_and_a_rerun_numbers_after_the_first(restore_logging, sessions, settings, make_job):
    configure_logging("warning", "text")
    job_id = make_job()
    assert run_job(job_id, session_factory=sessions, settings=settings) == "succeeded"
    first = _lines(sessions, job_id)
    assert run_job(job_id, session_factory=sessions, settings=settings) == "skipped"
    assert _lines(sessions, job_id) == first  # a duplicate delivery writes nothing into the job's log
    with job_context(job_id):
        start_job_log(job_id, sessions, settings)
        logging.getLogger("worker.runner").info("second run")
    assert _lines(sessions, job_id)[-1]["seq"] == first[-1]["seq"] + 1


def test_a_user_error_is_one_line_and_an_unexpected_one_keeps_its_traceback(
    restore_logging, capsys, sessions, settings, make_job, tmp_path, monkeypatch
):
    import dynds_core

    configure_logging("info", "text")
    spec = tiny_spec()
    spec["data"] = {"dataset": "cifar10", "root": str(tmp_path / "no-such-dir")}  # a DataError
    user = make_job(spec)
    assert run_job(user, session_factory=sessions, settings=settings) == "failed"
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if f"job {user} failed" in line]
    assert len(failed) == 1 and "no-such-dir" in failed[0] and "Traceback" not in err, err
    stored = [line for line in _lines(sessions, user) if line["level"] == "ERROR"]
    assert len(stored) == 1 and "\n" not in stored[0]["message"] and "Traceback" not in stored[0]["message"]

    def broken_train(spec, callbacks, **kw):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(dynds_core, "train", broken_train)
    bug = make_job()
    assert run_job(bug, session_factory=sessions, settings=settings) == "failed"
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "broken_train" in err, err
    stored = [line for line in _lines(sessions, bug) if line["level"] == "ERROR"]
    assert len(stored) == 1 and "Traceback" in stored[0]["message"] and "device-side assert" in stored[0]["message"]


def test_a_jobs_stored_log_is_bounded_in_lines_and_characters(restore_logging, sessions, settings, make_job):
    configure_logging("warning", "text")
    job_id = make_job()
    small = settings.model_copy(update={"job_log_max_lines": 5, "job_log_max_line_chars": 60})
    log = logging.getLogger("worker.runner")
    with job_context(job_id):
        start_job_log(job_id, sessions, small)
        log.info("x" * 500)
        try:
            raise ValueError("the real cause")
        except ValueError:
            log.error("it broke", exc_info=True)
        for i in range(2, 12):
            log.info("line %d", i)
        log.debug("not stored: below INFO")
    lines = _lines(sessions, job_id)
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert all(len(line["message"]) <= 60 for line in lines)
    assert lines[0]["message"].startswith("xxx") and lines[0]["message"].endswith(CUT)
    assert lines[1]["message"].startswith("it broke") and lines[1]["message"].endswith("ValueError: the real cause")
    assert [line["message"] for line in lines[2:4]] == ["line 2", "line 3"]  # the oldest are kept
    assert lines[4]["level"] == "WARNING" and lines[4]["message"].startswith("log truncated: 8 later lines dropped"), lines[4]


def test_lines_are_written_while_the_job_runs(restore_logging, sessions, settings, make_job):
    configure_logging("warning", "text")
    job_id = make_job()
    with job_context(job_id):
        start_job_log(job_id, sessions, settings)  # flushes every metrics_flush_interval_s (0.2 s here)
        logging.getLogger("worker.runner").info("early")
        wait_until(lambda: _lines(sessions, job_id), 10, "the line to be written before the job ends")
        stop_job_log(job_id)


# ---------------------------------------------------------------- a real `dynds serve`


def test_dynds_serve_json_logs_of_uvicorn_and_a_job_served_by_the_api(tmp_path):
    port = free_port()
    proc = Proc(["serve", "--port", str(port), "--log-level", "info", "--log-format", "json"], subprocess_env(tmp_path), tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_serving(proc, url + "/healthz")
        job_id = httpx.post(url + "/jobs", json={"spec": tiny_spec()}, timeout=30).json()["id"]
        wait_until(
            lambda: httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()["status"] in ("succeeded", "failed"), 120, "the job to finish", interval=0.3
        )
        assert httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()["status"] == "succeeded"
        logs = httpx.get(f"{url}/jobs/{job_id}/logs", timeout=5).json()["data"]
        assert any("claimed by" in line["message"] for line in logs) and logs[-1]["message"] == f"job {job_id} succeeded"
    finally:
        proc.stop()
        proc.popen.wait(30)
    records = []
    for line in proc.output().splitlines():
        if line.startswith("dynds serve: "):  # the start-up banner, printed on stdout
            continue
        records.append(json.loads(line))  # every log line is one JSON object
    assert any(r["logger"].startswith("uvicorn") and "Uvicorn running" in r["message"] for r in records), records
    assert any(r["logger"] == "uvicorn.access" for r in records)
    job_records = [r for r in records if r["logger"] == "worker.runner"]
    assert job_records and all(r["job_id"] == job_id for r in job_records), job_records


# ---------------------------------------------------------------- a real `dynds worker` (Celery)


def test_dynds_worker_stores_a_jobs_info_lines_from_its_pool_child_whatever_the_console_level(tmp_path, settings, sessions, make_job, redis_url):
    """Celery must not configure logging of its own (it would set the root to the worker's level, and a
    worker at --log-level warning would store no INFO line of its jobs)."""
    from app.dispatch import CeleryDispatcher

    queue = "dynds-test-logs"
    proc = Proc(
        ["worker", "--queue", queue, "--concurrency", "1", "--log-level", "warning", "--log-format", "json"],
        subprocess_env(tmp_path, DYNDS_BROKER_URL=redis_url),
        tmp_path / "worker.log",
    )
    try:
        job_id = make_job()
        CeleryDispatcher(redis_url, queue=queue).dispatch(job_id)

        def finished():
            assert proc.popen.poll() is None, f"dynds worker exited:\n{proc.output()}"
            with sessions() as s:
                return crud.get_job(session=s, job_id=job_id).status in ("succeeded", "failed", "cancelled")

        wait_until(finished, 120, f"job {job_id} on the Celery worker", interval=0.3)
        wait_until(
            lambda: _lines(sessions, job_id) and _lines(sessions, job_id)[-1]["message"] == f"job {job_id} succeeded",
            30,
            "the job's last stored line",
        )
    finally:
        proc.stop()
        proc.popen.wait(30)
    messages = [line["message"] for line in _lines(sessions, job_id)]
    assert any("claimed by" in m for m in messages), messages
    output = proc.output()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]  # Celery's banner is plain text
    assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in records), records  # the console's level
    assert "claimed by" not in output
