"""The job page's "Model weights" line, in a real browser against a live `dynds serve`: a real tiny job
trained by the embedded executor, its size and sha256 shown, the link downloading the very file."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from .conftest import LiveServer, server_env, shot

TINY = {
    "name": "weights",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 1, "batch_size": 32, "num_threads": 1},
}


def goto(page, server, route: str) -> None:
    # Waits on locators (conftest's wait_rendered evaluates a string, which a strict CSP refuses).
    page.goto(f"{server.url}/#/{route}")
    page.locator("#job-details").wait_for()


@pytest.fixture(scope="module")
def trained_job(server) -> dict:
    r = server.api("POST", "/jobs", json={"spec": TINY, "force": True})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = server.api("GET", f"/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded", f"{job['status']}: {job.get('error')}\n{server.log()}"
    listed = {a["name"]: a for a in server.api("GET", f"/jobs/{job_id}/artifacts").json()["data"]}
    assert set(listed) == {"model.pt", "steps.parquet"}
    return {"id": job_id, "artifact": listed["model.pt"], "steps": listed["steps.parquet"]}


def test_job_page_links_the_model_weights_with_size_and_sha256(page, server, trained_job):
    job_id, artifact = trained_job["id"], trained_job["artifact"]
    goto(page, server, f"jobs/{job_id}")
    line = page.locator("#job-weights")
    line.wait_for()
    text = line.inner_text()
    assert text.startswith("Model weights:") and artifact["sha256"] in text
    assert f"{artifact['size_bytes'] / 1e6:.1f} MB" in text  # about 1.1 MB of resnet20 weights
    assert 'create_model("resnet20", num_classes=10, in_channels=3, small_input=False)' in text
    link = page.locator("#weights-download")
    assert link.get_attribute("href") == f"/api/v1/jobs/{job_id}/artifacts/model.pt"
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"job-{job_id}-model.pt"
    data = open(download.path(), "rb").read()
    assert len(data) == artifact["size_bytes"] and hashlib.sha256(data).hexdigest() == artifact["sha256"]
    shot(page, "job-model-weights")


def test_job_page_links_the_step_archive(page, server, trained_job):
    job_id, steps = trained_job["id"], trained_job["steps"]
    goto(page, server, f"jobs/{job_id}")
    line = page.locator("#job-steps")
    line.wait_for()
    assert line.inner_text().startswith("Every step:") and f"{steps['recipe']['rows']} steps" in line.inner_text()
    link = page.locator("#steps-download")
    assert link.get_attribute("href") == f"/api/v1/jobs/{job_id}/artifacts/steps.parquet"
    with page.expect_download() as info:
        link.click()
    data = open(info.value.path(), "rb").read()
    assert len(data) == steps["size_bytes"] and hashlib.sha256(data).hexdigest() == steps["sha256"]


def test_a_succeeded_job_without_weights_says_so(page, server, trained_job):
    job_id = trained_job["id"]
    page.route(
        f"**/api/v1/jobs/{job_id}/artifacts",
        lambda r: r.fulfill(status=200, content_type="application/json", body=json.dumps({"data": [], "count": 0})),
    )
    goto(page, server, f"jobs/{job_id}")
    line = page.locator("#job-weights")
    line.wait_for()
    assert "not stored for this job" in line.inner_text() and page.locator("#weights-download").count() == 0


def test_with_read_tokens_the_link_downloads_with_the_token(browser, tmp_path_factory):
    """A server that wants a token for reads: a plain link would be refused (401); the page fetches the
    file with the tab's token and saves those bytes."""
    home = tmp_path_factory.mktemp("dynds-ui-tokens")
    srv = LiveServer(home, {**server_env(home), "DYNDS_READ_REQUIRES_TOKEN": "true"}).start()
    try:
        made = srv.dynds("token", "create", "--name", "ui")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().split()[-1]
        auth = {"Authorization": f"Bearer {token}"}
        job_id = srv.api("POST", "/jobs", json={"spec": TINY, "force": True}, headers=auth).json()["id"]
        deadline = time.monotonic() + 240
        while srv.api("GET", f"/jobs/{job_id}", headers=auth).json()["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
        (artifact,) = [a for a in srv.api("GET", f"/jobs/{job_id}/artifacts", headers=auth).json()["data"] if a["name"] == "model.pt"]
        assert srv.api("GET", f"/jobs/{job_id}/artifacts/model.pt").status_code == 401

        ctx = browser.new_context(accept_downloads=True)
        ctx.add_init_script(f"sessionStorage.setItem('dynds.token', {json.dumps(token)})")
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        try:
            goto(page, srv, f"jobs/{job_id}")
            page.locator("#weights-download").wait_for()
            with page.expect_download() as info:
                page.locator("#weights-download").click()
            download = info.value
            assert download.suggested_filename == f"job-{job_id}-model.pt"
            data = open(download.path(), "rb").read()
            assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
        finally:
            ctx.close()
    finally:
        srv.stop()
