"""The dashboard in a real browser against a live `dynds serve` (tests run in file order: the
first sees an empty database, later ones build on the job the end-to-end test trains)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from .conftest import shot, wait_js, wait_rendered

TINY = {  # trains in seconds on one CPU thread
    "name": "ui-tiny",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "synthetic_size": 128, "image_size": 16, "val_subset": None},
    "train": {"epochs": 1, "batch_size": 32, "seed": 0},
    "baseline": True,
}


def goto(page, server, route: str, name: str) -> None:
    if page.url.startswith(server.url):
        page.evaluate("window.__dyndsRendered = null")
    page.goto(f"{server.url}/#/{route}")
    wait_rendered(page, name)


def chart_points(page, canvas_id: str) -> dict[str, int]:
    """Points per dataset label in the chart drawn on a canvas."""
    return page.evaluate(
        """(id) => { const c = Chart.getChart(document.getElementById(id));
                     return c ? Object.fromEntries(c.data.datasets.map(d => [d.label, d.data.length])) : null; }""",
        canvas_id,
    )


def test_pages_show_empty_states(page, server):
    goto(page, server, "jobs", "jobs")
    assert "No jobs yet" in page.locator("#jobs-table").inner_text()
    shot(page, "jobs-empty")
    goto(page, server, "compare", "compare")
    assert "No finished runs" in page.locator("#scatter-msg").inner_text()
    shot(page, "compare-empty")
    goto(page, server, "leaderboard", "leaderboard")
    assert "Nothing ranked yet" in page.locator("#lb-body").inner_text()
    shot(page, "leaderboard-empty")


def test_static_assets_are_served_locally(page, server):
    remote: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) or r.url.startswith("data:") else remote.append(r.url))
    goto(page, server, "submit", "submit")
    assert page.evaluate("typeof window.Chart") == "function"
    assert remote == [], f"the dashboard fetched from outside the server: {remote}"
    lic = page.request.get(server.url + "/static/vendor/chart.js.LICENSE.md")
    assert lic.ok and "MIT" in lic.text()


def test_every_form_control_has_a_label(page, server):
    goto(page, server, "submit", "submit")
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('#main input, #main select')]
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)"""
    )
    assert unlabeled == []
    # every JobSpec field is on the form (schedule fields of other kinds are hidden, not missing)
    meta = server.api("GET", "/meta").json()

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            elif k != "version":
                yield f"{prefix}{k}"

    names = set(page.evaluate("() => [...document.querySelectorAll('#spec-form [name]')].map(e => e.name)"))
    assert set(leaves(meta["defaults"])) - names == set()


def test_bad_value_is_shown_at_its_field(page, server):
    goto(page, server, "submit", "submit")
    page.wait_for_selector("#predicted-saving")  # the valid defaults get a FLOP prediction
    assert "%" in page.locator("#predicted-saving").inner_text()
    page.fill("#f-train-epochs", "0")
    page.fill("#f-dynds-schedule-p", "1.5")
    page.click("#submit-btn")
    err = page.locator("#f-train-epochs-err")
    err.wait_for(state="visible")
    assert "1" in err.inner_text()  # "greater than or equal to 1"
    assert page.get_attribute("#f-train-epochs", "aria-invalid") == "true"
    assert page.locator("#f-dynds-schedule-p-err").inner_text() != ""
    assert page.locator("#f-train-batch_size-err").inner_text() == ""
    shot(page, "submit-errors")
    jobs = server.api("GET", "/jobs").json()
    assert jobs["count"] == 0, "a bad spec must not be queued"


def fill_tiny(page) -> None:
    page.fill("#f-name", TINY["name"])
    page.select_option("#f-model-arch", "resnet20")
    page.select_option("#f-data-dataset", "synthetic")
    page.fill("#f-data-synthetic_size", "128")
    page.fill("#f-data-image_size", "16")
    page.fill("#f-train-epochs", "1")
    page.fill("#f-train-batch_size", "32")
    page.check("#f-baseline")


