"""docker-compose.yml and the Dockerfile, checked as far as a machine without a Docker engine allows:
the structure Compose needs, and that every command and setting in it means something to dynds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items() if k != "<<"}


def test_services_health_checks_and_start_order(compose):
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "api", "worker"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], f"{name} needs a health check"
    assert services["api"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                            "redis": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"]["api"] == {"condition": "service_healthy"}  # the API migrates first
    for name, volume in (("redis", "/data"), ("postgres", "/var/lib/postgresql/data")):
        assert any(v.split(":")[1] == volume and v.split(":")[0] in compose["volumes"] for v in services[name]["volumes"])
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_every_variable_set_is_a_setting_with_a_valid_value(compose):
    fields = set(Settings.model_fields)
    for name in ("api", "worker"):
        env = _env(compose["services"][name])
        assert {"DYNDS_DATABASE_URL", "DYNDS_BROKER_URL"} <= set(env)
        for key in env:
            assert key.startswith("DYNDS_") and key[len("DYNDS_"):].lower() in fields, f"{name}: {key} is no setting"
        # Substitute Compose's ${VAR:-default} and build the settings the container would get.
        values = {k[len("DYNDS_"):].lower(): re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
        settings = Settings(**values)
        assert settings.database_url.startswith("postgresql://") and settings.broker_url.startswith("redis://")
        assert settings.queue == "gpu" and settings.data_dirs == ["/data"]


def test_commands_are_valid_dynds_invocations(compose):
    parser = build_parser()
    api = compose["services"]["api"]["command"]
    args = parser.parse_args(api[1:])
    assert api[0] == "dynds" and args.command == "serve" and args.host == "0.0.0.0"
    worker = compose["services"]["worker"]["command"]
    args = parser.parse_args(worker[1:])
    assert worker[0] == "dynds" and args.command == "worker" and args.queue == _env(compose["services"]["worker"])["DYNDS_QUEUE"]


def test_dockerfile_installs_the_package_from_python_311_slim():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "RUN pip install ." in text
    for package in ("dynds_core", "app", "worker"):
        assert f"COPY {package} ./{package}" in text
