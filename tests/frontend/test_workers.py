"""The Workers page (issue 16) in a real browser against a live `dynds serve`: its embedded executor registers as a
worker and is listed alive with its hardware and queues, the job it runs appears as a link, and a worker gone
silent (written into the registry before the server starts) is listed only when gone workers are asked for."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from .conftest import VIEWPORTS, LiveServer, fulfil_json, goto, no_sideways_scroll, server_env, shot, wait_js

LONG = {  # runs long enough to be seen running (it is cancelled)
    "name": "workers-ui",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 200, "batch_size": 32, "num_threads": 1},
}


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory, chromium):
    """`dynds serve` beating every 0.5 s, with a worker in its registry that went silent an hour ago."""
    from sqlmodel import Session

    from app.core.db import init_db, make_engine
    from app.fleet import registry
    from app.models import utcnow
    from dynds_core.hardware import make_hardware

    home = tmp_path_factory.mktemp("dynds-workers")
    engine = make_engine(f"sqlite:///{home / 'dynds.db'}")
    init_db(engine)
    with Session(engine) as s:
        gpu = make_hardware(device="cuda", model="Test GPU", count=1)
        registry.register_worker(
            session=s, host="gpu-7", name="dynds@gpu-7", kind="celery", pid=4242, hardware=gpu, queues=["cuda", "cuda.test-gpu", "dynds"],
            now=utcnow() - timedelta(hours=1),
        )  # fmt: skip
    engine.dispose()
    srv = LiveServer(home, env={**server_env(home), "DYNDS_WORKER_HEARTBEAT_S": "0.5"}).start()
    yield srv
    srv.stop()


def _page(browser, size: str):
    ctx = browser.new_context(viewport=VIEWPORTS[size], is_mobile=size == "phone", has_touch=size == "phone")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(15_000)
    pg.size_name = size
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(params=list(VIEWPORTS))
def wpage(request, browser, fleet_server):
    """A page of the fleet's server at a desktop and at a phone size."""
    yield from _page(browser, request.param)


@pytest.fixture
def dpage(browser, fleet_server):
    yield from _page(browser, "desktop")


def test_the_workers_page_lists_the_live_fleet_and_the_gone_on_request(wpage, fleet_server):
    page, server = wpage, fleet_server
    goto(page, server, "workers", "workers")
    assert page.locator('nav a[data-nav="workers"]').get_attribute("aria-current") == "page"
    row = page.locator('tr[data-worker="dynds serve"]')
    assert row.count() == 1 and page.locator('tr[data-worker="dynds@gpu-7"]').count() == 0  # gone: not by default
    text = row.inner_text()
    assert "alive" in text and "cpu · " in text and "dynds serve (embedded)" in text and "idle" in text
    assert "dynds" in row.locator("code").all_inner_texts()
    assert "1 live worker" in page.locator("caption").inner_text()
    no_sideways_scroll(page)

    page.locator("#w-gone").check()
    page.locator('tr[data-worker="dynds@gpu-7"]').wait_for()
    gone = page.locator('tr[data-worker="dynds@gpu-7"]').inner_text()
    assert "gone" in gone and "cuda · Test GPU · x1" in gone and "gpu-7" in gone
    assert "gone=true" in page.url
    shot(page, f"workers-{page.size_name}")


def test_the_job_a_worker_runs_is_linked_from_its_row(dpage, fleet_server):
    page, server = dpage, fleet_server
    r = server.api("POST", "/jobs", json={"spec": LONG, "force": True})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    try:
        deadline = time.monotonic() + 60
        while server.api("GET", f"/jobs/{job_id}").json()["status"] != "running":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        goto(page, server, "workers", "workers")
        link = page.locator(f'tr[data-worker="dynds serve"] a[href="#/jobs/{job_id}"]')
        wait_js(page, f'!!document.querySelector(\'tr[data-worker="dynds serve"] a[href="#/jobs/{job_id}"]\')', 20_000)  # the page polls
        assert link.inner_text() == f"#{job_id}"
        shot(page, "workers-running")
    finally:
        server.api("POST", f"/jobs/{job_id}/cancel")


def test_the_submit_page_says_when_no_live_worker_serves_the_job(dpage, fleet_server):
    """A Celery server answers a job no live worker serves with a warning (embedded ones refuse instead: the answer
    is played here): the page stays, says the job is queued, the warning and where the workers are."""
    page, server = dpage, fleet_server
    warning = "no live worker serves queue 'cuda' now (live hardware classes: cpu.intel-xeon.t1); the job waits in the queue"
    answer = {"id": 9301, "name": "queued-for-a-gpu", "status": "queued", "deduplicated": False, "warnings": [warning]}
    page.route("**/api/v1/jobs", lambda route: fulfil_json(route, answer, 201) if route.request.method == "POST" else route.fallback())
    goto(page, server, "submit", "submit")
    page.click("#submit-btn")
    box = page.locator("#submit-warnings")
    box.wait_for()
    assert warning in box.inner_text() and box.locator('a[href="#/workers"]').count() == 1
    assert page.locator('#form-errors a[href="#/jobs/9301"]').count() == 1 and "#/submit" in page.url