def test_tiny_job_runs_live_and_lands_everywhere(page, server):
    goto(page, server, "submit", "submit")
    fill_tiny(page)
    page.wait_for_selector("#predicted-saving")
    shot(page, "submit")
    page.click("#submit-btn")
    page.wait_for_url("**/#/jobs/*")
    job_id = int(page.url.rsplit("/", 1)[1])
    wait_rendered(page, "job")
    # Followed live over the events stream, no reload: the status turns succeeded and the curves fill.
    page.wait_for_selector("#job-head .badge.succeeded", timeout=240_000)
    wait_js(
        page,
        """() => { const c = Chart.getChart(document.getElementById('chart-acc'));
                   return c && c.data.datasets.length >= 2 && c.data.datasets.every(d => d.data.length >= 1); }""",
        timeout=20_000,
    )
    loss = chart_points(page, "chart-loss")
    assert loss.get("DynDS", 0) >= 2 and loss.get("Baseline", 0) >= 2, loss
    assert "%" in page.locator("#job-summary").inner_text()
    assert "GFLOPs" in page.locator("#job-details").inner_text()
    # the verdict panel says in words what the real result holds (or that it holds none), and how it was timed
    assert page.locator("#verdict-sentence").inner_text().startswith(("Worth it", "Not worth it", "Not conclusive", "No verdict was recorded"))
    assert page.locator("#pairing").inner_text().startswith("Timing:")
    assert "time saving (" in page.locator("#headline-stats").inner_text()
    page.click("[data-axis=steps]")
    assert page.evaluate("Chart.getChart(document.getElementById('chart-loss')).options.scales.x.title.text") == "steps"
    shot(page, "job-succeeded")

    goto(page, server, "jobs", "jobs")
    row = page.locator("#jobs-table tr", has_text=TINY["name"])
    assert row.count() == 1 and "succeeded" in row.inner_text() and "%" in row.inner_text()
    shot(page, "jobs")
    page.select_option("#f-status", "failed")
    page.wait_for_selector("#jobs-table .empty")
    assert "No jobs match" in page.locator("#jobs-table").inner_text()

    goto(page, server, "compare", "compare")
    pts = page.evaluate(
        """() => Chart.getChart(document.getElementById('scatter')).data.datasets
                 .filter(d => d.type === 'scatter').flatMap(d => d.data.map(p => p.row.id))"""
    )
    assert job_id in pts
    assert "needs one track" in page.locator("#frontier-msg").inner_text()
    shot(page, "compare")
    # one track: the live server's frontier is drawn, or the page says in words why there is none
    page.select_option("#track", index=1)
    wait_js(
        page,
        """() => Chart.getChart(document.getElementById('frontier'))
                                || (document.querySelector('#frontier-msg .alert') && !document.querySelector('#frontier-msg .loading'))""",
    )
    shot(page, "compare-track")
    page.select_option("#track", "")
    # click selection overlays the job's curves
    page.check("#select-mode")
    page.fill("#add-job-id", str(job_id))
    page.click("#add-job button[type=submit]")
    page.wait_for_selector("#overlay-box:not([hidden])")
    assert chart_points(page, "overlay") == {f"#{job_id} DynDS": 1, f"#{job_id} baseline": 1}
    shot(page, "compare-overlay")

    goto(page, server, "leaderboard", "leaderboard")
    assert page.locator(f"#lb-body a[href='#/jobs/{job_id}']").count() == 1
    shot(page, "leaderboard")


def test_export_csv_downloads_the_runs(page, server):
    goto(page, server, "leaderboard", "leaderboard")
    with page.expect_download() as dl:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path()).read())))
    assert [r["name"] for r in rows] == [TINY["name"]]
    assert float(rows[0]["time_saving"]) == pytest.approx(server.api("GET", "/export?format=json").json()[0]["time_saving"])


def test_cancel_a_job_then_retry_and_cancel_again(page, server):
    long = json.loads(json.dumps(TINY)) | {"name": "ui-long"}
    long["train"] = {"epochs": 200, "batch_size": 32, "seed": 7}
    long["data"] = {"dataset": "synthetic", "synthetic_size": 2048, "image_size": 16}
    resp = server.api("POST", "/jobs", json={"spec": long})
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    goto(page, server, f"jobs/{job_id}", "job")
    page.click("#cancel-btn")
    page.click("#cancel-confirm")  # the page asks first
    page.wait_for_selector("#job-head .badge.cancelled", timeout=60_000)
    assert server.api("GET", f"/jobs/{job_id}").json()["status"] == "cancelled"
    assert page.is_enabled("#retry-btn") and not page.is_enabled("#cancel-btn")
    shot(page, "job-cancelled")
    page.click("#retry-btn")
    page.wait_for_url(f"**/#/jobs/{job_id + 1}")
    wait_rendered(page, "job")
    assert "retry of" in page.locator("#job-head").inner_text()
    page.click("#cancel-btn")
    page.click("#cancel-confirm")
    page.wait_for_selector("#job-head .badge.cancelled", timeout=60_000)


