"""GET /jobs at scale: keyset pages (cursor) in every order, stable while jobs are added, NULLs last both ways;
offset for older clients in the same order; counts exact up to a bound, an estimate (said so) past it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import crud
from app.crud import queries

API = "/api/v1"
# (time_saving, acc_delta, equal_time_gap, verdict, hardware_key): ties and missing values on purpose.
FIGURES = [
    (0.30, -0.2, 1.0, "tie", "cpu-a"),
    (0.30, 0.1, None, "beats_equal_time", "cpu-b"),
    (None, None, None, None, None),
    (0.55, -1.5, 0.5, "needs_seeds", "cpu-a"),
    (0.12, 0.1, -0.3, "tie", None),
    (None, None, None, None, "cpu-b"),
    (0.70, -0.1, 2.0, "loses_to_equal_time", "cpu-a"),
    (0.12, -0.4, 0.5, None, "cpu-c"),
    (0.41, 0.0, 1.0, "tie", "cpu-a"),
    (0.05, 0.3, None, "beats_equal_time", None),
    (0.30, -0.2, 1.0, "tie", "cpu-b"),
]
STATUSES = ("succeeded", "failed", "queued", "succeeded", "running", "cancelled", "succeeded", "succeeded", "succeeded", "failed", "succeeded")


@pytest.fixture
def jobs(new_job, set_columns):
    """Eleven jobs in two tracks with figures, states, names and times that tie and go missing."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i, ((ts, ad, gap, verdict, hw), status) in enumerate(zip(FIGURES, STATUSES, strict=True)):
        job = new_job(name=f"job{(i * 7) % 11:02d}", train={"seed": i, "epochs": 2 + i % 2})
        done = status in ("succeeded", "failed", "cancelled")
        set_columns(
            job.id, status=status, active_hash=None, time_saving=ts, acc_delta=ad, equal_time_gap=gap, verdict=verdict, hardware_key=hw,
            created_at=t0 + timedelta(minutes=i % 5), finished_at=t0 + timedelta(hours=(i * 3) % 4) if done else None,
        )  # fmt: skip
        ids.append(job.id)
    return ids


def expected(client, ids: list[int], order: str) -> list[int]:
    """``ids`` in ``order`` as the API defines it: by the column (ties by id, same direction), NULLs last both ways."""
    rows = {j["id"]: j for j in client.get(f"{API}/jobs", params={"limit": 500, "order": "id"}).json()["data"] if j["id"] in ids}
    name, desc = order.lstrip("-"), order.startswith("-")

    figures = ("time_saving", "acc_delta", "equal_time_gap", "verdict")  # as stored (a failed job's summary is hidden)

    def value(j):
        return FIGURES[ids.index(j["id"])][figures.index(name)] if name in figures else j[name]

    present = sorted((i for i in ids if value(rows[i]) is not None), key=lambda i: (value(rows[i]), i), reverse=desc)
    return present + sorted((i for i in ids if value(rows[i]) is None), reverse=desc)


def walk(client, order: str, between=None, limit: int = 4, **params) -> list[int]:
    seen, cursor = [], None
    for n in range(1000):
        page = client.get(f"{API}/jobs", params={"order": order, "limit": limit, **params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [j["id"] for j in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        if between and n < 3:
            between()
    raise AssertionError("the cursor never ended")


def test_every_order_pages_by_cursor_without_gaps_or_repeats_while_jobs_are_added(client, jobs, new_job, set_columns):
    added: list[int] = []

    def add():  # a new job, newest and without figures, between the first pages
        added.append(new_job(name="zzlate", train={"seed": 1000 + len(added)}).id)

    for order in crud.JOB_ORDERS:
        want = expected(client, jobs, order)
        seen = walk(client, order, between=add)
        assert len(seen) == len(set(seen)), (order, seen)
        assert [i for i in seen if i in jobs] == want, order
    # Figures sort with NULLs last either way, under a filter too.
    seen = walk(client, "-time_saving", status="succeeded")
    assert seen == [i for i in expected(client, jobs, "-time_saving") if STATUSES[jobs.index(i)] == "succeeded"]


def test_figures_under_another_state_than_succeeded_order_by_id(client, jobs):
    # Only a succeeded job shows figures: under another state the figure order is the missing values' (by id).
    unfinished = sorted((i for i, st in zip(jobs, STATUSES, strict=True) if st in ("failed", "queued", "running", "cancelled")), reverse=True)
    for status in ("failed", "queued", "running", "cancelled"):
        want = [i for i in unfinished if STATUSES[jobs.index(i)] == status]
        assert walk(client, "-time_saving", limit=1, status=status) == want, status
        assert walk(client, "verdict", limit=1, status=status) == want[::-1], status


def test_offset_pages_keep_the_same_order(client, jobs):
    for order in ("-time_saving", "time_saving", "verdict", "-hardware_key", "-created_at", "id"):
        want = expected(client, jobs, order)
        pages = [client.get(f"{API}/jobs", params={"order": order, "limit": 4, "offset": off}).json()["data"] for off in (0, 4, 8)]
        assert [j["id"] for p in pages for j in p] == want, order


def test_bad_cursors_are_422_naming_the_field(client, jobs):
    first = client.get(f"{API}/jobs", params={"order": "-time_saving", "limit": 2}).json()
    assert first["next_cursor"] and first["count"] == len(jobs) and first["count_exact"] is True
    for params in (
        {"order": "name", "cursor": first["next_cursor"]},  # made for another order
        {"order": "-time_saving", "cursor": "not-a-cursor"},
        {"order": "-time_saving", "cursor": "W10"},  # base64 of [] : not a position
    ):
        r = client.get(f"{API}/jobs", params=params)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "cursor"], (params, r.text)
    r = client.get(f"{API}/jobs", params={"order": "-time_saving", "cursor": first["next_cursor"], "offset": 2})
    assert r.status_code == 422 and "offset" in r.text
    assert client.get(f"{API}/jobs", params={"order": "-nope"}).status_code == 422


def test_count_is_exact_up_to_the_bound_then_an_estimate_on_postgresql(client, jobs, monkeypatch, db_url):
    monkeypatch.setattr(queries, "JOBS_COUNT_EXACT_UP_TO", 4)
    body = client.get(f"{API}/jobs", params={"status": "failed"}).json()
    assert body["count"] == 2 and body["count_exact"] is True  # under the bound: counted
    body = client.get(f"{API}/jobs").json()
    if db_url.startswith("postgresql"):
        assert body["count_exact"] is False and body["count"] >= 5  # past it: the planner's figure, at least the bound
    else:
        assert body["count_exact"] is True and body["count"] == len(jobs)  # SQLite counts exactly
