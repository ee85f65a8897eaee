"""The `dynds` command as a whole (dynds/cli.py): the layers under it, its version, its flags' help, and
what each command needs installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dynds.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]

# Who may import whom: the library under everything, the composition root (dynds) over everything.
MAY_NOT_IMPORT = {
    "dynds_core": {"app", "worker", "dynds", "frontend"},
    "app": {"worker", "dynds"},
    "worker": {"dynds"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in it (also inside functions)."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                tops.add(node.args[0].value.split(".")[0])
    return tops


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_imports_run_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & MAY_NOT_IMPORT[package]) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}


def test_the_import_scan_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.embedded import X\n    import dynds.cli\n    importlib.import_module('app.main')\n")
    assert imported_packages(module) == {"worker", "dynds", "app"}


def test_version_has_one_source(capsys):
    import tomllib

    import dynds
    import dynds_core

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dynds {dynds_core.__version__}" == f"dynds {dynds.__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # read from dynds_core.__version__


def _options(command: str) -> list:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return [a for a in sub.choices[command]._actions if a.option_strings and a.help != "==SUPPRESS==" and a.dest != "help"]


@pytest.mark.parametrize("command", ["serve", "worker", "submit"])
def test_every_flag_says_what_it_does_and_its_default(command):
    options = _options(command)
    assert options
    missing = [a.option_strings[0] for a in options if not a.help or "default" not in a.help]
    assert missing == []


def test_serve_and_worker_take_the_same_service_flags():
    def flags(command: str) -> set[str]:
        return {s for a in _options(command) for s in a.option_strings}

    shared = {"--database-url", "--broker-url", "--log-level", "--log-format"}
    assert shared <= flags("serve") and shared <= flags("worker")


def _run_blocking(modules: tuple[str, ...], argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`dynds ARGV` in a fresh interpreter where importing any of ``modules`` fails, as when not installed."""
    code = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {modules!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dynds.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DYNDS_HOME": str(tmp_path / "home")},
    )


SERVICE_AND_TORCH = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlmodel",
    "sqlalchemy",
    "alembic",
    "celery",
    "redis",
    "torch",
    "torchvision",
    "app",
    "worker",
)


def test_submit_needs_neither_the_server_nor_torch(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("train: {epochs: 1}\n")
    r = _run_blocking(SERVICE_AND_TORCH, ["submit", str(spec), "--server", "http://127.0.0.1:9", "--retry-for", "0"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot reach the server at http://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr


def test_a_service_command_without_the_service_extra_says_what_to_install(tmp_path):
    r = _run_blocking(("fastapi", "uvicorn", "sqlmodel", "sqlalchemy", "celery"), ["serve"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "pip install 'dynds[service]'" in r.stderr and "Traceback" not in r.stderr
    # --help needs nothing of it
    r = _run_blocking(("fastapi", "uvicorn", "sqlmodel", "sqlalchemy", "celery", "torch"), ["serve", "--help"], tmp_path)
    assert r.returncode == 0 and "--database-url" in r.stdout, r.stderr


def test_a_bad_setting_is_named_not_a_traceback(monkeypatch, capsys):
    from app.core.config import get_settings

    monkeypatch.setenv("DYNDS_STALE_JOB_AFTER_S", "soon")
    try:
        assert main(["token", "list"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "DYNDS_STALE_JOB_AFTER_S" in err and "Traceback" not in err
