"""The documentation: the site builds with warnings as errors, its generated references cover the code, the README
stays a short front page whose links resolve and whose code runs, and `dynds serve` serves the site offline."""

import importlib.util
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.core.config import Settings
from app.main import create_app
from dynds_core.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def reference_module():
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "scripts" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(out.parent)},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def spec_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path of a job spec, each schedule kind's keys included."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        args = typing.get_args(info.annotation) or (info.annotation,)
        models = [a for arg in args for a in (typing.get_args(arg) or (arg,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models or any(a is type(None) for a in args):
            keys.add(key)
        for sub in models:
            keys |= spec_keys(sub, key + ".")
    return keys


def test_the_site_builds_with_warnings_as_errors_and_its_pages_are_there(site):
    for page in ("index", "getting-started", "library", "specs", "spec-reference", "service", "api", "api-reference", "figures"):
        assert (site / f"{page}.html").is_file(), page


def test_the_site_loads_nothing_from_elsewhere(site):
    """Served offline: no script, style sheet, font or image from another host (links to papers are fine)."""
    loads = re.compile(r'<(?:script|img|link)[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>')
    for page in site.glob("*.html"):
        assert not loads.findall(page.read_text()), page.name


def test_the_spec_reference_names_every_key_with_the_default_the_code_has():
    text = reference_module().spec_reference()
    keys = spec_keys(JobSpec)
    assert {"train.epochs", "dynds.schedule.p", "dynds.schedule.initial_scale", "dynds.kernel.window"} <= keys
    missing = [k for k in sorted(keys) if f"`{k}`" not in text]
    assert not missing, missing
    row = next(line for line in text.splitlines() if line.startswith("| `train.epochs` |"))
    info = JobSpec.model_fields["train"].annotation.model_fields["epochs"]
    assert f"`{info.default}`" in row and ">= 1" in row


def test_the_api_reference_names_every_operation_and_schema():
    openapi = create_app(Settings(home="/nonexistent-dynds-home")).openapi()
    text = reference_module().api_reference(openapi)
    for path, ops in openapi["paths"].items():
        for method in ops:
            assert f"### `{method.upper()} {path}`" in text, (method, path)
    for name in openapi["components"]["schemas"]:
        assert f"### {name}\n" in text, name


def test_the_readme_is_a_short_front_page_whose_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    assert "bash scripts/serve.sh" in text and "bash scripts/test.sh" in text  # the two quick-start commands
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith("http")]
    assert local, "the README links the documentation"
    for link in local:
        assert (ROOT / link).exists(), link


def test_the_readme_library_example_runs_as_printed():
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "reduced_pass" in b]
    assert len([line for line in block.splitlines() if line.strip()]) <= 10
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    grads = [p.grad for p in ns["model"].parameters() if p.dim() == 4]
    assert grads and all(g is not None and g.shape[-1] == 3 for g in grads if g is not None)  # reached the 3x3 weights


def test_serve_serves_the_built_site_at_manual_and_the_dashboard_links_it(site, tmp_path):
    with TestClient(create_app(Settings(home=tmp_path, docs_dir=site))) as client:
        page = client.get("/manual/spec-reference.html")
        assert page.status_code == 200 and "train.epochs" in page.text
        assert client.get("/manual", follow_redirects=False).headers["location"] == "/manual/"
        assert client.get("/manual/").status_code == 200
        assert 'href="/manual/"' in client.get("/").text


def test_a_server_without_a_built_site_says_how_to_build_it(tmp_path):
    with TestClient(create_app(Settings(home=tmp_path, docs_dir=tmp_path / "none"))) as client:
        answer = client.get("/manual/")
        assert answer.status_code == 404 and "scripts/docs.sh" in answer.text
