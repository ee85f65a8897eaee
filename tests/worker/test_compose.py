"""docker-compose.yml and the Dockerfile, checked as far as a machine without a Docker engine allows:
the structure Compose needs, and that every command and setting in it means something to dynds."""

from __future__ import annotations

import fnmatch
import inspect
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from app.core.config import Settings
from dynds.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "dynds:latest"  # what `build: .` makes; the services running it run our Dockerfile's image


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
    assert services["api"]["depends_on"] == {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}
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
            assert key.startswith("DYNDS_") and key[len("DYNDS_") :].lower() in fields, f"{name}: {key} is no setting"
        # Substitute Compose's ${VAR:-default} and build the settings the container would get.
        values = {k[len("DYNDS_") :].lower(): re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
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


# ---------------------------------------------------------------- the Dockerfile


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), " ".join(args.split())))
    return out


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _copies(instructions) -> list[tuple[int, list[str]]]:
    """(index, sources) of each COPY from the build context."""
    return [(i, args.split()[:-1]) for i, (instr, args) in enumerate(instructions) if instr == "COPY" and not args.startswith("--from")]


def _source_paths() -> list[str]:
    """What `pip install .` builds from: the packages found, and the readme the metadata names."""
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*") for p in include}) + [_pyproject()["project"]["readme"]]


def test_dockerfile_installs_the_package_from_python_311_slim():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    for package in ("dynds", "dynds_core", "app", "worker", "frontend"):
        assert f"COPY {package} ./{package}" in text


def test_dependencies_are_installed_in_a_layer_before_the_sources():
    instructions = _instructions()
    runs = [(i, args) for i, (instr, args) in enumerate(instructions) if instr == "RUN"]
    deps = [(i, args) for i, args in runs if re.search(r"pip install (-c \S+ )?-r", args)]
    package = [(i, args) for i, args in runs if re.search(r"pip install --no-deps \.(\s|$)", args)]
    assert len(deps) == 1 and len(package) == 1, "one RUN installs the dependencies, one the package (--no-deps)"
    assert not [args for _, args in runs if re.search(r"pip install (?!--no-deps)[^&]*(^|\s)\.(\s|$)", args)], (
        "the package is installed only with --no-deps (its dependencies come from the layer before)"
    )
    (i_deps, _), (i_pkg, _) = deps[0], package[0]
    copies = _copies(instructions)
    before = [src for i, sources in copies if i < i_deps for src in sources]
    assert before == ["pyproject.toml", "constraints.txt"], f"only the dependency lists are copied before the dependencies: {before}"
    sources = {src for i, sources in copies if i < i_pkg for src in sources}
    missing = set(_source_paths()) - sources
    assert not missing, f"copied after `pip install --no-deps .`, or not at all: {sorted(missing)}"
    assert i_deps < min(i for i, s in copies if set(s) & set(_source_paths())), "the sources come after the deps"


def test_the_dependency_layer_installs_exactly_pyprojects_dependencies(tmp_path):
    """Run the layer's list-making command on pyproject.toml: it gives [project].dependencies and the service
    extra (the image runs the server and the workers), no more, no less."""
    run = next(args for instr, args in _instructions() if instr == "RUN" and "-r /tmp/requirements.txt" in args)
    script = run.split(">", 1)[0].strip()
    argv = shlex.split(script)
    assert argv[:2] == ["python", "-c"], script
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    out = subprocess.run([sys.executable, "-c", argv[2]], cwd=tmp_path, capture_output=True, text=True, check=True)
    project = _pyproject()["project"]
    assert out.stdout.split() == project["dependencies"] + project["optional-dependencies"]["service"]
    assert "-c constraints.txt" in run  # the exact releases the project is tested with


