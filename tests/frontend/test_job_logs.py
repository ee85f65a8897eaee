"""The job page's Logs panel (issue 9, deliverable 6) in a real browser against a live `dynds serve`: a
running job's lines appear and keep coming without a reload (followed by polling GET /jobs/{id}/logs),
and each line is coloured by its level."""

from __future__ import annotations

import json
import time

from .conftest import shot

# Long enough to be running while the page is open (it is cancelled), one torch thread.
LONG_SPEC = {
    "name": "logs-ui",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
    "train": {"epochs": 200, "batch_size": 32, "num_threads": 1},
}


def _lines(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#job-logs .log-line", "els => els.map(e => ({level: e.dataset.level, text: e.textContent, color: getComputedStyle(e).color}))"
    )


def _wait_for(server, job_id: int, statuses: tuple[str, ...], timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = server.api("GET", f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not {statuses} within {timeout_s} s: {job['status']}\n{server.log()}")


def test_the_job_page_follows_a_running_jobs_log(page, server):
    r = server.api("POST", "/jobs", json={"spec": LONG_SPEC, "force": True})
    assert r.status_code in (200, 201), r.text
    job_id = r.json()["id"]
    _wait_for(server, job_id, ("running",))
    page.goto(f"{server.url}/#/jobs/{job_id}")
    page.locator("#logs-panel").wait_for()  # (no wait_for_function: the page's CSP forbids eval)
    panel = page.locator("#logs-panel")
    assert panel.locator("h2").inner_text() == "Logs"
    page.locator("#job-logs .log-line", has_text="claimed by").wait_for(timeout=30_000)
    assert not any("cancelled" in line["text"] for line in _lines(page))
    assert "following" in page.locator("#logs-note").inner_text()

    # The job ends while the page is open: its last lines arrive without a reload.
    assert server.api("POST", f"/jobs/{job_id}/cancel").status_code == 200
    page.locator("#job-logs .log-line", has_text=f"job {job_id} cancelled").wait_for(timeout=60_000)
    lines = _lines(page)
    assert [line["level"] for line in lines if "claimed by" in line["text"]] == ["INFO"]
    assert len({line["text"] for line in lines}) == len(lines)  # each line once
    shot(page, "job-logs-following")


def test_log_lines_are_coloured_by_level(page, server):
    r = server.api("POST", "/jobs", json={"spec": {**LONG_SPEC, "name": "logs-colours", "train": {**LONG_SPEC["train"], "epochs": 1}}, "force": True})
    job_id = r.json()["id"]
    _wait_for(server, job_id, ("succeeded", "failed", "cancelled"))
    lines = [
        {"seq": 1, "created_at": "2026-12-01T20:00:00.000000Z", "level": "INFO", "logger": "worker.runner", "message": "job claimed"},
        {
            "seq": 2,
            "created_at": "2026-12-01T20:00:01.000000Z",
            "level": "WARNING",
            "logger": "worker.sink",
            "message": "cannot write 5 metric points; will retry",
        },
        {
            "seq": 3,
            "created_at": "2026-12-01T20:00:02.000000Z",
            "level": "ERROR",
            "logger": "worker.runner",
            "message": "job failed: no CIFAR-10 under /data/cifar10 <script>alert(1)</script>",
        },
    ]

    def logs(route):
        after = int(dict(p.split("=") for p in (route.request.url.split("?", 1) + [""])[1].split("&") if "=" in p).get("after", 0))
        data = [line for line in lines if line["seq"] > after]
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"data": data, "next_cursor": data[-1]["seq"] if data else after}))

    page.route(f"**/api/v1/jobs/{job_id}/logs*", logs)
    page.goto(f"{server.url}/#/jobs/{job_id}")
    page.locator("#logs-panel").wait_for()  # (no wait_for_function: the page's CSP forbids eval)
    page.locator("#job-logs .log-line[data-level=ERROR]").wait_for()
    shown = {line["level"]: line for line in _lines(page)}
    colors = page.evaluate("""() => { const s = getComputedStyle(document.documentElement);
        const probe = (v) => { const d = document.createElement('div'); d.style.color = `var(${v})`; document.body.append(d);
          const c = getComputedStyle(d).color; d.remove(); return c; };
        return {bad: probe('--bad'), warn: probe('--warn'), text: getComputedStyle(document.body).color}; }""")
    assert shown["ERROR"]["color"] == colors["bad"] and shown["WARNING"]["color"] == colors["warn"]
    assert shown["INFO"]["color"] not in (colors["bad"], colors["warn"])
    assert "<script>alert(1)</script>" in shown["ERROR"]["text"]  # shown as text, never run
    assert page.locator("#job-logs script").count() == 0
    assert "3 lines" in page.locator("#logs-note").inner_text()
    shot(page, "job-logs-levels")
