"""What a new user's first trial of the dashboard asked for (issue 10), in a real browser against a live
`dynds serve`, at a desktop and a phone size. Responses the tests need to be exact are answered by
Playwright (shaped as docs/api.md says); the rest come from the live server."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

from .conftest import fulfil_json, goto, no_sideways_scroll, shot, wait_js, wait_rendered
from .test_trust import SENTENCE, export_rows, frontier_body, leaderboard_body, run_result

TRACK = "resnet20/cifar10/e12-n10000"
LONG_ERROR = (
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
    "13.20 GiB already allocated; 1.10 GiB free; 13.40 GiB reserved in total by PyTorch) If reserved memory is "
    ">> allocated memory try setting max_split_size_mb to avoid fragmentation. See documentation for Memory "
    "Management and PYTORCH_CUDA_ALLOC_CONF"
)

TRACEBACK = 'Traceback (most recent call last):\n  File "worker/runner.py", line 88, in run\n    result = train(spec)\n' + LONG_ERROR


def prog(run: str, fraction: float, epoch: int = 0, epochs: int = 12, step: int = 90, total_steps: int = 948) -> dict:
    """A running job's progress record: the current run's own (docs/api.md)."""
    return {"run": run, "fraction": fraction, "epoch": epoch, "epochs": epochs, "step": step, "total_steps": total_steps}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def spec(*, baseline: bool = True, equal_time: bool = False, pairing: str = "lockstep", **train) -> dict:
    return {
        "name": "s",
        "model": {"arch": "resnet20"},
        "data": {"dataset": "cifar10", "train_subset": 10000},
        "train": {"epochs": 12, "batch_size": 128, "seed": 0, "pairing": pairing, **train},
        "baseline": baseline,
        "equal_time_baseline": equal_time,
    }


def listed_job(
    job_id: int,
    name: str,
    status: str = "succeeded",
    *,
    ts=None,
    acc=None,
    verdict=None,
    error=None,
    progress=None,
    created="2026-11-25T21:00:00.000000Z",
    job_spec=None,
) -> dict:
    summary = {"time_saving": ts, "acc_delta": acc, "verdict": verdict, "timing_noisy": False}
    return {
        "id": job_id,
        "name": name,
        "status": status,
        "spec": job_spec or spec(),
        "spec_hash": f"h{job_id}",
        "arch": "resnet20",
        "dataset": "cifar10",
        "schedule_kind": "stochastic",
        "track": TRACK,
        "attempt": 1,
        "retry_of": None,
        "deduplicated": False,
        "created_at": created,
        "started_at": created,
        "finished_at": None,
        "heartbeat_at": None,
        "cancel_requested": False,
        "progress": progress,
        "summary": summary,
        "error": error,
    }


def jobs_list() -> list[dict]:
    return [
        listed_job(31, "cifar-p05", ts=0.31, acc=-0.4, verdict="beats_equal_time", created="2026-11-25T21:05:00.000000Z"),
        listed_job(32, "oom-on-gpu", "failed", error=TRACEBACK, created="2026-11-25T21:04:00.000000Z"),
        listed_job(33, "slow-setting", ts=-0.20, acc=-2.5, verdict="loses_to_equal_time", created="2026-11-25T21:03:00.000000Z"),
        listed_job(
            34,
            "running-one",
            "running",
            progress=prog("equal_time", 0.5, 3, 12, 300, 600),
            job_spec=spec(equal_time=True),
            created="2026-11-25T21:02:00.000000Z",
        ),
        listed_job(35, "a-tie", ts=0.12, acc=-0.1, verdict="tie", created="2026-11-25T21:01:00.000000Z"),
        listed_job(36, "no-equal-time", ts=0.05, acc=0.1, verdict="no_equal_time", created="2026-11-25T21:00:00.000000Z"),
    ]


def route_jobs_list(page, jobs: list[dict], asked: list[dict]) -> None:
    """GET /jobs answered with ``jobs``, ordered as the request's ``order`` says, as the server does: by (column,
    id), jobs without a value last either way."""

    def answer(route):
        q = query_of(route.request.url)
        asked.append(q)
        order = q.get("order", "-created_at")
        column, descending = order.lstrip("-"), order.startswith("-")

        def value(j):  # a column of the job, or of its summary (time_saving, acc_delta, ...)
            return j[column] if column in j else (j.get("summary") or {}).get(column)

        valued = sorted((j for j in jobs if value(j) is not None), key=lambda j: (value(j), j["id"]), reverse=descending)
        data = valued + sorted((j for j in jobs if value(j) is None), key=lambda j: j["id"], reverse=descending)
        fulfil_json(route, {"data": data, "count": len(data), "count_exact": True, "next_cursor": None})

    page.route(re.compile(r".*/api/v1/jobs\?.*"), answer)


def row_names(page) -> list[str]:
    return page.locator("#jobs-table tbody tr td.c-name a").evaluate_all("els => els.map(a => a.textContent.replace(/^#\\d+\\s*/, '').trim())")


# --- jobs ---------------------------------------------------------------------------------------------


def test_jobs_failed_error_is_cut_to_its_column_with_the_whole_text_on_hover(vpage, server):
    page = vpage
    route_jobs_list(page, jobs_list(), [])
    goto(page, server, "jobs", "jobs")
    shot(page, f"trial-jobs-{page.size_name}")
    err = page.locator("#jobs-table tr[data-job='32'] .err-text")
    assert err.get_attribute("title") == TRACEBACK  # the whole text on hover
    # the headline is the error line (not "Traceback ..."), cut to the column's width
    assert err.inner_text().startswith("RuntimeError: CUDA out of memory")
    assert err.evaluate("e => e.scrollWidth > e.clientWidth + 20"), "the long error is not cut"
    wrap = page.locator("#jobs-table .table-wrap")
    assert wrap.evaluate("e => e.scrollWidth - e.clientWidth") <= 1, "the table is wider than its frame"
    no_sideways_scroll(page)
    if page.size_name == "desktop":
        created = page.locator("#jobs-table thead th", has_text="Created").bounding_box()
        frame = wrap.bounding_box()
        assert created["x"] + created["width"] <= frame["x"] + frame["width"] + 1


def test_jobs_phone_cards_keep_the_figures_and_verdict_on_screen(vpage, server):
    page = vpage
    route_jobs_list(page, jobs_list(), [])
    goto(page, server, "jobs", "jobs")
    row = page.locator("#jobs-table tr[data-job='31']")
    ts, acc, verdict = (row.locator(f"td.{c}") for c in ("c-ts", "c-acc", "c-verdict"))
    assert "31.0 %" in ts.inner_text() and "−0.40 pt" in acc.inner_text() and verdict.locator(".verdict").inner_text() == "worth it"
    width = page.viewport_size["width"]
    for cell in (ts, acc, verdict):
        box = cell.bounding_box()
        assert cell.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= width + 1
    # every verdict word (the longest too) stays inside its card
    for badge in page.locator("#jobs-table .c-verdict .verdict").all():
        b, card = badge.bounding_box(), badge.locator("xpath=ancestor::tr").bounding_box()
        assert b["x"] + b["width"] <= card["x"] + card["width"] + 1, badge.inner_text()
    if page.size_name == "phone":
        # a card: the three figures side by side on one line, each with its label, the table's header hidden
        tops = {round(c.bounding_box()["y"]) for c in (ts, acc, verdict)}
        assert len(tops) == 1, tops
        assert ts.evaluate("e => getComputedStyle(e, '::before').content") == '"Time saving"'
        assert page.locator("#jobs-table thead").is_hidden()
        assert row.bounding_box()["height"] < 140
    shot(page, f"trial-jobs-cards-{page.size_name}")


def test_jobs_sort_by_a_header_and_say_it_in_aria_sort(vpage, server):
    page = vpage
    asked: list[dict] = []
    route_jobs_list(page, jobs_list(), asked)
    goto(page, server, "jobs", "jobs")
    if page.size_name == "phone":
        # the headers are hidden on a phone: the sort is a select of the filters
        page.select_option("#f-sort", "-time_saving")
    else:
        assert page.locator("#jobs-table th[aria-sort]").get_attribute("aria-sort") == "descending"
        assert page.locator("#jobs-table th[aria-sort] button").get_attribute("data-sort") == "created"
        page.click("#jobs-table th button[data-sort=time_saving]")
    wait_js(page, "() => location.hash.includes('sort=-time_saving')")
    wait_js(page, "() => document.querySelector('#jobs-table th[aria-sort] button[data-sort=time_saving]')")
    th = page.locator("#jobs-table th[aria-sort]")
    assert th.get_attribute("aria-sort") == "descending" and page.locator("#jobs-table th[aria-sort]").count() == 1
    # highest first; jobs without a figure last
    assert row_names(page) == ["cifar-p05", "a-tie", "no-equal-time", "slow-setting", "running-one", "oom-on-gpu"]
    assert "of 6, by time saving, highest first" in page.locator("#jobs-table caption").inner_text()  # the whole list, by the server
    if page.size_name == "desktop":
        assert page.evaluate("document.activeElement.dataset.sort") == "time_saving"  # focus kept across the redraw
        page.click("#jobs-table th button[data-sort=time_saving]")
        wait_js(page, "() => document.querySelector('#jobs-table th[aria-sort]').getAttribute('aria-sort') === 'ascending'")
        assert row_names(page)[:4] == ["slow-setting", "no-equal-time", "a-tie", "cifar-p05"]
    # a column the server orders by is asked of the server (so the order holds across pages)
    with page.expect_request(lambda r: "/api/v1/jobs?" in r.url and query_of(r.url).get("order") == "name"):
        if page.size_name == "phone":
            page.select_option("#f-sort", "name")
        else:
            page.click("#jobs-table th button[data-sort=name]")
    wait_js(page, "() => document.querySelector('#jobs-table th[aria-sort] button[data-sort=name]')")
    assert page.locator("#jobs-table th[aria-sort]").get_attribute("aria-sort") == "ascending"
    assert row_names(page) == sorted(row_names(page))
    shot(page, f"trial-jobs-sorted-{page.size_name}")


def test_jobs_progress_is_over_all_the_runs(vpage, server):
    page = vpage
    route_jobs_list(page, jobs_list(), [])
    goto(page, server, "jobs", "jobs")
    bar = page.locator("#jobs-table tr[data-job='34'] [role=progressbar]")
    # lockstep DynDS + baseline done (2 of 3 runs), the equal-time run half way: 2.5 / 3
    assert bar.get_attribute("aria-valuenow") == "83"
    assert "run 3 of 3: equal-time baseline" in bar.get_attribute("aria-valuetext")


# --- submit ---------------------------------------------------------------------------------------------

BASIC_IDS = (
    "#f-name",
    "#f-model-arch",
    "#f-data-dataset",
    "#f-train-epochs",
    "#f-train-batch_size",
    "#f-train-seed",
    "#f-dynds-schedule-kind",
    "#f-dynds-schedule-p",
    "#f-baseline",
    "#f-equal_time_baseline",
)
ADVANCED_IDS = ("#f-train-lr", "#f-train-optimizer", "#f-train-device", "#f-dynds-kernel-mode", "#f-dynds-bn", "#f-dynds-input-factor")


def visible_fields(page) -> int:
    return page.evaluate("() => [...document.querySelectorAll('#spec-form .field')].filter(f => f.checkVisibility()).length")


def covered_by_sticky_bar(page, selector: str) -> dict:
    """Where a field's input and label are against the viewport and the sticky bar's top."""
    return page.evaluate(
        """(sel) => { const el = document.querySelector(sel); const field = el.closest('.field');
                      const label = field.querySelector('label'); const bar = document.querySelector('#sticky-submit').getBoundingClientRect();
                      const r = (e) => e.getBoundingClientRect();
                      return {barTop: bar.top, inputTop: r(el).top, inputBottom: r(el).bottom, labelTop: r(label).top,
                              labelBottom: r(label).bottom, focused: document.activeElement === el}; }""",
        selector,
    )


def assert_clear_of_the_bar(where: dict) -> None:
    assert where["focused"], where
    assert where["labelTop"] >= 0 and where["inputBottom"] <= where["barTop"], f"the sticky bar covers the field: {where}"


def test_submit_common_fields_open_and_the_rest_under_advanced(vpage, server):
    page = vpage
    goto(page, server, "submit", "submit")
    page.wait_for_selector("#predicted-saving")
    for sel in BASIC_IDS:
        assert page.locator(sel).is_visible(), sel
    advanced = page.locator("details#advanced")
    assert advanced.evaluate("d => !d.open")
    for sel in ADVANCED_IDS:
        assert page.locator(sel).is_hidden() and page.locator(f"details#advanced {sel}").count() == 1, sel
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")  # the sticky bar at its place
    shot(page, f"trial-submit-{page.size_name}")
    assert visible_fields(page) <= 14
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < (1500 if page.size_name == "phone" else 1100), height
    # the schedule's main parameter follows its kind, in the open part
    page.select_option("#f-dynds-schedule-kind", "periodic")
    assert page.locator("#f-dynds-schedule-every").is_visible() and page.locator("#f-dynds-schedule-p").is_hidden()
    page.select_option("#f-dynds-schedule-kind", "stochastic")
    # Advanced opens to every other field
    page.click("details#advanced > summary")
    for sel in ADVANCED_IDS:
        assert page.locator(sel).is_visible(), sel
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    shot(page, f"trial-submit-advanced-{page.size_name}")


def test_submit_error_summary_links_focus_their_fields(vpage, server):
    page = vpage
    goto(page, server, "submit", "submit")
    page.wait_for_selector("#predicted-saving")
    page.click("details#advanced > summary")
    page.fill("#f-train-lr", "-1")
    page.click("details#advanced > summary")  # closed again: the bad value is out of sight
    page.fill("#f-train-epochs", "0")
    page.locator("#f-train-epochs-err").wait_for(state="visible")  # the live check marks it
    assert page.locator("#advanced-errors").inner_text() == "1 problem"  # and says Advanced holds one
    page.click("#submit-btn")
    summary = page.locator("#error-summary")
    summary.wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "error-summary"
    links = summary.locator("a[data-field]")
    assert sorted(links.evaluate_all("as => as.map(a => a.dataset.field)")) == ["train.epochs", "train.lr"]
    assert "Advanced" in summary.locator("a[data-field='train.lr']").inner_text()
    no_sideways_scroll(page)
    shot(page, f"trial-submit-error-summary-{page.size_name}", full_page=False)
    url = page.url
    summary.locator("a[data-field='train.lr']").click()
    assert page.url == url  # the link did not change the hash route
    assert page.locator("details#advanced").evaluate("d => d.open")
    assert_clear_of_the_bar(covered_by_sticky_bar(page, "#f-train-lr"))
    page.locator("details#advanced > summary").scroll_into_view_if_needed()
    page.click("details#advanced > summary")
    summary.locator("a[data-field='train.epochs']").click()
    assert_clear_of_the_bar(covered_by_sticky_bar(page, "#f-train-epochs"))
    assert server.api("GET", "/jobs?name=none").status_code == 200
    # fixed: the summary goes with the errors
    page.fill("#f-train-epochs", "2")
    page.click("details#advanced > summary") if not page.locator("details#advanced").evaluate("d => d.open") else None
    page.fill("#f-train-lr", "0.1")
    summary.wait_for(state="hidden")


def tab_into(page, prev: str, selector: str, place: str) -> dict:
    """Put ``selector`` just behind the sticky bar ("bottom") or just under the top edge, its label cut off
    ("top"), then Tab into it from ``prev``, as a keyboard user does; where it ends up."""
    before = page.evaluate(
        """([prev, sel, place]) => { const r = document.querySelector(sel).getBoundingClientRect();
             window.scrollBy(0, place === 'bottom' ? r.bottom - (innerHeight - 6) : r.top - 4);
             document.querySelector(prev).focus({preventScroll: true});
             const label = document.querySelector(sel).closest('.field').querySelector('label').getBoundingClientRect();
             const bar = document.querySelector('#sticky-submit').getBoundingClientRect();
             return {covered: document.querySelector(sel).getBoundingClientRect().bottom > bar.top, cut: label.top < 0}; }""",
        [prev, selector, place],
    )
    assert before["covered" if place == "bottom" else "cut"], f"{selector} could not be put {place}: {before}"
    page.keyboard.press("Tab")
    return covered_by_sticky_bar(page, selector)


def test_submit_sticky_bar_never_covers_a_focused_field(vpage, server):
    page = vpage
    goto(page, server, "submit", "submit")
    page.wait_for_selector("#predicted-saving")
    page.click("details#advanced > summary")  # a page long enough to put any field anywhere
    # a field that sat behind the bar is scrolled above it when focused
    assert_clear_of_the_bar(tab_into(page, "#f-train-optimizer", "#f-train-lr", "bottom"))
    assert_clear_of_the_bar(tab_into(page, "#f-dynds-kernel-mode", "#f-dynds-kernel-window", "bottom"))
    # one whose label was above the top edge is scrolled down to show the label
    assert_clear_of_the_bar(tab_into(page, "#f-train-batch_size", "#f-train-seed", "top"))
    assert_clear_of_the_bar(tab_into(page, "#f-model-arch", "#f-data-dataset", "top"))


# --- the job page -----------------------------------------------------------------------------------------

LEGEND_RUNS = """([id, label]) => {
    // How many separate strokes the legend entry's symbol has along its middle row: 1 for a solid line or
    // a filled box, 2 or more for a dashed line. Read from the canvas's pixels (what a person sees).
    const c = Chart.getChart(document.getElementById(id));
    const L = c.legend, i = L.legendItems.findIndex((it) => it.text === label);
    if (i < 0) return null;
    const hb = L.legendHitBoxes[i], o = L.options.labels, fs = (o.font && o.font.size) || Chart.defaults.font.size;
    const bw = o.usePointStyle ? (o.pointStyleWidth || Math.min(o.boxWidth ?? fs, fs)) : (o.boxWidth ?? fs);
    const dpr = c.currentDevicePixelRatio, ctx = c.ctx;
    let best = null;
    for (let y = Math.floor(hb.top); y <= hb.top + hb.height; y++) {
      const d = ctx.getImageData(Math.round(hb.left * dpr), Math.round(y * dpr), Math.round(bw * dpr), 1).data;
      const ink = []; for (let k = 3; k < d.length; k += 4) ink.push(d[k] > 100);
      const n = ink.filter(Boolean).length;
      if (!best || n > best.n) best = { n, ink };
    }
    let runs = 0; best.ink.forEach((v, k) => { if (v && !best.ink[k - 1]) runs++; });
    return runs;
}"""


def legend_strokes(page, canvas_id: str, label: str) -> int:
    return page.evaluate(LEGEND_RUNS, [canvas_id, label])


def full_job(job_id: int, status: str = "succeeded", **extra) -> dict:
    """A job as GET /jobs/{id} answers, with the canonical spec of a cifar10 run (12 epochs, 10k images)."""
    defaults = extra.pop("defaults")
    job_spec = json.loads(json.dumps(defaults))
    job_spec["name"] = f"page-{job_id}"
    job_spec["data"].update(dataset="cifar10", train_subset=10000)
    job_spec["train"].update(epochs=12)
    job_spec["equal_time_baseline"] = True
    job = listed_job(job_id, f"page-{job_id}", status, ts=0.31, acc=-0.4, verdict="beats_equal_time", job_spec=job_spec)
    result = {
        "dynds": run_result("dynds", 70.1, 250.0, 400, 548),
        "baseline": run_result("baseline", 70.5, 362.3, 948, 0),
        "equal_time": run_result("equal_time", 68.9, 249.0, 650, 0),
        "time_saving": 0.31,
        "acc_delta": -0.4,
        "flop_saving": 0.55,
        "time_saving_interleaved": 0.30,
        "equal_time_gap": 1.2,
        "equal_time_sizing": "own_full_steps",
        "pairing": "lockstep",
        "timing_noisy": False,
        "timing_noise": None,
        "verdict": "beats_equal_time",
        "verdict_sentence": SENTENCE,
    }
    finished = None if status in ("queued", "running") else "2026-11-25T21:11:00.000000Z"
    job |= {"result": result if status == "succeeded" else None, "reproducibility": None, "finished_at": finished}
    job["summary"] |= {
        "flop_saving": 0.55,
        "equal_time_gap": 1.2,
        "dynds_acc": 70.1,
        "baseline_acc": 70.5,
        "equal_time_acc": 68.9,
        "dynds_time_s": 250.0,
        "baseline_time_s": 362.3,
        "time_saving_interleaved": 0.3,
    }
    return job | extra


def loss_points(n: int = 40) -> list[dict]:
    """Noisy per-step losses of two runs (a zigzag), in step order."""
    pts = []
    for run_i, run in enumerate(("dynds", "baseline")):
        for k in range(n):
            pts.append(
                {
                    "id": run_i * n + k + 1,
                    "run": run,
                    "kind": "step",
                    "step": k,
                    "epoch": 0,
                    "train_time_s": (0.5 + 0.2 * run_i) * (k + 1),
                    "values": {"loss": 2.2 - 0.025 * k - 0.1 * run_i + (0.3 if k % 2 else -0.3), "acc": 0.1, "lr": 0.1, "batch_type": "full"},
                }
            )
    return pts


def route_job_page(page, job: dict, points: list[dict] | None = None, posted: list[str] | None = None) -> None:
    jid = job["id"]
    page.route(f"**/api/v1/jobs/{jid}", lambda r: fulfil_json(r, job))
    page.route(
        f"**/api/v1/jobs/{jid}/metrics*",
        lambda r: fulfil_json(r, {"data": (points or []) if "after=" not in r.request.url else [], "next_cursor": None}),
    )
    page.route(f"**/api/v1/jobs/{jid}/logs*", lambda r: fulfil_json(r, {"data": [], "next_cursor": None}))
    # the live stream ends at once (the page then reads the job again)
    page.route(f"**/api/v1/jobs/{jid}/events*", lambda r: r.fulfill(status=200, content_type="text/event-stream", body="event: end\ndata: {}\n\n"))

    def cancel(route):
        posted.append(route.request.method)
        if len(posted) == 1 and job.get("fail_first_cancel"):
            fulfil_json(
                route, {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "the database is busy; try again"}, 503
            )
        else:
            fulfil_json(route, job | {"cancel_requested": True})

    if posted is not None:
        page.route(f"**/api/v1/jobs/{jid}/cancel", cancel)


def defaults_of(server) -> dict:
    return server.api("GET", "/meta").json()["defaults"]


def test_job_result_tiles_leave_no_tile_alone_on_a_row(vpage, server):
    page = vpage
    route_job_page(page, full_job(9201, defaults=defaults_of(server)))
    goto(page, server, "jobs/9201", "job")
    rows = page.evaluate("""() => { const rows = {};
        for (const t of document.querySelectorAll('#headline-stats .stat')) {
          const y = Math.round(t.getBoundingClientRect().top); rows[y] = (rows[y] || 0) + 1; }
        return Object.values(rows); }""")
    assert sum(rows) == 10 and len(rows) >= 2
    assert min(rows) >= 2 and len(set(rows)) == 1, f"tiles per row: {rows}"
    no_sideways_scroll(page)
    page.locator("#headline-stats").scroll_into_view_if_needed()
    shot(page, f"trial-job-tiles-{page.size_name}", full_page=False)


def test_job_progress_bar_runs_once_over_all_the_runs(vpage, server):
    page = vpage
    defaults = defaults_of(server)
    # lockstep (the default): DynDS and its baseline together are 2 of 3 runs, then the equal-time run
    job = full_job(9202, "running", defaults=defaults, progress=prog("dynds", 0.5, 5, 12, 474))
    route_job_page(page, job)
    goto(page, server, "jobs/9202", "job")
    bar = page.locator("#job-progress [role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == "33"  # half of 2 runs out of 3
    assert "runs 1–2 of 3: baseline and DynDS in lockstep" in page.locator("#job-progress").inner_text()
    page.unroute("**/api/v1/jobs/9202")
    # the equal-time run half way: 2.5 of 3, the bar does not start again at 0
    page.route("**/api/v1/jobs/9202", lambda r: fulfil_json(r, job | {"progress": prog("equal_time", 0.5, 2, 4, 150, 300)}))
    page.evaluate("window.__dyndsRendered = null")
    page.reload()
    wait_rendered(page, "job")
    assert page.locator("#job-progress [role=progressbar]").get_attribute("aria-valuenow") == "83"
    assert "run 3 of 3: equal-time baseline" in page.locator("#job-progress").inner_text()
    shot(page, f"trial-job-progress-{page.size_name}", full_page=False)


def test_job_progress_sequential_runs_count_one_each(vpage, server):
    page = vpage
    defaults = defaults_of(server)
    job = full_job(9203, "running", defaults=defaults, progress=prog("dynds", 0.25, 2, 12, 237))
    job["spec"]["train"]["pairing"] = "sequential"
    route_job_page(page, job)
    goto(page, server, "jobs/9203", "job")
    # baseline first (1 of 3 done), DynDS a quarter through: 1.25 / 3
    assert page.locator("#job-progress [role=progressbar]").get_attribute("aria-valuenow") == "42"
    assert "run 2 of 3: DynDS" in page.locator("#job-progress").inner_text()


def test_job_loss_chart_can_be_smoothed(vpage, server):
    page = vpage
    route_job_page(page, full_job(9204, defaults=defaults_of(server)), points=loss_points())
    goto(page, server, "jobs/9204", "job")
    series = """() => Chart.getChart(document.getElementById('chart-loss')).data.datasets.map(d => ({label: d.label, y: d.data.map(p => p.y)}))"""
    wait_js(page, "() => { const c = Chart.getChart(document.getElementById('chart-loss')); return c && c.data.datasets.length === 2; }")
    raw = {d["label"]: d["y"] for d in page.evaluate(series)}
    assert page.locator("#loss-smooth").input_value() == "0"
    page.select_option("#loss-smooth", "0.9")
    smoothed = {d["label"]: d["y"] for d in page.evaluate(series)}
    for label, ys in raw.items():
        # the debiased EMA of each run's own losses, point for point
        acc, debias, want = 0.0, 1.0, []
        for y in ys:
            acc = acc * 0.9 + 0.1 * y
            debias *= 0.9
            want.append(acc / (1 - debias))
        assert smoothed[label] == [round(w, 9) for w in want] or all(abs(a - b) < 1e-9 for a, b in zip(smoothed[label], want, strict=True))
        assert max(ys) - min(ys) > 2 * (max(smoothed[label]) - min(smoothed[label])) * 0.5  # the zigzag is gone
    assert "smoothed" in page.locator("#loss-caption").inner_text()
    # the legend draws the dashed baseline as a dashed line, DynDS as a solid one
    assert legend_strokes(page, "chart-loss", "Baseline") >= 2 and legend_strokes(page, "chart-loss", "DynDS") == 1
    page.select_option("#loss-smooth", "0")
    assert {d["label"]: d["y"] for d in page.evaluate(series)} == raw
    page.select_option("#loss-smooth", "0.6")
    page.locator("#chart-loss").scroll_into_view_if_needed()
    shot(page, f"trial-job-smoothing-{page.size_name}", full_page=False)


def test_job_spec_is_shown_as_its_difference_from_the_defaults(vpage, server):
    page = vpage
    route_job_page(page, full_job(9205, defaults=defaults_of(server)))
    goto(page, server, "jobs/9205", "job")
    diff = page.locator("#spec-diff")
    keys = diff.locator("dt").all_inner_texts()
    assert sorted(keys) == ["data.dataset", "data.train_subset", "equal_time_baseline", "train.epochs"], keys
    assert "(default 2)" in diff.locator("dt:text-is('train.epochs') + dd").inner_text()
    text = page.locator("#job-details").inner_text()
    assert "other settings keep their defaults" in text
    # the whole spec is still there, folded
    whole = json.loads(page.locator("#job-details pre.spec").text_content())
    assert whole["train"]["epochs"] == 12 and whole["train"]["lr"] == 0.1
    page.locator("#spec-title").scroll_into_view_if_needed()
    shot(page, f"trial-job-spec-{page.size_name}", full_page=False)


def test_job_spec_without_the_defaults_lists_every_setting(page, server):
    route_job_page(page, full_job(9211, defaults=defaults_of(server)))
    page.route(
        "**/api/v1/meta", lambda r: fulfil_json(r, {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "try again"}, 503)
    )
    goto(page, server, "jobs/9211", "job")
    assert "defaults could not be read" in page.locator("#job-details").inner_text()
    keys = page.locator("#spec-diff dt").all_inner_texts()
    assert "train.lr" in keys and "train.epochs" in keys and len(keys) > 30


def test_finished_job_does_not_say_shown_when_finished(vpage, server):
    page = vpage
    defaults = defaults_of(server)
    for jid, status in ((9206, "failed"), (9207, "cancelled"), (9208, "succeeded")):
        # a succeeded job whose result holds no runs (as an old server's may), a failed and a cancelled one
        route_job_page(page, full_job(jid, status, defaults=defaults, error="RuntimeError: boom" if status == "failed" else None, result=None))
        goto(page, server, f"jobs/{jid}", "job")
        text = page.locator("#job-details").inner_text()
        assert "Shown when the job has finished" not in text, status
        assert (
            "failed before any run finished"
            if status == "failed"
            else "cancelled before any run finished"
            if status == "cancelled"
            else "Not recorded in this job's result"
        ) in page.locator("#job-details section[aria-labelledby=split-title]").inner_text()
    route_job_page(page, full_job(9209, "running", defaults=defaults, progress=prog("dynds", 0.1)))
    goto(page, server, "jobs/9209", "job")
    assert "Shown when the job has finished" in page.locator("#job-details").inner_text()


def test_cancel_asks_first_in_the_page(vpage, server):
    page = vpage
    posted: list[str] = []
    job = full_job(9210, "running", defaults=defaults_of(server), progress=prog("dynds", 0.1), fail_first_cancel=True)
    route_job_page(page, job, posted=posted)
    goto(page, server, "jobs/9210", "job")
    dialog = page.locator("#cancel-dialog")
    page.click("#cancel-btn")
    assert dialog.is_visible() and dialog.evaluate("d => d.open && d.matches(':modal')")
    assert page.evaluate("document.activeElement.id") == "cancel-keep"  # the safe answer is the default
    shot(page, f"trial-job-cancel-confirm-{page.size_name}", full_page=False)
    page.click("#cancel-keep")
    dialog.wait_for(state="hidden")
    # Escape is a no too
    page.click("#cancel-btn")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    # yes: the cancel goes out (this server refuses the first one)
    page.click("#cancel-btn")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/jobs/9210/cancel") and r.method == "POST"):
        page.click("#cancel-confirm")
    page.wait_for_selector("#job-alerts .alert.error")
    assert "database is busy" in page.locator("#job-alerts").inner_text() and page.is_enabled("#cancel-btn")
    # after a yes, Escape is still a no (the dialog remembers its last answer)
    page.click("#cancel-btn")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.click("#cancel-btn")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/jobs/9210/cancel") and r.method == "POST"):
        page.click("#cancel-confirm")
    page.wait_for_selector("#cancel-btn:disabled")
    assert posted == ["POST", "POST"], posted  # one per yes: "Keep it running" and Escape sent nothing
    assert page.locator("#cancel-btn").inner_text() == "Cancelling…"


# --- leaderboard and compare ------------------------------------------------------------------------------


def test_leaderboard_names_settings_in_words(vpage, server):
    page = vpage
    page.route("**/api/v1/leaderboard*", lambda r: fulfil_json(r, leaderboard_body()))
    goto(page, server, "leaderboard", "leaderboard")
    names = page.locator("#lb-body tbody tr .setting-name")
    shown = dict(zip(page.locator("#lb-body tbody tr").evaluate_all("rs => rs.map(r => r.dataset.setting)"), names.all_inner_texts(), strict=True))
    assert shown == {
        "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen": "p=0.5 · 2×2 avg · input /2",
        "periodic every=4 | avg k2s1 sum | in/2 avg | bn frozen": "3 of 4 reduced · 2×2 avg · input /2",
        "stochastic p=0.3 | avg k2s1 sum | in/2 avg | bn frozen": "p=0.3 · 2×2 avg · input /2",
    }
    # the exact key on hover, the kind in words for screen readers
    first = page.locator("#lb-body tbody tr").first
    assert first.locator(".setting-name").get_attribute("title") == "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
    assert first.locator(".legend-dot").get_attribute("aria-label") == "stochastic schedule"
    assert "|" not in page.locator("#lb-body tbody").inner_text()
    if page.size_name == "phone":
        # legible: the name in the page's font at a readable size, on lines of its own under its label
        cell = first.locator("td.setting-cell")
        style = cell.locator(".setting-name").evaluate(
            "e => ({size: parseFloat(getComputedStyle(e).fontSize), font: getComputedStyle(e).fontFamily})"
        )
        assert style["size"] >= 14 and "mono" not in style["font"].lower(), style
        assert cell.evaluate("e => getComputedStyle(e).textAlign") in ("left", "start")
    no_sideways_scroll(page)
    shot(page, f"trial-leaderboard-{page.size_name}")


def test_setting_label_reads_every_kind(page, server):
    goto(page, server, "jobs", "jobs")
    out = page.evaluate("""async () => { const { settingLabel } = await import('/static/js/setting.js');
        return ["stochastic p=0.5->0.1 ff=0.1 | max k3s2 none pad-end | in/4 bilinear | bn shared",
                "periodic RRF | kernel none | in/2 avg | bn frozen", "phase 0-0.5 | resize 3x3 sum | in/2 nearest | bn separate",
                "adaptive p=0.1-0.9 w=50 | avg k2s1 sum | in/2 avg | bn frozen", "none | avg k2s1 sum | in/2 avg | bn frozen",
                "something | new | from | the server"].map((k) => settingLabel(k)); }""")
    assert out == [
        "p=0.5→0.1 · last 10 % full · 3×3 max stride 2 unscaled pad end · input /4 bilinear · BN shared",
        "pattern RRF · full kernels · input /2",
        "reduced 0–50 % of training · kernels resized to 3×3 · input /2 nearest · BN separate",
        "adaptive p 0.1–0.9, window 50 · 2×2 avg · input /2",
        "never reduced · 2×2 avg · input /2",
        "something | new | from | the server",  # a key it cannot read is shown as it is
    ]


POINTS_INSIDE = """(id) => {
    // Every point (and error bar end) of a chart, in pixels, against its plot area: how far inside it lies.
    const c = Chart.getChart(document.getElementById(id)), a = c.chartArea, out = [];
    c.data.datasets.forEach((d, di) => {
      if (!c.isDatasetVisible(di)) return;
      const r = d.pointRadius ?? 3;
      for (const p of d.data) {
        const xs = [p.x, p.xLo, p.xHi].filter(Number.isFinite), ys = [p.y, p.yLo, p.yHi].filter(Number.isFinite);
        for (const x of xs) for (const y of ys) {
          const px = c.scales.x.getPixelForValue(x), py = c.scales.y.getPixelForValue(y);
          out.push({label: d.label, x, y, margin: Math.min(px - a.left, a.right - px, py - a.top, a.bottom - py) - (x === p.x && y === p.y ? r : 0)});
        }
      }
    });
    return out;
}"""


def assert_no_point_clipped(page, canvas_id: str) -> None:
    points = page.evaluate(POINTS_INSIDE, canvas_id)
    assert points, f"no points on {canvas_id}"
    cut = [p for p in points if p["margin"] < 2]
    assert not cut, f"points on the edge of {canvas_id} (drawn cut off): {cut}"


def route_compare(page) -> None:
    page.route("**/api/v1/export*", lambda r: fulfil_json(r, export_rows()))
    page.route("**/api/v1/frontier*", lambda r: fulfil_json(r, frontier_body()))
    page.route("**/api/v1/leaderboard*", lambda r: fulfil_json(r, leaderboard_body()))


def test_compare_axes_hold_every_point_and_dashed_lines_show_dashed(vpage, server):
    page = vpage
    route_compare(page)
    goto(page, server, f"compare?track={TRACK}", "compare")
    wait_js(page, "() => Chart.getChart(document.getElementById('frontier'))")
    xs = page.evaluate("() => Chart.getChart(document.getElementById('scatter')).data.datasets.flatMap(d => d.data.map(p => p.x))")
    assert min(xs) == -20  # the run at −20 % time saving is on the chart, not cut
    assert_no_point_clipped(page, "scatter")
    assert_no_point_clipped(page, "frontier")
    # the dashed baseline's legend entry is a dashed line, not a filled box; the Pareto front a solid line
    assert legend_strokes(page, "frontier", "baseline trained for less time (mean)") >= 2
    assert legend_strokes(page, "scatter", "Pareto front (1)") == 1
    # tooltips name settings in words
    label = page.evaluate("""() => { const c = Chart.getChart(document.getElementById('frontier'));
        const d = c.data.datasets.find(d => d.label.startsWith('DynDS above'));
        return c.options.plugins.tooltip.callbacks.label({raw: d.data[0]}); }""")
    assert label[0] == "p=0.5"
    page.locator("#frontier-box").scroll_into_view_if_needed()
    shot(page, f"trial-compare-frontier-{page.size_name}", full_page=False)


def test_compare_overlay_holds_its_points_and_dashes_the_baseline(vpage, server):
    page = vpage
    route_compare(page)

    def epochs(jid: int) -> list[dict]:
        # accuracies and times on round numbers: where an axis that only fits the data puts its edge
        return [
            {
                "id": k + 1,
                "run": run,
                "kind": "epoch",
                "step": None,
                "epoch": k,
                "train_time_s": (k + 1) * (50.0 if run == "dynds" else 100.0),
                "values": {"val_acc": [40.0, 60.0, 70.0 + jid - 100][k]},
            }
            for run in ("dynds", "baseline")
            for k in range(3)
        ]

    for jid in (100, 101):
        job = listed_job(jid, f"run-{jid - 100}")
        page.route(f"**/api/v1/jobs/{jid}", lambda r, _req=None, job=job: fulfil_json(r, job))
        page.route(f"**/api/v1/jobs/{jid}/metrics*", lambda r, _req=None, pts=epochs(jid): fulfil_json(r, {"data": pts, "next_cursor": None}))  # noqa: B008 (binds this job's points)
    goto(page, server, "compare", "compare")
    for jid in (100, 101):
        page.fill("#add-job-id", str(jid))
        page.click("#add-job button[type=submit]")
    wait_js(page, "() => { const c = Chart.getChart(document.getElementById('overlay')); return c && c.data.datasets.length === 4; }")
    assert_no_point_clipped(page, "overlay")
    assert legend_strokes(page, "overlay", "#100 baseline") >= 2 and legend_strokes(page, "overlay", "#100 DynDS") == 1
    page.locator("#overlay-box").scroll_into_view_if_needed()
    shot(page, f"trial-compare-overlay-{page.size_name}", full_page=False)
