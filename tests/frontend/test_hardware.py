"""Results keyed on the hardware they were measured on (issue 16), in a real browser against a live `dynds serve`.

The server's database is filled before it starts, through app.crud (submit, claim, finish: what a worker
does) with results measured on two machines: one recipe, two settings, three seeds each on a CPU and on a
GPU. One setting is worth it on the GPU and not on the CPU; the other ties on both. A job of another recipe
ran on a contended CPU of another thread count. The pages must keep the two machines apart everywhere:
two tracks with hardware badges, the by-hardware table putting one setting's two verdicts side by side,
the job page's Hardware block, the jobs list's hardware filter, and the compare page's tracks."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlparse

import pytest

from .conftest import SCREENSHOTS, LiveServer, goto, no_sideways_scroll, shot, wait_js

RECIPE = "resnet20/synthetic/e2-nall"
OTHER_RECIPE = "resnet20/synthetic/e3-nall"
P5 = "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
P3 = "stochastic p=0.3 | avg k2s1 sum | in/2 avg | bn frozen"
CONTENTION = "its training threads waited 38 % of their step time for a CPU (more than 10 %)"


def machines() -> dict:
    from dynds_core.hardware import make_hardware

    return {
        "cpu": make_hardware(device="cpu", model="Test CPU", threads=1, memory_bytes=25_276_203_008, torch="2.14.1"),
        "cuda": make_hardware(
            device="cuda", model="Test GPU", count=1, threads=1, memory_bytes=85_520_809_984, torch="2.14.1", cuda="13.0", cudnn="91002"
        ),
        "cpu2": make_hardware(device="cpu", model="Test CPU", threads=2, torch="2.14.1"),
    }


HW = machines()
CPU, GPU, BUSY = HW["cpu"].key, HW["cuda"].key, HW["cpu2"].key  # "cpu · Test CPU · 1 thread", "cuda · Test GPU · x1", ...


def result_of(spec, *, hardware, time_saving: float, gap: float, contention: str | None = None, interruptions=()):
    """A JobResult with a paired and an equal-time baseline, measured on ``hardware`` (as tests/app's make_result);
    ``interruptions``: (phase, {run: step}, lost_s) of each resumption from a checkpoint."""
    from dynds_core.result import Interruption, JobResult, RunResult

    cpu_share, wait_share = (0.61, 0.38) if contention else (0.97, 0.01)  # what the run's meters saw
    return JobResult(
        spec_hash=spec.spec_hash,
        spec=spec.canonical(),
        device=hardware.device,
        hardware=hardware,
        dynds=RunResult(
            run="dynds", final_val_acc=69.8, train_time_s=100.0 * (1 - time_saving), steps=100, cpu_share=cpu_share, wait_share=wait_share
        ),
        baseline=RunResult(run="baseline", final_val_acc=70.0, train_time_s=100.0, steps=100),
        equal_time=RunResult(run="equal_time", final_val_acc=69.8 - gap, steps=100),
        time_saving=time_saving,
        acc_delta=-0.2,
        equal_time_gap=gap,
        pairing="lockstep",
        contended=contention is not None,
        contention=contention,
        interruptions=[
            Interruption(checkpoint=f"ckpt-{i:06d}.dynds", phase=phase, steps=steps, saved_at=0.0, resumed_at=lost, lost_s=lost)
            for i, (phase, steps, lost) in enumerate(interruptions, 1)
        ],
    )


def seed_database(home) -> dict[str, list[int]]:
    """The jobs of the module, finished through app.crud; their ids by what they are."""
    from sqlmodel import Session

    from app import crud
    from app.core.db import init_db, make_engine
    from dynds_core.spec import JobSpec

    engine = make_engine(f"sqlite:///{home / 'dynds.db'}")
    init_db(engine)
    ids: dict[str, list[int]] = {}
    with Session(engine) as session:

        def finished(what: str, data: dict, stops: int = 0, **figures) -> None:
            spec = JobSpec.parse(data)
            job, _ = crud.submit_job(session=session, spec=spec, force=True)
            for n in range(1, stops + 1):  # a deploy stopped it (SIGTERM), and it was taken up again
                assert crud.claim_job(session=session, job_id=job.id, worker="test") is not None
                assert crud.requeue_job(session=session, job_id=job.id, attempt=n, keep_points=True)
            assert crud.claim_job(session=session, job_id=job.id, worker="test") is not None
            assert crud.finish_job(session=session, job_id=job.id, result=result_of(spec, **figures))
            ids.setdefault(what, []).append(job.id)

        for seed in range(3):
            p5 = {"train": {"seed": seed}}
            p3 = {"train": {"seed": seed}, "dynds": {"schedule": {"kind": "stochastic", "p": 0.3}}}
            # p=0.5: worth it on the GPU (the gap above 0 on every seed), not on the CPU
            finished("p5-cpu", {"name": f"p5-cpu-{seed}", **p5}, hardware=HW["cpu"], time_saving=0.12, gap=(-2.0, -2.5, -3.0)[seed])
            finished("p5-gpu", {"name": f"p5-gpu-{seed}", **p5}, hardware=HW["cuda"], time_saving=0.41, gap=(1.0, 1.2, 1.1)[seed])
            # p=0.3: a tie on both
            finished("p3-cpu", {"name": f"p3-cpu-{seed}", **p3}, hardware=HW["cpu"], time_saving=0.08, gap=(0.1, -0.2, 0.05)[seed])
            finished("p3-gpu", {"name": f"p3-gpu-{seed}", **p3}, hardware=HW["cuda"], time_saving=0.25, gap=(0.2, -0.1, 0.0)[seed])
        finished("busy", {"name": "busy", "train": {"epochs": 3}}, hardware=HW["cpu2"], time_saving=0.5, gap=0.3, contention=CONTENTION,
            interruptions=[("lockstep", {"baseline": 60, "dynds": 60}, 42.5)], stops=1,
        )  # fmt: skip
    engine.dispose()
    return ids


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, chromium):
    home = tmp_path_factory.mktemp("dynds-ui-hardware")
    (home / "data").mkdir()
    ids = seed_database(home)
    srv = LiveServer(home).start()
    srv.ids = ids
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server(seeded):
    """conftest's page fixtures open this module's server: the one with jobs on two machines."""
    return seeded


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


# --- leaderboard ---------------------------------------------------------------------------------------


def test_one_recipe_on_two_machines_is_two_tracks_with_hardware_badges(vpage, server):
    page = vpage
    goto(page, server, "leaderboard", "leaderboard")
    tracks = page.locator("#lb-body section[data-track]")
    by_hw = {tracks.nth(i).get_attribute("data-hardware"): tracks.nth(i) for i in range(tracks.count())}
    assert set(by_hw) == {CPU, GPU, BUSY}
    for key in (CPU, GPU):
        heading = by_hw[key].locator("h2")
        assert heading.locator(".track-recipe").inner_text() == RECIPE  # the recipe and the hardware, apart
        assert heading.locator(".badge.hw").inner_text() == f"on {key}"
        assert by_hw[key].get_attribute("data-track") == f"{RECIPE} on {key}"
    # never one pooled cell: each track has its own p=0.5 cell with its own jobs and verdict
    cpu_row = by_hw[CPU].locator(f"tr[data-setting='{P5}']")
    gpu_row = by_hw[GPU].locator(f"tr[data-setting='{P5}']")
    assert cpu_row.locator(".verdict").inner_text() == "not worth it" and gpu_row.locator(".verdict").inner_text() == "worth it"
    assert {a.get_attribute("href") for a in gpu_row.locator("a[href^='#/jobs/']").all()} == {f"#/jobs/{i}" for i in server.ids["p5-gpu"]}
    # the track select groups the tracks by hardware
    groups = page.eval_on_selector_all("#lb-track optgroup", "gs => gs.map(g => [g.label, [...g.querySelectorAll('option')].map(o => o.value)])")
    assert dict(groups) == {f"on {CPU}": [f"{RECIPE} on {CPU}"], f"on {BUSY}": [f"{OTHER_RECIPE} on {BUSY}"], f"on {GPU}": [f"{RECIPE} on {GPU}"]}
    # choosing one shows that track alone, its heading still naming its hardware
    with page.expect_request(lambda r: "/api/v1/leaderboard?" in r.url and query_of(r.url).get("track") == f"{RECIPE} on {GPU}"):
        page.select_option("#lb-track", f"{RECIPE} on {GPU}")
    wait_js(page, "() => document.querySelectorAll('#lb-body section[data-track]').length === 1")
    assert page.locator("#lb-body section[data-track] h2 .badge.hw").inner_text() == f"on {GPU}"
    no_sideways_scroll(page)


def test_by_hardware_table_puts_one_settings_two_verdicts_side_by_side(vpage, server):
    page = vpage
    goto(page, server, "leaderboard", "leaderboard")
    table = page.locator("#lb-hardware section.hw-compare")
    assert table.count() == 1  # only the recipe measured on two machines; the contended one ran on one
    assert table.get_attribute("data-recipe") == RECIPE
    assert [h.strip() for h in table.locator("thead th").all_text_contents()] == ["Setting", CPU, GPU]  # one column per machine
    differ = table.locator(f"tbody tr[data-setting='{P5}']")
    assert "hw-differ" in differ.get_attribute("class")
    cpu_cell, gpu_cell = differ.locator(f"td[data-hardware='{CPU}']"), differ.locator(f"td[data-hardware='{GPU}']")
    assert cpu_cell.get_attribute("data-verdict") == "loses_to_equal_time" and cpu_cell.locator(".verdict").inner_text() == "not worth it"
    assert gpu_cell.get_attribute("data-verdict") == "beats_equal_time" and gpu_cell.locator(".verdict").inner_text() == "worth it"
    # the means with their intervals, per machine
    assert "12 % [12, 12]" in cpu_cell.inner_text() and "−2.5 pt [" in cpu_cell.inner_text() and "3 seeds" in cpu_cell.inner_text()
    assert "41 % [41, 41]" in gpu_cell.inner_text() and "+1.1 pt [" in gpu_cell.inner_text()
    note = differ.locator(".hw-differ-note").inner_text()
    assert f"worth it on {GPU}" in note and f"not worth it on {CPU}" in note
    # the verdict's sentence opens on click (phones have no hover)
    gpu_cell.locator(".verdict-details summary").click()
    assert gpu_cell.locator(".verdict-text").inner_text().startswith("Worth it")
    # a setting with one verdict on both machines is not marked
    agree = table.locator(f"tbody tr[data-setting='{P3}']")
    assert "hw-differ" not in (agree.get_attribute("class") or "")
    assert agree.locator(".verdict").all_inner_texts() == ["tie", "tie"] and agree.locator(".hw-differ-note").count() == 0
    assert "1 of 2 settings" in table.inner_text()
    # each cell links to its machine's own track
    href = gpu_cell.locator(".hw-seeds a").get_attribute("href")
    assert href.startswith("#/leaderboard?") and query_of(href.split("?", 1)[1] and "?" + href.split("?", 1)[1])["track"] == f"{RECIPE} on {GPU}"
    no_sideways_scroll(page)
    table.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    table.screenshot(path=str(SCREENSHOTS / f"leaderboard-by-hardware-{page.size_name}.png"))
    shot(page, f"leaderboard-hardware-{page.size_name}")
    # One track's page asks for its recipe's table only (the whole one is built from every track's board)
    with page.expect_request(lambda r: "/api/v1/leaderboard/hardware" in r.url) as asked:
        goto(page, server, f"leaderboard?track={quote(f'{RECIPE} on {GPU}', safe='')}", "leaderboard")
    assert query_of(asked.value.url)["track"] == f"{RECIPE} on {GPU}"
    one = page.locator("#lb-hardware section.hw-compare")
    assert one.count() == 1 and one.get_attribute("data-recipe") == RECIPE
    assert one.locator(f"tbody tr[data-setting='{P5}'] td[data-hardware='{CPU}']").get_attribute("data-verdict") == "loses_to_equal_time"


# --- job page -------------------------------------------------------------------------------------------


def test_job_page_shows_the_hardware_block(vpage, server):
    page = vpage
    job_id = server.ids["p5-gpu"][0]
    goto(page, server, f"jobs/{job_id}", "job")
    assert page.locator("#job-head .badge.hw").inner_text() == GPU
    link = page.locator("#job-head a[href^='#/leaderboard']").get_attribute("href")
    assert query_of("?" + link.split("?", 1)[1])["track"].endswith(f"@{GPU}")  # the track key: this recipe on this machine
    block = page.locator("#job-hardware")
    rows = dict(
        zip(
            [t.strip() for t in block.locator("dl#hardware-list > dt").all_inner_texts()],
            [t.strip() for t in block.locator("dl#hardware-list > dd").all_inner_texts()],
            strict=True,
        )
    )
    assert rows["key"] == GPU and rows["device"] == "cuda" and rows["model"] == "Test GPU" and rows["count"] == "1"
    assert rows["torch threads"] == "1" and rows["memory (per device)"] == "79.6 GiB"
    assert rows["torch"] == "2.14.1" and rows["CUDA"] == "13.0" and rows["cuDNN"] == "91002"
    assert rows["to itself?"].startswith("yes")
    assert page.locator("#job-head .badge.contended").count() == 0
    assert page.locator("#contention").inner_text().startswith("Hardware to itself")
    no_sideways_scroll(page)
    shot(page, f"job-hardware-{page.size_name}")


def test_job_page_flags_contended_hardware_with_its_reason(vpage, server):
    page = vpage
    (job_id,) = server.ids["busy"]
    goto(page, server, f"jobs/{job_id}", "job")
    assert page.locator("#job-head .badge.contended").inner_text().strip() == "contended"
    assert page.locator("#job-head .badge.hw").inner_text() == BUSY
    line = page.locator("#contention").inner_text()
    assert "did not have its hardware to itself" in line and CONTENTION in line
    block = page.locator("#job-hardware").inner_text()
    assert CONTENTION in page.locator("#hardware-contention").inner_text() and "2" in block
    assert "61 % of its CPU time · 38 % waiting for a CPU" in block  # what the DynDS run's meters saw
    # It was resumed once from a checkpoint: where each run took up again, and the time that cost.
    (resumed,) = page.locator("#resumptions li").all_inner_texts()
    assert "Baseline from step 60" in resumed and "DynDS from step 60" in resumed and "42.5 s lost" in resumed and "lockstep" in resumed
    assert page.locator("#attempts").inner_text() == "2 (1 stopped by a shutdown, resumed)"  # two runs, one stopped by a deploy
    shot(page, f"job-contended-{page.size_name}")


def test_a_job_never_interrupted_lists_no_resumption(page, server):
    goto(page, server, f"jobs/{server.ids['p5-gpu'][0]}", "job")
    assert page.locator("#resumptions").count() == 0 and page.locator("#attempts").inner_text() == "1"


# --- jobs list ------------------------------------------------------------------------------------------


def test_jobs_list_shows_each_jobs_hardware_and_filters_by_it(page, server):
    boards: list[str] = []
    page.on("request", lambda r: boards.append(r.url.split("/api/v1")[1]) if "/api/v1/leaderboard" in r.url else None)
    goto(page, server, "jobs", "jobs")
    rows = page.locator("#jobs-table tbody tr")
    assert rows.count() == 13
    for i in range(rows.count()):
        assert rows.nth(i).locator("td.c-track .c-hw .badge.hw").inner_text() == rows.nth(i).get_attribute("data-hardware")
    busy = page.locator(f"#jobs-table tr[data-job='{server.ids['busy'][0]}']")
    assert busy.locator(".badge.contended").count() == 1 and "noisy-row" in busy.get_attribute("class")
    assert page.locator(f"#jobs-table tr[data-job='{server.ids['p5-gpu'][0]}'] .badge.contended").count() == 0
    # the filter offers the machines results were measured on, and asks the API for one
    page.wait_for_selector(f"#f-hw option[value='{BUSY}']", state="attached")
    assert set(page.eval_on_selector_all("#f-hw option", "os => os.map(o => o.value)")) == {"", CPU, GPU, BUSY}
    # from the tracks list, not the full leaderboard (megabytes at a large deployment)
    assert boards == ["/leaderboard/tracks"]
    with page.expect_request(lambda r: "/api/v1/jobs?" in r.url and query_of(r.url).get("hardware_key") == GPU):
        page.select_option("#f-hw", GPU)
    wait_js(page, "() => location.hash.includes('hardware_key=')")
    wait_js(page, "() => document.querySelectorAll('#jobs-table tbody tr').length === 6")
    assert set(page.eval_on_selector_all("#jobs-table tbody tr", "rs => rs.map(r => r.dataset.hardware)")) == {GPU}
    shot(page, "jobs-hardware-filter")
    # a link with the key in it opens filtered, the key chosen in the select
    goto(page, server, f"jobs?hardware_key={BUSY.replace(' ', '%20')}", "jobs")
    wait_js(page, "() => document.querySelectorAll('#jobs-table tbody tr').length === 1")
    assert page.locator("#f-hw").input_value() == BUSY
    assert page.locator("#jobs-table tbody tr").get_attribute("data-job") == str(server.ids["busy"][0])


# --- compare --------------------------------------------------------------------------------------------


def test_compare_never_puts_two_machines_in_one_frontier(page, server):
    asked: list[dict] = []
    page.on("request", lambda r: asked.append(query_of(r.url)) if "/api/v1/frontier" in r.url else None)
    goto(page, server, "compare", "compare")
    groups = dict(page.eval_on_selector_all("#track optgroup", "gs => gs.map(g => [g.label, [...g.querySelectorAll('option')].map(o => o.value)])"))
    assert groups[f"on {CPU}"] == [f"{RECIPE} on {CPU}"] and groups[f"on {GPU}"] == [f"{RECIPE} on {GPU}"]
    assert CPU in page.locator("#scatter-note").inner_text() and GPU in page.locator("#scatter-note").inner_text()
    # one machine's track: its runs only, the frontier asked for by the track key (recipe @ hardware)
    page.select_option("#track", f"{RECIPE} on {GPU}")
    wait_js(page, "() => Chart.getChart(document.getElementById('frontier')) || document.querySelector('#frontier-msg .alert')")
    ids = page.evaluate(
        """() => Chart.getChart(document.getElementById('scatter')).data.datasets
                 .filter(d => d.type === 'scatter').flatMap(d => d.data.map(p => p.row.id))"""
    )
    assert sorted(ids) == sorted(server.ids["p5-gpu"] + server.ids["p3-gpu"])
    pareto = page.evaluate(
        """() => Chart.getChart(document.getElementById('scatter')).data.datasets
                 .filter(d => d.label.startsWith('Pareto')).flatMap(d => d.data.map(p => p.row.hardware_key))"""
    )
    assert pareto and set(pareto) == {GPU}
    assert asked and asked[-1]["track"].endswith(f"@{GPU}")
    # the recipe alone names two machines: no front, no frontier, a choice between them
    goto(page, server, "jobs", "jobs")
    goto(page, server, f"compare?track={RECIPE}", "compare")
    assert "2 hardware keys" in page.locator("#frontier-msg").inner_text()
    assert page.locator("#frontier-msg a").count() == 2
    labels = page.evaluate("() => Chart.getChart(document.getElementById('scatter')).data.datasets.map(d => d.label)")
    assert not any(label.startswith("Pareto") for label in labels), labels
    shot(page, "compare-hardware-choice")


def test_compare_opened_on_a_track_asks_for_its_frontier_while_it_draws_the_runs(page, server):
    """Opened with a track in the URL, the page asks for the frontier once the export has come and before it draws
    the scatter (the server builds one while the browser draws the other, instead of building both at once or
    the frontier only after the drawing), once; the export carries only the columns the page reads; and one
    hardware key draws every point in one style (a per-point array makes Chart.js resolve 25,000 points'
    options one by one)."""
    # When each chart is made: Chart, wrapped as the page's script defines it.
    page.add_init_script(
        """(() => { let C; Object.defineProperty(window, "Chart", { configurable: true, get: () => C,
             set: (v) => { C = new Proxy(v, { construct(t, args) {
               (window.__madeAt = window.__madeAt || {})[args[0].id] = performance.now(); return Reflect.construct(t, args); } }); } }); })()"""
    )
    exports: list[dict] = []
    page.on("request", lambda r: exports.append(query_of(r.url)) if "/api/v1/export" in r.url else None)
    goto(page, server, f"compare?track={quote(f'{RECIPE} on {GPU}', safe='')}", "compare")
    wait_js(page, "() => Chart.getChart(document.getElementById('frontier')) || document.querySelector('#frontier-msg .alert')")
    timing = page.evaluate(
        """() => { const e = (p) => performance.getEntriesByType('resource').filter(r => r.name.includes(p));
                   return { export: e('/api/v1/export').map(r => r.responseEnd), frontier: e('/api/v1/frontier').map(r => r.startTime),
                            scatter: window.__madeAt.scatter }; }"""
    )
    assert len(timing["export"]) == 1 and len(timing["frontier"]) == 1, timing
    assert timing["export"][0] <= timing["frontier"][0] <= timing["scatter"], timing
    assert exports and set(exports[-1]["columns"].split(",")) >= {"id", "time_saving", "acc_delta", "hardware_key", "setting_key"}
    assert "equal_time_acc" not in exports[-1]["columns"]
    styles = page.evaluate(
        "() => Chart.getChart(document.getElementById('scatter')).data.datasets.filter(d => d.type === 'scatter').map(d => d.pointStyle)"
    )
    assert styles and all(s == "circle" for s in styles), styles
    tip = page.evaluate(
        """() => { const c = Chart.getChart(document.getElementById('scatter'));
                   return c.options.plugins.tooltip.callbacks.label({raw: c.data.datasets[0].data[0]}); }"""
    )
    assert any(line.startswith("seed ") for line in tip) and any("time saving" in line for line in tip), tip


def test_compare_past_the_export_limit_loads_one_tracks_runs_at_a_time(page, server):
    """A large deployment (the tracks list counts more jobs than the page loads at once): no export of every
    job; a choice of track first, then that track's export (by its key), redrawn from the server per track."""
    import json as _json

    from .conftest import fulfil_json

    def many(route):
        body = _json.loads(route.fetch().text())
        for t in body["tracks"]:
            t["n_jobs"] = 400_000  # what the page reads to decide
        fulfil_json(route, body)

    page.route("**/api/v1/leaderboard/tracks", many)
    exports: list[dict] = []
    page.on("request", lambda r: exports.append(query_of(r.url)) if "/api/v1/export" in r.url else None)
    goto(page, server, "compare", "compare")
    assert exports == []
    assert "choose a track" in page.locator("#scatter-msg").inner_text()
    assert f"{RECIPE} on {GPU} (400,000)" in page.locator("#track").inner_text()
    page.select_option("#track", f"{RECIPE} on {GPU}")
    wait_js(page, "() => Chart.getChart(document.getElementById('scatter'))")
    assert exports and exports[-1]["track"].endswith(f"@{GPU}")
    ids = page.evaluate(
        """() => Chart.getChart(document.getElementById('scatter')).data.datasets
                 .filter(d => d.type === 'scatter').flatMap(d => d.data.map(p => p.row.id))"""
    )
    assert sorted(ids) == sorted(server.ids["p5-gpu"] + server.ids["p3-gpu"])


def test_leaderboard_past_the_track_limit_asks_for_a_track_before_any_board(page, server):
    """Many tracks (a million jobs made 512): the page reads the tracks list, offers them, and loads no board
    until one is chosen; then that track's board only."""
    import json as _json

    from .conftest import fulfil_json

    def many(route):
        body = _json.loads(route.fetch().text())
        real = body["tracks"]
        fake = [{**real[0], "track": f"zz/fake{i:02d} on {CPU}", "track_key": f"fake{i:02d}@{CPU}", "n_jobs": 7} for i in range(41)]
        fulfil_json(route, {"tracks": real + fake})

    page.route("**/api/v1/leaderboard/tracks", many)
    boards: list[str] = []
    page.on("request", lambda r: boards.append(r.url.split("/api/v1")[1]) if "/api/v1/leaderboard" in r.url else None)
    goto(page, server, "leaderboard", "leaderboard")
    assert boards == ["/leaderboard/tracks"]
    assert "tracks: choose one" in page.locator("#lb-body").inner_text()
    assert page.locator("#lb-track option").count() > 41
    with page.expect_request(lambda r: "/api/v1/leaderboard?" in r.url and query_of(r.url).get("track") == f"{RECIPE} on {GPU}"):
        page.select_option("#lb-track", f"{RECIPE} on {GPU}")
    wait_js(page, "() => document.querySelectorAll('#lb-body table').length === 1")
    assert not any(b.startswith("/leaderboard?") and "track=" not in b for b in boards)