def test_the_image_ships_the_examples_and_dockerignore_drops_nothing_it_copies():
    copies = _copies(_instructions())
    assert any("examples" in sources for _, sources in copies), "the image ships examples/"
    patterns = [
        p.strip().lstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.strip().startswith(("#", "!"))
    ]
    excluded = []
    for _, sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
            files = (
                [src]
                if (ROOT / src).is_file()
                else [
                    os.path.relpath(os.path.join(d, f), ROOT)
                    for d, dirs, fs in os.walk(ROOT / src)
                    if "__pycache__" not in d and "node_modules" not in d
                    for f in fs
                    if not f.endswith(".pyc")
                ]
            )
            for rel in files:
                # Conservative: fnmatch's * also crosses "/", so this flags a superset of what Docker drops.
                hit = [p for p in patterns if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.rstrip("/") + "/*")]
                if hit:
                    excluded.append(f"{rel} ({hit[0]})")
    assert not excluded, f".dockerignore drops files the Dockerfile copies: {excluded[:10]}"


def _image_services(compose: dict) -> dict[str, dict]:
    services = {n: s for n, s in compose["services"].items() if s.get("image") == IMAGE or "build" in s}
    assert set(services) == {"api", "worker"}
    return services


def _command_lines(service: dict) -> list[list[str]]:
    """The service's command and health check, each as argv (CMD-SHELL strings split like sh would)."""
    lines = [list(service["command"])]
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        for part in re.split(r"\|\||&&|;|\|", test[1]):
            lines.append(shlex.split(part.replace("$$", "$")))
    else:
        assert test[0] == "CMD", test
        lines.append(list(test[1:]))
    return [line for line in lines if line]


