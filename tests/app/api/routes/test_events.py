"""GET /jobs/{id}/events under load: paged replay and resume, back-pressure, the stream cap, and a
server that keeps answering while every event-stream database slot is taken (see app/api/sse.py)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app import crud
from app.api import sse
from app.main import create_app
from app.models import MetricPoint
from dynds_core.spec import JobSpec

API = "/api/v1"
VALUES = {"loss": 2.0, "acc": 10.0, "lr": 0.1, "batch_type": "reduced"}


def running_job(session, n_points: int) -> int:
    """A running job with ``n_points`` step points (steps 0..n-1), bulk-inserted."""
    job, _ = crud.submit_job(session=session, spec=JobSpec.parse({}), force=True)
    assert crud.claim_job(session=session, job_id=job.id, worker="test") is not None
    rows = [
        {"job_id": job.id, "run": "dynds", "kind": "step", "step": i, "epoch": i // 100, "train_time_s": 0.01 * i, "values": VALUES}
        for i in range(n_points)
    ]
    for k in range(0, n_points, 20_000):
        session.execute(insert(MetricPoint), rows[k : k + 20_000])
    session.commit()
    return job.id


def parse(text: str) -> list[tuple[str | None, str | None, dict]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append((fields.get("event"), fields.get("id"), json.loads(fields["data"])))
    return events


@pytest.fixture
def paged(settings):
    return settings.model_copy(update={"events_page_points": 7})


def test_the_history_is_replayed_whole_and_in_order_across_pages_and_resumes_after_last_event_id(paged, session, dispatcher, result_for):
    job_id = running_job(session, 50)
    crud.finish_job(session=session, job_id=job_id, result=result_for(JobSpec.parse({})))
    app = create_app(paged, dispatcher=dispatcher)
    with TestClient(app) as c:
        events = parse(c.get(f"{API}/jobs/{job_id}/events").text)
        assert app.state.event_streams.pages_read >= 50 // 7  # read in pages of 7, not in one go
        kinds = [e for e, _, _ in events]
        assert kinds[0] == "status" and kinds[-1] == "end" and kinds.count("metric") == 50
        assert [d["status"] for e, _, d in events if e == "status"] == ["succeeded"]
        assert [d["step"] for e, _, d in events if e == "metric"] == list(range(50))
        ids = [int(i) for e, i, _ in events if e == "metric"]
        assert ids == sorted(set(ids)) and all(int(i) == d["id"] for e, i, d in events if e == "metric")
        assert events[-1][2] == {"id": job_id, "status": "succeeded"}

        resumed = parse(c.get(f"{API}/jobs/{job_id}/events", headers={"Last-Event-ID": str(ids[20])}).text)
        assert [d["step"] for e, _, d in resumed if e == "metric"] == list(range(21, 50))
        assert resumed[-1][0] == "end"
        assert c.get(f"{API}/jobs/{job_id}/events", params={"after": ids[-1]}).text.count("event: metric") == 0
        assert c.get(f"{API}/jobs/987654/events").status_code == 404
        assert app.state.event_streams.active == 0


def test_concurrent_replays_of_one_history_share_its_pages_and_each_gets_all_of_it(paged, session, dispatcher, result_for):
    app = create_app(paged, dispatcher=dispatcher)
    with _serve(app) as base:
        job_id = running_job(session, 300)
        crud.finish_job(session=session, job_id=job_id, result=result_for(JobSpec.parse({})))
        texts: list[str] = []
        threads = [threading.Thread(target=lambda: texts.append(httpx.get(f"{base}{API}/jobs/{job_id}/events", timeout=30).text)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(texts) == 6
        for text in texts:
            events = parse(text)
            assert [d["step"] for e, _, d in events if e == "metric"] == list(range(300)) and events[-1][0] == "end"
        streams = app.state.event_streams
        assert streams.cache_hits > 0 and streams.pages_read < 6 * (300 // 7)
        _wait_for(lambda: streams.active == 0)
        assert not streams._cache and not streams._inflight  # emptied once no stream is open


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_client_that_stops_reading_stops_its_stream_reading_the_history(settings, session, dispatcher):
    """Back-pressure: with a reader that takes nothing, the server reads a few pages (what fills the
    socket buffers) and then waits; it does not read the whole history into memory."""
    import uvicorn

    n_points, page = 60_000, 100
    app = create_app(settings.model_copy(update={"events_page_points": page}), dispatcher=dispatcher)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        job_id = running_job(session, n_points)  # about 12 MB of events; made after start-up's recovery
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {API}/jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        streams = _wait_for(lambda: getattr(app.state, "event_streams", None))
        seen, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and time.monotonic() - stable_since < 1.0:
            time.sleep(0.05)
            if streams.pages_read != seen:
                seen, stable_since = streams.pages_read, time.monotonic()
        assert time.monotonic() - stable_since >= 1.0, f"the stream kept reading ({streams.pages_read} pages) from a client that reads nothing"
        assert streams.pages_read * page < n_points / 2, f"{streams.pages_read} pages read for a client that read nothing"

        # Once the client reads, the stream goes on from where it waited, to the last point.
        sock.settimeout(10)
        chunks, count, tail = [], 0, b""
        while count < n_points:
            chunk = sock.recv(1 << 20)
            assert chunk, "the server closed the stream early"
            count += (tail + chunk).count(b"event: metric") - tail.count(b"event: metric")
            tail = (tail + chunk)[-64:]
            chunks.append(chunk)
        received = b"".join(chunks)
        last = received.rsplit(b"event: metric\ndata: ", 1)[1].split(b"\n", 1)[0]
        assert json.loads(last)["step"] == n_points - 1
        sock.close()
        _wait_for(lambda: streams.active == 0)
    finally:
        server.should_exit = True
        thread.join(10)


def test_streams_over_the_cap_get_503_with_retry_after_and_a_closed_stream_frees_its_slot(settings, session, dispatcher):
    app = create_app(settings.model_copy(update={"events_max_streams": 2, "events_retry_after_s": 7}), dispatcher=dispatcher)
    with _serve(app) as base, httpx.Client(base_url=base, timeout=10) as c:
        job_id = running_job(session, 3)  # after start-up, whose recovery fails jobs left running
        url = f"{API}/jobs/{job_id}/events"
        with c.stream("GET", url) as a, c.stream("GET", url) as b:
            assert a.status_code == b.status_code == 200
            over = c.get(url)
            assert over.status_code == 503 and over.headers["Retry-After"] == "7"
            assert "too many event streams" in over.json()["detail"]
            assert c.get("/healthz").status_code == 200
        streams = app.state.event_streams
        _wait_for(lambda: streams.active == 0)
        with c.stream("GET", url) as again:
            assert again.status_code == 200
            assert next(again.iter_lines()).startswith("event: status")


def test_healthz_readyz_and_other_requests_answer_while_every_stream_read_is_blocked(settings, session, dispatcher, monkeypatch):
    """More blocked stream reads than the default thread pool has threads (40): the streams wait on
    their own limiter, and /healthz, /readyz and an ordinary sync route answer at once."""
    n_streams = 45
    app = create_app(settings.model_copy(update={"events_max_streams": 100}), dispatcher=dispatcher)
    gate, started = threading.Event(), threading.Semaphore(0)
    real_read = sse.read_page

    def blocked_read(*args, **kw):
        started.release()
        gate.wait(30)
        return real_read(*args, **kw)

    monkeypatch.setattr(sse, "read_page", blocked_read)
    with _serve(app) as base:
        job_id = running_job(session, 3)
        openers = [threading.Thread(target=_open_and_close, args=(f"{base}{API}/jobs/{job_id}/events",), daemon=True) for _ in range(n_streams)]
        try:
            for t in openers:
                t.start()
            assert started.acquire(timeout=10), "no stream read started"
            streams = _wait_for(lambda: getattr(app.state, "event_streams", None))
            _wait_for(lambda: streams.active == n_streams)
            time.sleep(0.2)
            assert streams.limiter.borrowed_tokens == settings.events_db_threads  # every slot is taken
            with httpx.Client(base_url=base, timeout=5) as c:
                for path in ("/healthz", "/readyz", f"{API}/jobs/{job_id}", "/healthz"):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    took = time.perf_counter() - t0
                    assert r.status_code == 200 and took < 1.0, f"{path}: {r.status_code} in {took:.2f} s"
        finally:
            gate.set()
            for t in openers:
                t.join(20)


# ---------------------------------------------------------------- helpers


def _open_and_close(url: str) -> None:
    try:
        with httpx.stream("GET", url, timeout=30) as r:
            next(r.iter_lines(), None)
    except httpx.HTTPError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_started(server, thread) -> None:
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)


def _wait_for(cond, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class _serve:
    """``with _serve(app) as base_url``: the app under a real uvicorn in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        _wait_started(self.server, self.thread)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
