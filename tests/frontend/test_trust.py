"""Numbers a user can trust (issue 8), in a real browser against a live `dynds serve`.

The dashboard is served by the live server; the figures it shows come from responses shaped exactly as
docs/api.md promises (a succeeded job with a constructed result, a leaderboard with intervals, a frontier),
answered by Playwright for the endpoints named here, so these tests pin what the dashboard does with
each field whatever jobs the server happens to hold. Every test runs at a desktop and a phone size and
keeps screenshots under artifacts/screenshots/."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import (
    fulfil_json,
    goto,
    no_sideways_scroll,
    shot,
    wait_js,
    wait_rendered,
)

TRACK = "resnet20/cifar10/e12-n10000"
OTHER_TRACK = "resnet20/cifar10/e30-n50000"
SENTENCE = (
    "Worth it: 31 % less time for 0.4 pt less accuracy; the baseline trained for the same time is 1.2 pt worse "
    "(95 % interval +0.6 to +1.8 pt over 3 seeds)."
)
NOISE = "paired and interleaved savings disagree by 14 points (0.31 vs 0.17)"


# --- a succeeded job with a constructed result -------------------------------------------------------


def run_result(run: str, acc: float, time_s: float, full: int, reduced: int) -> dict:
    return {
        "run": run,
        "epochs": [],
        "steps": full + reduced,
        "steps_full": full,
        "steps_reduced": reduced,
        "train_time_s": time_s,
        "time_full_s": time_s * full / (full + reduced * 0.3),
        "time_reduced_s": time_s - time_s * full / (full + reduced * 0.3),
        "flops_full_step": 4.1e10,
        "flops_reduced_step": 1.0e10 if reduced else 0.0,
        "total_flops": 4.1e10 * full + 1.0e10 * reduced,
        "final_val_acc": acc,
        "final_val_loss": 0.9,
        "best_val_acc": acc,
    }


def constructed_job(job_id: int, *, noisy: bool, pairing: str = "lockstep") -> dict:
    result = {
        "spec_hash": "ab12cd34ef",
        "spec": {"name": "trust"},
        "device": "cpu",
        "dynds": run_result("dynds", 70.1, 250.0, 400, 548),
        "baseline": run_result("baseline", 70.5, 362.3, 948, 0),
        "equal_time": run_result("equal_time", 68.9, 249.0, 650, 0),
        "time_saving": 0.31,
        "acc_delta": -0.4,
        "flop_saving": 0.55,
        "time_saving_interleaved": 0.17 if noisy else 0.30,
        "time_saving_total": 0.29 if pairing == "lockstep" else None,
        "equal_time_gap": 1.2,
        "equal_time_sizing": "own_full_steps",
        "pairing": pairing,
        "timing_noisy": noisy,
        "timing_noise": NOISE if noisy else None,
        "verdict": "beats_equal_time",
        "verdict_sentence": SENTENCE,
        "target_accuracy": None,
        "cancelled": False,
    }
    summary = {
        "time_saving": 0.31,
        "acc_delta": -0.4,
        "flop_saving": 0.55,
        "equal_time_gap": 1.2,
        "dynds_acc": 70.1,
        "baseline_acc": 70.5,
        "equal_time_acc": 68.9,
        "dynds_time_s": 250.0,
        "baseline_time_s": 362.3,
        "time_saving_interleaved": result["time_saving_interleaved"],
        "timing_noisy": noisy,
        "verdict": "beats_equal_time",
    }
    return {
        "id": job_id,
        "name": f"trust-{job_id}",
        "status": "succeeded",
        "spec": {"name": f"trust-{job_id}", "model": {"arch": "resnet20"}, "train": {"epochs": 12, "seed": 0}},
        "spec_hash": "ab12cd34ef",
        "arch": "resnet20",
        "dataset": "cifar10",
        "schedule_kind": "stochastic",
        "track": TRACK,
        "attempt": 1,
        "retry_of": None,
        "deduplicated": False,
        "created_at": "2026-11-25T21:00:00.000000Z",
        "started_at": "2026-11-25T21:00:01.000000Z",
        "finished_at": "2026-11-25T21:11:00.000000Z",
        "heartbeat_at": "2026-11-25T21:11:00.000000Z",
        "cancel_requested": False,
        "progress": None,
        "summary": summary,
        "result": result,
        "error": None,
        "reproducibility": {
            "packages": {"torch": "2.14.1"},
            "cuda": None,
            "device": "cpu",
            "device_name": "test CPU",
            "host": "ci",
            "seed": 0,
            "git_revision": "abc123",
            "git_dirty": False,
            "python": "3.11.7",
        },
    }


def epoch_points() -> list[dict]:
    pts, pid = [], 0
    for run, accs, t in (("dynds", (40, 58, 70.1), 83), ("baseline", (42, 60, 70.5), 121), ("equal_time", (38, 55, 68.9), 83)):
        for e, acc in enumerate(accs):
            pid += 1
            pts.append(
                {
                    "id": pid,
                    "run": run,
                    "kind": "epoch",
                    "step": (e + 1) * 316,
                    "epoch": e,
                    "train_time_s": t * (e + 1),
                    "values": {
                        "val_acc": acc,
                        "val_loss": 1.5 - e * 0.3,
                        "train_loss": 1.4 - e * 0.3,
                        "train_acc": acc,
                        "steps_full": (e + 1) * 150,
                        "steps_reduced": (e + 1) * 166,
                    },
                }
            )
            pid += 1
            pts.append(
                {
                    "id": pid,
                    "run": run,
                    "kind": "step",
                    "step": (e + 1) * 316 - 1,
                    "epoch": e,
                    "train_time_s": t * (e + 1) - 1,
                    "values": {"loss": 1.6 - e * 0.35, "acc": acc, "lr": 0.1, "batch_type": "full"},
                }
            )
    return pts


def route_job(page, job: dict) -> None:
    jid = job["id"]
    page.route(f"**/api/v1/jobs/{jid}", lambda r: fulfil_json(r, job))
    page.route(
        f"**/api/v1/jobs/{jid}/metrics*",
        lambda r: fulfil_json(
            r, {"data": epoch_points() if "after=" not in r.request.url else [], "next_cursor": 6 if "after=" not in r.request.url else None}
        ),
    )


def test_job_page_says_the_verdict_and_how_the_timing_was_paired(vpage, server):
    page = vpage
    route_job(page, constructed_job(9001, noisy=False))
    goto(page, server, "jobs/9001", "job")
    panel = page.locator("#verdict-panel")
    assert page.locator("#verdict-sentence").inner_text() == SENTENCE
    assert panel.locator(".verdict.v-good").inner_text() == "worth it"
    pairing = page.locator("#pairing").inner_text()
    assert "lockstep" in pairing and "alternated step by step in one process" in pairing
    assert page.locator("#job-head .badge.noisy").count() == 0 and page.locator("#verdict-panel .badge.noisy").count() == 0
    stats = page.locator("#headline-stats").inner_text()
    assert "time saving (lockstep, vs paired baseline)" in stats and "31.0 %" in stats
    assert "cross-check: vs its own full steps" in stats and "30.0 %" in stats
    assert "total-time saving (the clock)" in stats and "29.0 %" in stats  # lockstep: the clock's figure beside it
    assert "−0.40 pt" in stats and "+1.20 pt" in stats and not re.search(r"\bpp\b", page.locator("#main").inner_text())
    # every figure carries its explanation
    assert page.locator("#headline-stats .stat").count() == page.locator("#headline-stats .stat .explain").count()
    wait_js(page, "() => { const c = Chart.getChart(document.getElementById('chart-acc')); return c && c.data.datasets.length === 3; }")
    no_sideways_scroll(page)
    shot(page, f"trust-job-{page.size_name}")


def test_job_page_flags_noisy_timing_with_its_reason(vpage, server):
    page = vpage
    route_job(page, constructed_job(9002, noisy=True, pairing="sequential"))
    goto(page, server, "jobs/9002", "job")
    assert page.locator("#job-head .badge.noisy").inner_text().strip() == "timing noisy"
    noise = page.locator("#timing-noise").inner_text()
    assert "timing noisy" in noise and NOISE in noise
    assert "sequential" in page.locator("#pairing").inner_text()
    stats = page.locator("#headline-stats").inner_text()
    assert "time saving (sequential, vs paired baseline)" in stats and "total-time" not in stats  # one figure when sequential
    shot(page, f"trust-job-noisy-{page.size_name}")


def test_job_without_verdict_or_baseline_says_so_in_words(vpage, server):
    page = vpage
    job = constructed_job(9003, noisy=False)
    for k in ("verdict", "verdict_sentence", "pairing", "time_saving", "acc_delta", "flop_saving", "time_saving_interleaved", "equal_time_gap"):
        job["result"][k] = None
    job["result"]["baseline"] = job["result"]["equal_time"] = None
    job["summary"] = {k: None for k in job["summary"]} | {"dynds_acc": 70.1, "dynds_time_s": 250.0, "timing_noisy": False}
    route_job(page, job)
    goto(page, server, "jobs/9003", "job")
    assert "No verdict was recorded" in page.locator("#verdict-sentence").inner_text()
    stats = page.locator("#headline-stats").inner_text()
    assert "no baseline ran" in stats and "no equal-time baseline" in stats and "not measured" in stats
    values = page.locator("#headline-stats .stat .value").all_inner_texts()
    assert all(v.strip() not in ("—", "-", "") for v in values), values


def test_jobs_list_marks_noisy_timing_and_says_the_verdict(vpage, server):
    page = vpage
    jobs = [constructed_job(9011, noisy=True), constructed_job(9012, noisy=False)]
    jobs[1]["summary"]["verdict"] = "needs_seeds"
    listed = [{k: v for k, v in j.items() if k != "result"} for j in jobs]
    page.route(re.compile(r".*/api/v1/jobs\?.*"), lambda r: fulfil_json(r, {"data": listed, "count": 2}))
    goto(page, server, "jobs", "jobs")
    noisy_row = page.locator("#jobs-table tr", has_text="trust-9011")
    calm_row = page.locator("#jobs-table tr", has_text="trust-9012")
    assert noisy_row.locator(".badge.noisy").count() == 1 and calm_row.locator(".badge.noisy").count() == 0
    assert noisy_row.locator(".verdict").inner_text() == "worth it"
    assert calm_row.locator(".verdict").inner_text() == "needs seeds"
    assert "pt" in calm_row.inner_text()
    no_sideways_scroll(page)
    shot(page, f"trust-jobs-{page.size_name}")


# --- leaderboard ----------------------------------------------------------------------------------------


def cell(key: str, *, rank, ranked: bool, why, ts, ts_ci, acc, acc_ci, gap, gap_ci, verdict, sentence, n_seeds=3, n_noisy=0, ids=(1, 2, 3)):
    return {
        "rank": rank,
        "ranked": ranked,
        "why_unranked": why,
        "setting": {"schedule": {"kind": "stochastic"}},
        "setting_key": key,
        "schedule_kind": "stochastic",
        "n_seeds": n_seeds,
        "n_jobs": n_seeds,
        "seeds": list(range(n_seeds)),
        "n_noisy": n_noisy,
        "time_saving_mean": ts,
        "time_saving_ci95": ts_ci,
        "acc_delta_mean": acc,
        "acc_delta_ci95": acc_ci,
        "equal_time_gap_mean": gap,
        "equal_time_gap_ci95": gap_ci,
        "verdict": verdict,
        "verdict_sentence": sentence,
        "within_bound": True,
        "pareto": rank == 1,
        "job_ids": list(ids),
    }


def leaderboard_body(min_seeds: int = 3) -> dict:
    entries = [
        cell(
            "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen",
            rank=1,
            ranked=True,
            why=None,
            ts=0.31,
            ts_ci=[0.27, 0.35],
            acc=-0.3,
            acc_ci=[-0.8, 0.2],
            gap=1.2,
            gap_ci=[0.6, 1.8],
            verdict="beats_equal_time",
            sentence=SENTENCE,
        ),
        cell(
            "stochastic p=0.3 | avg k2s1 sum | in/2 avg | bn frozen",
            rank=None,
            ranked=False,
            why="1 seed (needs 3)",
            ts=0.45,
            ts_ci=None,
            acc=-0.2,
            acc_ci=None,
            gap=0.4,
            gap_ci=None,
            verdict="needs_seeds",
            n_seeds=1,
            ids=(7,),
            sentence="Worth it here: 45 % less time for 0.2 pt less accuracy; the baseline trained for the same time is 0.4 pt worse "
            "(1 seed: not conclusive, run at least 3).",
        ),
        cell(
            "periodic every=4 | avg k2s1 sum | in/2 avg | bn frozen",
            rank=2,
            ranked=True,
            why=None,
            ts=0.22,
            ts_ci=[0.18, 0.26],
            acc=-1.1,
            acc_ci=[-1.9, -0.3],
            gap=-0.5,
            gap_ci=[-1.4, 0.4],
            verdict="tie",
            n_noisy=1,
            ids=(4, 5, 6),
            sentence="Not conclusive: 22 % less time for 1.1 pt less accuracy; the baseline trained for the same time is 0.5 pt better, "
            "and the interval spans zero: a tie.",
        ),
    ]
    return {
        "max_acc_drop": 0.5,
        "min_seeds": min_seeds,
        "tracks": [
            {
                "track": TRACK,
                "recipe_hash": "9f8e7d6c5b",
                "recipe": {"optimizer": "sgd", "lr": 0.1},
                "arch": "resnet20",
                "dataset": "cifar10",
                "entries": entries,
            }
        ],
    }


def test_leaderboard_shows_intervals_verdicts_and_unranked_cells_last(vpage, server):
    page = vpage
    asked: list[dict] = []

    def answer(route):
        q = {k: v[0] for k, v in parse_qs(urlparse(route.request.url).query).items()}
        asked.append(q)
        fulfil_json(route, leaderboard_body(int(q.get("min_seeds", 3))))

    page.route("**/api/v1/leaderboard*", answer)
    goto(page, server, "leaderboard", "leaderboard")
    rows = page.locator("#lb-body tbody tr")
    assert rows.count() == 3
    first = rows.nth(0).inner_text()
    assert "31 % [27, 35]" in first and "−0.3 pt [−0.8, +0.2]" in first and "3 seeds" in first
    assert rows.nth(0).locator(".verdict").inner_text() == "worth it"
    assert "v-good" in rows.nth(0).locator(".verdict").get_attribute("class")
    assert rows.nth(0).locator(".verdict").get_attribute("title") == SENTENCE
    # the sentence opens on click (phones have no hover)
    rows.nth(0).locator(".verdict-details summary").click()
    assert rows.nth(0).locator(".verdict-text").inner_text() == SENTENCE
    assert rows.nth(1).locator(".verdict").inner_text() == "tie"
    assert "1 noisy" in rows.nth(1).inner_text()
    # the unranked cell comes after the ranked ones, greyed, with the reason
    last = rows.nth(2)
    assert "unranked" in last.get_attribute("class") and "not ranked: 1 seed (needs 3)" in last.inner_text()
    assert last.locator(".verdict").inner_text() == "needs seeds"
    assert not re.search(r"\bpp\b", page.locator("#main").inner_text())
    no_sideways_scroll(page)
    shot(page, f"trust-leaderboard-{page.size_name}")
    # the controls reach the server
    page.check("#lb-noisy")
    wait_js(page, "() => location.hash.includes('include_noisy=true')")
    wait_rendered(page, "leaderboard")
    page.fill("#lb-seeds", "2")

    # the hash changes before the fetch goes out: wait for the request itself, not for the hash
    def both_filters(request) -> bool:
        q = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        return "/api/v1/leaderboard" in request.url and q.get("include_noisy") == "true" and q.get("min_seeds") == "2"

    with page.expect_request(both_filters, timeout=10_000):
        page.click("#lb-filters button[type=submit]")
    wait_js(page, "() => location.hash.includes('min_seeds=2')")
    wait_js(page, "() => document.querySelector('#lb-seeds').value === '2'")


# --- compare: the budget frontier ---------------------------------------------------------------------


def export_rows() -> list[dict]:
    rows = []
    for i, (track, ts, acc) in enumerate(
        ((TRACK, 0.31, -0.3), (TRACK, -0.20, -2.5), (TRACK, 0.22, -1.1), (OTHER_TRACK, 0.40, 0.2), (OTHER_TRACK, 0.10, 0.5))
    ):
        rows.append(
            {
                "id": 100 + i,
                "name": f"run-{i}",
                "track": track,
                "arch": "resnet20",
                "dataset": "cifar10",
                "schedule_kind": "stochastic",
                "setting_key": f"stochastic p=0.{i + 3}",
                "seed": 0,
                "time_saving": ts,
                "acc_delta": acc,
                "flop_saving": 0.5,
                "equal_time_gap": 0.4,
                "dynds_acc": 70.0,
                "baseline_acc": 70.3,
                "equal_time_acc": 69.6,
                "dynds_time_s": 250.0,
                "baseline_time_s": 360.0,
            }
        )
    return rows


def frontier_body() -> dict:
    return {
        "track": TRACK,
        "recipe_hash": "9f8e7d6c5b",
        "baseline": [
            {"time_fraction": f, "acc_mean": a, "acc_ci95": [a - 0.9, a + 0.9], "n_seeds": 3, "sources": []}
            for f, a in ((0.25, 55.0), (0.5, 63.0), (0.75, 67.5), (1.0, 70.3))
        ],
        "points": [
            {
                "setting_key": "stochastic p=0.5",
                "time_fraction_mean": 0.69,
                "time_fraction_ci95": [0.65, 0.73],
                "acc_mean": 70.0,
                "acc_ci95": [69.5, 70.5],
                "n_seeds": 3,
                "verdict": "beats_equal_time",
                "position": "above",
            },
            {
                "setting_key": "periodic every=4",
                "time_fraction_mean": 0.78,
                "time_fraction_ci95": [0.74, 0.82],
                "acc_mean": 68.0,
                "acc_ci95": [67.0, 69.0],
                "n_seeds": 3,
                "verdict": "tie",
                "position": "within",
            },
            {
                "setting_key": "stochastic p=0.9",
                "time_fraction_mean": 0.4,
                "time_fraction_ci95": None,
                "acc_mean": 52.0,
                "acc_ci95": None,
                "n_seeds": 1,
                "verdict": "needs_seeds",
                "position": "below",
            },
        ],
    }


def frontier_datasets(page) -> list[dict]:
    return page.evaluate(
        """() => { const c = Chart.getChart(document.getElementById('frontier'));
                   return c ? c.data.datasets.map(d => ({label: d.label, n: d.data.length, fill: d.fill ?? null, type: d.type || c.config.type,
                                                         color: d.borderColor})) : null; }"""
    )


def test_compare_draws_the_frontier_of_one_track_and_no_front_across_tracks(vpage, server):
    page = vpage
    asked: list[dict] = []
    page.route("**/api/v1/export*", lambda r: fulfil_json(r, export_rows()))

    def frontier(route):
        asked.append({k: v[0] for k, v in parse_qs(urlparse(route.request.url).query).items()})
        fulfil_json(route, frontier_body())

    page.route("**/api/v1/frontier*", frontier)
    # All tracks: the scatter has every run, no Pareto front, and the frontier asks for one track.
    goto(page, server, "compare", "compare")
    labels = page.evaluate("() => Chart.getChart(document.getElementById('scatter')).data.datasets.map(d => d.label)")
    assert not any(lb.startswith("Pareto") for lb in labels), labels
    assert "needs one track" in page.locator("#frontier-msg").inner_text()
    assert frontier_datasets(page) is None and asked == []
    assert "no front is drawn across tracks" in page.locator("#scatter-note").inner_text()
    shot(page, f"trust-compare-all-{page.size_name}")

    # One track: the Pareto front of that track only, the frontier drawn.
    page.select_option("#track", TRACK)
    wait_js(page, "() => Chart.getChart(document.getElementById('frontier'))")
    assert asked == [{"track": TRACK}]
    sets = {d["label"]: d for d in frontier_datasets(page)}
    assert sets["baseline trained for less time (mean)"]["n"] == 4
    band = sets["baseline 95 % band"]
    assert band["n"] == 4 and band["fill"] == "-1" and sets["baseline 95 % band (lower)"]["n"] == 4
    assert {k: v["n"] for k, v in sets.items() if k.startswith("DynDS")} == {"DynDS above (1)": 1, "DynDS within (1)": 1, "DynDS below (1)": 1}
    assert sets["DynDS above (1)"]["color"] != sets["DynDS below (1)"]["color"]
    assert "a point above the band beats training the baseline for less time" in page.locator("#frontier-caption").inner_text().lower()
    # error bars: the points carry their intervals (in %)
    above = page.evaluate("""() => Chart.getChart(document.getElementById('frontier')).data.datasets
                               .find(d => d.label.startsWith('DynDS above')).data[0]""")
    assert above["xLo"] == pytest.approx(65) and above["xHi"] == pytest.approx(73) and above["yLo"] == pytest.approx(69.5)
    pareto = page.evaluate("""() => Chart.getChart(document.getElementById('scatter')).data.datasets
                                .filter(d => d.label.startsWith('Pareto')).flatMap(d => d.data.map(p => p.row.track))""")
    assert pareto and set(pareto) == {TRACK}, pareto
    # no point is clipped: the axes hold the run at -20 % and every interval
    scatter_x = page.evaluate("() => { const s = Chart.getChart(document.getElementById('scatter')).scales.x; return [s.min, s.max]; }")
    assert scatter_x[0] < -20 and scatter_x[1] > 31, scatter_x
    fx = page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('frontier'));"
        " return [c.scales.x.min, c.scales.x.max, c.scales.y.min, c.scales.y.max]; }"
    )
    assert fx[0] <= 25 and fx[1] >= 100 and fx[2] < 52 and fx[3] > 71.2, fx
    page.locator("#frontier-box").scroll_into_view_if_needed()
    no_sideways_scroll(page)
    shot(page, f"trust-compare-frontier-{page.size_name}")
    # noisy-timing cells are asked for on request
    with page.expect_request(lambda r: "/api/v1/frontier" in r.url and "include_noisy=true" in r.url):
        page.check("#frontier-noisy")
    wait_js(page, "() => Chart.getChart(document.getElementById('frontier'))")
    assert asked[-1] == {"track": TRACK, "include_noisy": "true"}


# --- submit: sweeps with seeds and the frontier preset ----------------------------------------------


def test_sweep_form_sends_seeds_and_the_frontier_preset(vpage, server):
    page = vpage
    sent: list[dict] = []

    def sweeps(route):
        body = json.loads(route.request.post_data or "{}")
        sent.append(body)
        fulfil_json(route, {"id": 3, "name": body.get("name"), "count": 12, "jobs": []}, status=201)

    page.route("**/api/v1/sweeps", sweeps)
    goto(page, server, "submit?mode=sweep", "submit")
    page.fill("#sweep-seeds", "0, 1, x")
    page.click("#submit-btn")
    assert "not an integer: x" in page.locator("#sweep-seeds-err").inner_text()
    assert sent == []
    # a grid over a field, once per seed
    page.fill("#sweep-seeds", "0, 1, 2")
    assert re.search(r"9 jobs will be queued", page.locator("#sweep-count").inner_text())
    page.click("#submit-btn")
    page.wait_for_selector("#form-errors .alert.ok")
    assert sent[-1]["seeds"] == [0, 1, 2] and "preset" not in sent[-1]
    assert sent[-1]["grid"] == {"dynds.schedule.p": [0.3, 0.5, 0.7]}
    # the frontier preset: an empty grid, the baseline at 4 budgets per seed
    page.select_option("#sweep-preset", "frontier")
    assert page.locator("#sweep-rows").is_hidden()
    assert "12 baseline runs will be queued" in page.locator("#sweep-count").inner_text()
    page.evaluate("document.querySelector('#form-errors').innerHTML = ''")
    page.click("#submit-btn")
    page.wait_for_selector("#form-errors .alert.ok")
    assert sent[-1]["preset"] == "frontier" and sent[-1]["grid"] == {} and sent[-1]["seeds"] == [0, 1, 2]
    assert sent[-1]["base"]["train"]["epochs"] >= 1
    page.wait_for_selector("#predicted-saving")
    page.locator("#sweep-box").scroll_into_view_if_needed()
    no_sideways_scroll(page)
    shot(page, f"trust-submit-sweep-{page.size_name}", full_page=False)