def test_every_program_and_file_the_compose_commands_use_is_in_the_image(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    apt = set(re.search(r"apt-get install -y --no-install-recommends ([^&\\]+)", dockerfile).group(1).split())
    scripts = set(_pyproject()["project"]["scripts"])
    project = _pyproject()["project"]
    dependencies = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"] + project["optional-dependencies"]["service"]}
    # Console scripts of the dependencies (as installed here, where the same requirements are installed).
    dep_scripts = {
        ep.name for ep in metadata.entry_points(group="console_scripts") if ep.dist is not None and ep.dist.metadata["Name"].lower() in dependencies
    }
    shipped_paths = [src for _, sources in _copies(_instructions()) for src in sources]
    for name, service in _image_services(compose).items():
        for argv in _command_lines(service):
            program = argv[0]
            if program in ("exit", "true", "false"):
                continue
            assert program in scripts | dep_scripts | apt, (
                f"{name}: {program!r} is neither dynds' script, a dependency's, nor installed by apt-get in the image"
            )
            for arg in argv[1:]:
                path = arg.split("=", 1)[-1]
                # A relative path is the working directory's (/srv/dynds: the build context's copies).
                if "/" in path and "://" not in path and not path.startswith(("-", "/", "$")):
                    assert (ROOT / path).exists() and any(path == s or path.startswith(s.rstrip("/") + "/") for s in shipped_paths), (
                        f"{name}: {path} is not copied into the image"
                    )


def test_the_health_checks_probe_what_the_services_answer(compose):
    from app.api.routes.health import router
    from app.main import API_PREFIX
    from dynds.commands.worker import WORKER_NAME, cmd_worker

    api, worker = (compose["services"][n]["healthcheck"]["test"] for n in ("api", "worker"))
    url = next(a for a in api if a.startswith("http://"))
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    assert path.startswith(API_PREFIX + "/") and path[len(API_PREFIX) :] in {r.path for r in router.routes}, path
    # The worker is pinged by the nodename `dynds worker` gives it, in a container whose hostname is %h.
    assert "--destination dynds@$$HOSTNAME" in worker[1]
    assert WORKER_NAME == "dynds@%h" and "--hostname={args.name}" in inspect.getsource(cmd_worker)
    assert "--name" not in compose["services"]["worker"]["command"]  # compose keeps the name the health check pings


def test_the_cache_volume_is_in_the_image_users_home(compose):
    """DYNDS_CACHE_DIR is a volume in the home of the user the image runs as (so it is writable)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    home = re.search(r"useradd .*--home-dir (\S+) dynds", dockerfile).group(1)
    assert re.search(r"^USER dynds$", dockerfile, re.M) and f"DYNDS_HOME={home}" in dockerfile
    for name in ("api", "worker"):
        cache = _env(compose["services"][name])["DYNDS_CACHE_DIR"]
        assert cache.startswith(home + "/") and any(v.split(":")[1] == cache for v in compose["services"][name]["volumes"])


def test_the_api_serves_the_weights_the_workers_write_from_one_shared_volume(compose):
    """Workers write trained weights under DYNDS_ARTIFACT_DIR and the API serves them: the same named volume in both."""
    services = compose["services"]
    mounts = {}
    for name in ("api", "worker"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        artifact_dir = env["DYNDS_ARTIFACT_DIR"]
        mounts[name] = [v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == artifact_dir]
        assert mounts[name] and not any(v.endswith(":ro") for v in services[name]["volumes"] if v.split(":")[1] == artifact_dir)
    assert mounts["api"] == mounts["worker"] and mounts["api"][0] in compose["volumes"]


# ---------------------------------------------------------------- the door and the passwords


def test_the_api_gets_its_first_token_as_a_secret_and_the_workers_do_not(compose):
    """The API listens beyond loopback: its first token is a compose secret (from the host's environment or a
    file), mounted where DYNDS_BOOTSTRAP_TOKEN_FILE says; workers authenticate to Redis and PostgreSQL only."""
    (name,) = compose["services"]["api"]["secrets"]
    source = compose["secrets"][name]
    assert len(source) == 1 and (source.get("environment") == "DYNDS_BOOTSTRAP_TOKEN" or "file" in source), source
    assert _env(compose["services"]["api"])["DYNDS_BOOTSTRAP_TOKEN_FILE"] == f"/run/secrets/{name}"
    worker = compose["services"]["worker"]
    assert "secrets" not in worker and not {"DYNDS_BOOTSTRAP_TOKEN", "DYNDS_BOOTSTRAP_TOKEN_FILE"} & set(_env(worker))
    assert "DYNDS_OPEN_WRITES" not in _env(compose["services"]["api"])  # closed unless opened on purpose


def test_the_api_command_passes_the_door_with_the_secret_and_only_with_it(compose, tmp_path):
    """compose's api command and settings, the secret's file and the database here: with a token in the file
    the server may start (and stores it hashed); with the file blank it refuses, naming the ways out."""
    from app.core.db import make_engine
    from dynds.commands.common import UsageError
    from dynds.commands.serve import open_door

    api = compose["services"]["api"]
    args = build_parser().parse_args(api["command"][1:])
    env = _env(api)
    secret = tmp_path / "dynds_bootstrap_token"
    values = {k[len("DYNDS_") :].lower(): re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    values.update(database_url=f"sqlite:///{tmp_path / 'dynds.db'}", bootstrap_token_file=str(secret))
    settings = Settings(**values)
    engine = make_engine(settings.database_url)
    try:
        door = dict(host=args.host, port=args.port, open_writes=args.open or settings.open_writes, create=args.create_token)
        secret.write_text("")  # DYNDS_BOOTSTRAP_TOKEN unset on the host
        with pytest.raises(UsageError, match="with no API token"):
            open_door(engine, settings, **door)
        secret.write_text("0123456789abcdef" * 4 + "\n")  # `openssl rand -hex 32`
        assert open_door(engine, settings, **door) is None
        assert open_door(engine, settings, **door) is None  # a restart
    finally:
        engine.dispose()


def test_redis_requires_the_password_the_broker_url_carries(compose):
    def sub(value: str) -> str:
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)

    redis = compose["services"]["redis"]
    command = redis["command"]
    password = sub(command[command.index("--requirepass") + 1])
    assert password and sub(redis["environment"]["REDISCLI_AUTH"]) == password  # the health check's redis-cli
    for name in ("api", "worker"):
        url = sub(_env(compose["services"][name])["DYNDS_BROKER_URL"])
        assert url == f"redis://:{password}@redis:6379/0", url
