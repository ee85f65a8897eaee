"""The leaderboard's headline: what to use on each shown track (GET /recommendation), with its evidence one
click away; the page speaks only the public REST API, here answered by constructed bodies."""

from __future__ import annotations

from .conftest import fulfil_json, goto, no_sideways_scroll, shot
from .test_trust import TRACK, leaderboard_body

KEY = "9f8e7d6c5b@cpu · Intel Xeon · 2 threads"
HEADLINE = (
    "Nothing tested beats training the baseline for less time: of 2 conclusive settings, the closest "
    "(mixsize x0.5/0.75/1 p=0.2/0.3/0.5 | kernel full | in avg | bn frozen) is -0.5 pt against it "
    "(95 % interval -1.4 to +0.4 pt) over 3 seeds. Train the baseline for fewer epochs instead."
)


def recommendation_body() -> dict:
    return {
        "min_seeds": 3,
        "include_noisy": False,
        "recommendations": [
            {
                "track": TRACK, "track_key": KEY, "recipe_label": TRACK, "hardware_key": "cpu · Intel Xeon · 2 threads",
                "kind": "baseline_for_less_time", "headline": HEADLINE, "n_settings": 3, "n_conclusive": 2,
                "verdicts": {"beats_equal_time": 0, "loses_to_equal_time": 1, "tie": 1, "needs_seeds": 1, "no_equal_time": 0},
                "evidence": {
                    "setting_key": "mixsize x0.5/0.75/1 p=0.2/0.3/0.5 | kernel full | in avg | bn frozen",
                    "method": "Mix&Match (Hoffer et al. 2019)", "schedule_kind": "mixsize", "verdict": "tie",
                    "verdict_sentence": "Not conclusive: a tie.", "n_seeds": 3, "seeds": [0, 1, 2], "job_ids": [4, 5, 6],
                    "equal_time_gap_mean": -0.5, "equal_time_gap_ci95": [-1.4, 0.4], "time_saving_mean": 0.22,
                    "time_saving_ci95": [0.18, 0.26], "acc_delta_mean": -1.1, "acc_delta_ci95": [-1.9, -0.3],
                    "link": "#/leaderboard?track=" + TRACK.replace("/", "%2F"),
                },
            },
            {  # another track, not on the page: not shown
                "track": "other", "track_key": "other@x", "recipe_label": "other", "hardware_key": "x", "kind": "not_enough_evidence",
                "headline": "No setting has a conclusive verdict yet.", "evidence": None, "n_settings": 1, "n_conclusive": 0, "verdicts": {},
            },
        ],
    }  # fmt: skip


def test_the_leaderboard_leads_with_what_to_use_and_its_evidence(vpage, server):
    page = vpage
    board = leaderboard_body()
    board["tracks"][0]["track_key"] = KEY
    board["tracks"][0]["hardware_key"] = "cpu · Intel Xeon · 2 threads"
    page.route("**/api/v1/leaderboard*", lambda route: fulfil_json(route, board))
    page.route("**/api/v1/recommendation*", lambda route: fulfil_json(route, recommendation_body()))
    goto(page, server, "leaderboard", "leaderboard")
    box = page.locator("#lb-recommendation")
    items = box.locator("li")
    assert items.count() == 1
    text = items.nth(0).inner_text()
    assert "Nothing tested beats training the baseline for less time" in text
    assert "Mix&Match (Hoffer et al. 2019), 3 seeds" in text
    assert items.nth(0).get_attribute("data-kind") == "baseline_for_less_time"
    assert box.locator("a[href='#/jobs/4']").count() == 1
    assert box.locator("a", has_text="3 seeds").get_attribute("href").startswith("#/leaderboard?track=")
    no_sideways_scroll(page)
    shot(page, f"leaderboard-recommendation-{page.size_name}")


def test_setting_label_names_the_relatives_and_recalibration(page, server):
    goto(page, server, "jobs", "jobs")
    out = page.evaluate("""async () => { const { settingLabel } = await import('/static/js/setting.js');
        return ["progressive x0.5 delay=0.5 ft=0.2 +4px | kernel full | in avg | bn frozen",
                "mixsize x0.5/0.75/1 p=0.2/0.3/0.5 | kernel full | in bilinear | bn frozen | bn recal 50",
                "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen | bn recal 2"].map((k) => settingLabel(k)); }""")
    assert out == [
        "progressive resizing ×0.5→1 after 50 %, full for the last 20 % · full kernels · input resized",
        "Mix&Match sizes ×0.5/0.75/1 (p 0.2/0.3/0.5) · full kernels · input resized bilinear · BN recalibrated (50 batches)",
        "p=0.5 · 2×2 avg · input /2 · BN recalibrated (2 batches)",
    ]
