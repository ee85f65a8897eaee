"""dynds/client.py: following a job through its events, and what is retried (against scripted answers;
tests/dynds/test_service_commands.py runs it against a real server, a restart included)."""

from __future__ import annotations

import json

import httpx
import pytest

from dynds.client import NO_METRICS, ApiError, Client, Retry, Unreachable, sse_events

JOB = {"id": 7, "status": "queued", "progress": None}


def events(*pairs: tuple[str, dict]) -> bytes:
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in pairs)


class Script:
    """A transport answering each request with the next scripted answer (a Response, or an exception to raise)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, **retry) -> tuple[Client, list[float], list[str]]:
    slept: list[float] = []
    notes: list[str] = []
    api = Client(
        "http://dynds.test",
        "tok",
        retry=Retry(**retry) if retry else None,
        transport=httpx.MockTransport(script),
        note=notes.append,
        sleep=slept.append,
    )
    return api, slept, notes


def test_sse_events_are_parsed_and_heartbeats_skipped():
    lines = [": heartbeat", "", "event: status", 'data: {"a":', "data: 1}", "", "id: 3", "event: metric", "data: x", "", "event: end", "data: {}", ""]
    assert list(sse_events(lines)) == [("status", '{"a":\n1}'), ("metric", "x"), ("end", "{}")]


def test_a_submission_is_retried_through_refused_connections_with_one_idempotency_key():
    script = Script(
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(503, headers={"Retry-After": "3"}), httpx.Response(201, json=JOB)
    )
    api, slept, notes = client(script)
    assert api.submit({"train": {"epochs": 1}}) == JOB
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 4 and len(keys) == 1  # a retried POST cannot make a second job
    assert script.requests[0].headers["Authorization"] == "Bearer tok"
    assert slept == [0.5, 1.0, 3.0]  # doubling, and the 503's Retry-After honoured
    assert "ConnectError" in notes[0] and "503" in notes[2]


def test_an_error_that_retrying_cannot_change_is_raised_at_once():
    script = Script(httpx.Response(422, json={"detail": "1 invalid field", "errors": []}), httpx.Response(201, json=JOB))
    api, slept, _ = client(script)
    with pytest.raises(ApiError) as err:
        api.submit({})
    assert err.value.status_code == 422 and err.value.detail == "1 invalid field"
    assert len(script.requests) == 1 and slept == []


def test_the_server_staying_away_ends_in_unreachable():
    script = Script(*[httpx.ConnectError("refused")] * 1000)
    api, _, _ = client(script, retry_for_s=0.0)
    with pytest.raises(Unreachable, match="ConnectError"):
        api.job(7)
    assert len(script.requests) == 1


def test_following_reads_only_state_changes_and_reconnects_after_a_cut_stream():
    running = {**JOB, "status": "running", "progress": {"fraction": 0.5}}
    done = {**JOB, "status": "succeeded", "summary": {"time_saving": 0.3}, "result": {"pairing": "lockstep"}}
    script = Script(
        httpx.Response(200, content=events(("status", running))),  # the stream ends before `end`: a cut
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.Response(200, content=b": heartbeat\n\n" + events(("status", {**done, "result": None}), ("end", {"id": 7, "status": "succeeded"}))),
        httpx.Response(200, json=done),
    )
    api, slept, notes = client(script)
    seen = []
    assert api.follow(JOB, on_state=seen.append) == done
    assert [s["status"] for s in seen] == ["queued", "running", "succeeded"]
    streams = [r for r in script.requests if r.url.path.endswith("/events")]
    assert len(streams) == 3 and all(r.url.params["after"] == str(NO_METRICS) for r in streams)  # no metric replay
    assert script.requests[-1].url.path == "/api/v1/jobs/7"  # the result, read once at the end
    assert len(notes) == 2 and "closed before the job ended" in notes[0]
    assert slept == [0.5, 1.0]


def test_a_job_already_final_is_not_followed():
    done = {**JOB, "status": "failed", "error": "boom"}
    script = Script()
    api, _, _ = client(script)
    assert api.follow(done) == done and script.requests == []
