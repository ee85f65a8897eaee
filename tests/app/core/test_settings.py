"""Settings from DYNDS_* variables."""

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.db import normalize_url


def test_defaults_are_embedded_sqlite_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNDS_HOME", str(tmp_path))
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'dynds.db'}" and s.embedded
    assert s.data_dirs[0] == str(tmp_path / "data")


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNDS_DATA_DIRS", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("DYNDS_BROKER_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("DYNDS_READ_REQUIRES_TOKEN", "true")
    monkeypatch.setenv("DYNDS_MAX_EPOCHS", "50")
    s = Settings()
    assert s.data_dirs == [f"{tmp_path}/a", f"{tmp_path}/b"] and not s.embedded and s.read_requires_token and s.max_epochs == 50


def test_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("DYNDS_RECOVER_POLICY", "ignore")
    with pytest.raises(ValidationError, match="recover_policy"):
        Settings()


def test_postgres_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_stale_job_limit_defaults_and_floor(monkeypatch):
    s = Settings()
    assert s.stale_job_after_s == 600 and s.stale_check_interval_s == 60
    monkeypatch.setenv("DYNDS_STALE_JOB_AFTER_S", "5")  # below 30 s: running jobs would be failed between flushes
    with pytest.raises(ValidationError, match="stale_job_after_s must be at least 30 s .* got 5"):
        Settings()
    monkeypatch.setenv("DYNDS_STALE_JOB_AFTER_S", "60")
    monkeypatch.setenv("DYNDS_METRICS_FLUSH_INTERVAL_S", "20")  # 5 flush intervals = 100 s
    with pytest.raises(ValidationError, match="at least 100 s"):
        Settings()
    monkeypatch.setenv("DYNDS_STALE_CHECK_INTERVAL_S", "0")
    monkeypatch.setenv("DYNDS_STALE_JOB_AFTER_S", "900")
    with pytest.raises(ValidationError, match="stale_check_interval_s must be > 0 seconds, got 0"):
        Settings()


def test_the_bootstrap_token_is_a_secret_from_the_environment_or_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNDS_BOOTSTRAP_TOKEN", "from-the-environment-0123456789")
    s = Settings()
    assert s.bootstrap_secret() == "from-the-environment-0123456789"
    assert "from-the-environment" not in repr(s) and "from-the-environment" not in str(s.model_dump())  # never printed
    path = tmp_path / "token"
    path.write_text("from-a-file-0123456789\n")  # Docker secrets and editors end files with a newline
    monkeypatch.delenv("DYNDS_BOOTSTRAP_TOKEN")
    monkeypatch.setenv("DYNDS_BOOTSTRAP_TOKEN_FILE", str(path))
    assert Settings().bootstrap_secret() == "from-a-file-0123456789"
    path.write_text("  \n")
    assert Settings().bootstrap_secret() is None  # blank: none given
    monkeypatch.setenv("DYNDS_BOOTSTRAP_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="DYNDS_BOOTSTRAP_TOKEN_FILE .*missing cannot be read"):
        Settings().bootstrap_secret()  # read at start, by the server only: a worker never needs the file
    monkeypatch.setenv("DYNDS_BOOTSTRAP_TOKEN", "x" * 20)
    with pytest.raises(ValidationError, match="not both"):
        Settings()
    assert Settings(bootstrap_token=None, bootstrap_token_file=None).bootstrap_secret() is None


def test_a_worker_is_gone_after_two_missed_heartbeats_at_the_least(monkeypatch):
    s = Settings()
    assert (s.worker_heartbeat_s, s.worker_timeout_s, s.refuse_unserved) == (5.0, 30.0, False)
    monkeypatch.setenv("DYNDS_WORKER_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("DYNDS_WORKER_TIMEOUT_S", "3")
    assert Settings().worker_timeout_s == 3.0
    monkeypatch.setenv("DYNDS_WORKER_TIMEOUT_S", "0.9")
    with pytest.raises(ValidationError, match=r"worker_timeout_s \(0.9 s\) must be at least twice worker_heartbeat_s \(0.5 s\)"):
        Settings()