def test_phone_layout_has_no_sideways_scroll(browser, server):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = ctx.new_page()
    try:
        for route, name in (("jobs", "jobs"), ("submit", "submit"), ("leaderboard", "leaderboard"), ("compare", "compare"), ("jobs/1", "job")):
            pg.goto(f"{server.url}/#/{route}")
            wait_rendered(pg, name)
            overflow = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{route} scrolls sideways by {overflow} px on a phone"
            shot(pg, f"phone-{name}")
            pg.evaluate("window.__dyndsRendered = null")
    finally:
        ctx.close()


def test_unreachable_server_says_so(page, server):
    page.goto(server.url + "/#/jobs")
    wait_rendered(page, "jobs")
    page.route("**/api/v1/**", lambda route: route.abort())
    page.evaluate("window.__dyndsRendered = null")
    page.goto(server.url + "/#/leaderboard")
    page.reload()
    wait_rendered(page, "leaderboard")
    assert "Cannot reach the dynds server" in page.locator("#banner").inner_text()
    assert "Cannot reach" in page.locator("#lb-body").inner_text()
    shot(page, "unreachable")


def test_writes_need_the_token_the_server_asks_for(page, server):
    made = server.dynds("token", "create", "--name", "ui")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().split()[-1]
    goto(page, server, "submit", "submit")
    assert "needs an API token" in page.locator("#banner").inner_text()
    fill_tiny(page)
    page.fill("#f-train-seed", "3")
    page.click("#submit-btn")
    page.wait_for_selector("#form-errors .alert.error")
    assert "needs an API token" in page.locator("#form-errors").inner_text()
    # a wrong token is refused with its own message
    page.click("#token-btn")
    page.fill("#token-input", "wrong-token")
    page.click("#token-form button[value=save]")
    wait_rendered(page, "submit")
    fill_tiny(page)
    page.fill("#f-train-seed", "3")
    page.click("#submit-btn")
    page.wait_for_selector("#form-errors .alert.error")
    assert "refused the API token" in page.locator("#form-errors").inner_text()
    shot(page, "submit-token-refused")
    # the right token: the job is queued (and cancelled again so it does not hold the CPU)
    page.click("#token-btn")
    page.fill("#token-input", token)
    page.click("#token-form button[value=save]")
    wait_rendered(page, "submit")
    fill_tiny(page)
    page.fill("#f-train-seed", "3")
    page.click("#submit-btn")
    page.wait_for_url("**/#/jobs/*")
    job_id = int(page.url.rsplit("/", 1)[1])
    r = server.api("POST", f"/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 409), r.text


def test_pure_helpers_in_the_browser(page, server):
    goto(page, server, "jobs", "jobs")
    out = page.evaluate(
        """async () => {
             const { paretoFront } = await import('/static/js/pareto.js');
             const f = await import('/static/js/format.js');
             const s = await import('/static/js/specfields.js');
             const a = await import('/static/js/api.js');
             const pts = [{x: 10, y: -1}, {x: 20, y: -2}, {x: 15, y: -3}, {x: 5, y: 0.5}, {x: 20, y: -1.5}];
             return { front: paretoFront(pts), pct: f.pct(0.312), pt: f.pt(-0.4), gf: f.gflops(3.1e10),
                      ci: f.pctCI(0.31, [0.27, 0.35]), ptci: f.ptCI(-0.3, [-0.8, 0.2]), none: f.pct(null, 1, 'not run'),
                      loc: s.locToPath(['body', 'spec', 'dynds', 'schedule', 'stochastic', 'p']),
                      size: s.locToPath(['body', 'spec', 'dynds', 'kernel', 'size', 0]),
                      sweep: s.parseSweepValues(s.FIELD_BY_PATH['train.seed'], '0, 1, x'),
                      ev: a.parseEventBlock('event: metric\\nid: 7\\ndata: {"run": "dynds"}') };
           }"""
    )
    assert out["front"] == [3, 0, 4]
    assert out["pct"] == "31.2 %" and out["pt"] == "\u22120.40 pt" and out["gf"] == "31.0 GFLOPs"
    assert out["ci"] == "31 % [27, 35]" and out["ptci"] == "\u22120.3 pt [\u22120.8, +0.2]" and out["none"] == "not run"
    assert out["loc"] == "dynds.schedule.p" and out["size"] == "dynds.kernel.size"
    assert out["sweep"] == {"values": [0, 1], "bad": ["x"]}
    assert out["ev"] == {"event": "metric", "id": "7", "data": {"run": "dynds"}}
