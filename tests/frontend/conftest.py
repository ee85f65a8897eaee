"""Browser tests: a real headless Chromium (Debian's package, driven by Playwright) against a live
`dynds serve` with a temporary SQLite database and the embedded executor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    env = os.environ.get("DYNDS_CHROMIUM")
    for cand in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if cand and Path(cand).exists():
            return cand
    return None


def require_browser() -> str:
    """The Chromium binary, or fail (in CI) / skip (elsewhere) saying how to get one."""
    path = chromium_path()
    if path is None:
        reason = "Chromium is missing: apt-get install -y chromium (Playwright cannot download browsers here)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright Python package is missing: pip install playwright"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dynds_command() -> list[str]:
    exe = Path(sys.executable).with_name("dynds")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dynds"]


def server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNDS_")}
    env.update(
        {
            "DYNDS_HOME": str(home),
            "DYNDS_DATABASE_URL": f"sqlite:///{home / 'dynds.db'}",
            "DYNDS_DATA_DIRS": str(home / "data"),
            "DYNDS_WORKER_THREADS": "1",
            "DYNDS_METRICS_FLUSH_INTERVAL_S": "0.3",
            "DYNDS_METRICS_FLUSH_EVERY": "5",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    return env


class LiveServer:
    """`dynds serve` in a subprocess on a free port; its log goes to a file for failure reports."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = home
        (home / "data").mkdir(parents=True, exist_ok=True)
        self.env = env or server_env(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> LiveServer:
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            dynds_command() + ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dynds serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/v1/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dynds serve did not answer within {timeout_s:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + "/api/v1" + path, timeout=30.0, **kw)

    def dynds(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(dynds_command() + list(args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_browser()


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium):
    srv = LiveServer(tmp_path_factory.mktemp("dynds-ui")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(15_000)
    pg.js_errors = errors
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(VIEWPORTS))
def vpage(request, browser, server):
    """A page at a desktop and at a phone size (the test runs at both); ``page.size_name`` says which."""
    size = request.param
    ctx = browser.new_context(viewport=VIEWPORTS[size], is_mobile=size == "phone", has_touch=size == "phone")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(15_000)
    pg.size_name = size
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def goto(page, server, route: str, name: str) -> None:
    if page.url.startswith(server.url):
        page.evaluate("window.__dyndsRendered = null")
    page.goto(f"{server.url}/#/{route}")
    wait_rendered(page, name)


def fulfil_json(route, body, status: int = 200) -> None:
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def no_sideways_scroll(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow} px at {page.viewport_size}"


def shot(page, name: str, full_page: bool = True) -> Path:
    """Keep a screenshot under artifacts/screenshots/ (gitignored) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def wait_js(page, expression: str, timeout: float = 15_000, poll_ms: float = 50) -> None:
    """Wait until ``expression`` (a JS function or expression) is truthy in the page.

    Not ``page.wait_for_function``: its polling evaluates the predicate from a string inside the page,
    which the dashboard's Content-Security-Policy (script-src 'self', no eval) forbids, as it should.
    ``page.evaluate`` goes through the browser's debugging protocol, which the CSP does not govern.
    """
    deadline = time.monotonic() + timeout / 1000
    while True:
        if page.evaluate(expression):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout:g} ms: {expression}")
        page.wait_for_timeout(poll_ms)


def wait_rendered(page, name: str, timeout_ms: int = 15_000) -> None:
    """Wait for the page's own 'drawn' mark (the same one the benchmark times)."""
    wait_js(page, f"window.__dyndsRendered && window.__dyndsRendered.page === {name!r}", timeout_ms)


__all__ = ["VIEWPORTS", "LiveServer", "fulfil_json", "goto", "no_sideways_scroll", "server_env", "shot", "shutil", "wait_js", "wait_rendered"]
