"""What a new user's first trial of the dashboard asked for (issue 10), in a real browser against a live
`dynds serve`, at a desktop and a phone size. Responses the tests need to be exact are answered by
Playwright (shaped as docs/api.md says); the rest come from the live server."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

from .conftest import fulfil_json, goto, no_sideways_scroll, shot, wait_js, wait_rendered

TRACK = "resnet20/cifar10/e12-n10000"
LONG_ERROR = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
              "13.20 GiB already allocated; 1.10 GiB free; 13.40 GiB reserved in total by PyTorch) If reserved memory is "
              ">> allocated memory try setting max_split_size_mb to avoid fragmentation. See documentation for Memory "
              "Management and PYTORCH_CUDA_ALLOC_CONF")

TRACEBACK = 'Traceback (most recent call last):\n  File "worker/runner.py", line 88, in run\n    result = train(spec)\n' + LONG_ERROR


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def spec(*, baseline: bool = True, equal_time: bool = False, pairing: str = "lockstep", **train) -> dict:
    return {"name": "s", "model": {"arch": "resnet20"}, "data": {"dataset": "cifar10", "train_subset": 10000},
            "train": {"epochs": 12, "batch_size": 128, "seed": 0, "pairing": pairing, **train},
            "baseline": baseline, "equal_time_baseline": equal_time}


def listed_job(job_id: int, name: str, status: str = "succeeded", *, ts=None, acc=None, verdict=None, error=None,
               progress=None, created="2026-11-25T21:00:00.000000Z", job_spec=None) -> dict:
    summary = {"time_saving": ts, "acc_delta": acc, "verdict": verdict, "timing_noisy": False}
    return {"id": job_id, "name": name, "status": status, "spec": job_spec or spec(), "spec_hash": f"h{job_id}", "arch": "resnet20",
            "dataset": "cifar10", "schedule_kind": "stochastic", "track": TRACK, "attempt": 1, "retry_of": None,
            "deduplicated": False, "created_at": created, "started_at": created, "finished_at": None, "heartbeat_at": None,
            "cancel_requested": False, "progress": progress, "summary": summary, "error": error}


def jobs_list() -> list[dict]:
    return [
        listed_job(31, "cifar-p05", ts=0.31, acc=-0.4, verdict="beats_equal_time", created="2026-11-25T21:05:00.000000Z"),
        listed_job(32, "oom-on-gpu", "failed", error=TRACEBACK, created="2026-11-25T21:04:00.000000Z"),
        listed_job(33, "slow-setting", ts=-0.20, acc=-2.5, verdict="loses_to_equal_time", created="2026-11-25T21:03:00.000000Z"),
        listed_job(34, "running-one", "running", progress={"run": "equal_time", "fraction": 0.5, "epoch": 3, "epochs": 12, "step": 300,
                                                             "total_steps": 600}, job_spec=spec(equal_time=True), created="2026-11-25T21:02:00.000000Z"),
        listed_job(35, "a-tie", ts=0.12, acc=-0.1, verdict="tie", created="2026-11-25T21:01:00.000000Z"),
    ]


def route_jobs_list(page, jobs: list[dict], asked: list[dict]) -> None:
    """GET /jobs answered with ``jobs``, ordered as the request's ``order`` says (as the server does)."""
    keys = {"created_at": lambda j: j["created_at"], "id": lambda j: j["id"], "name": lambda j: j["name"]}

    def answer(route):
        q = query_of(route.request.url)
        asked.append(q)
        order = q.get("order", "-created_at")
        data = sorted(jobs, key=keys[order.lstrip("-")], reverse=order.startswith("-"))
        fulfil_json(route, {"data": data, "count": len(data)})

    page.route(re.compile(r".*/api/v1/jobs\?.*"), answer)


def row_names(page) -> list[str]:
    return page.locator("#jobs-table tbody tr td.c-name a").evaluate_all(
        "els => els.map(a => a.textContent.replace(/^#\\d+\\s*/, '').trim())")


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
    assert row_names(page) == ["cifar-p05", "a-tie", "slow-setting", "running-one", "oom-on-gpu"]
    assert "sorted by time saving, highest first" in page.locator("#jobs-table caption").inner_text()
    if page.size_name == "desktop":
        assert page.evaluate("document.activeElement.dataset.sort") == "time_saving"  # focus kept across the redraw
        page.click("#jobs-table th button[data-sort=time_saving]")
        wait_js(page, "() => document.querySelector('#jobs-table th[aria-sort]').getAttribute('aria-sort') === 'ascending'")
        assert row_names(page)[:3] == ["slow-setting", "a-tie", "cifar-p05"]
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

BASIC_IDS = ("#f-name", "#f-model-arch", "#f-data-dataset", "#f-train-epochs", "#f-train-batch_size", "#f-train-seed",
             "#f-dynds-schedule-kind", "#f-dynds-schedule-p", "#f-baseline", "#f-equal_time_baseline")
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
        selector)


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
        [prev, selector, place])
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
