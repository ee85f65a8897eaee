"""Hostile and careless input (issue 10), on SQLite and PostgreSQL: never a 500, always a problem body.

Integers past 64 bits in ids, offsets, cursors and Last-Event-ID; NaN/Infinity bodies; NUL bytes;
non-ASCII digit keys; deep nesting; a bare spec, unknown keys, a missing spec; auth before
validation; security headers; the request id of an unexpected error; the OpenAPI's documentation.
"""

from __future__ import annotations

import time

import pytest

from app import crud
from app.api.errors import PROBLEM_BASE
from app.security import create_token, revoke_token

API = "/api/v1"
BIG = 2**64  # past every 64-bit column
INT64_MAX = 2**63 - 1


def problem(r, status: int, slug: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == PROBLEM_BASE + slug and body["status"] == status and body["title"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return body


def locs(r) -> list[list]:
    return [e["loc"] for e in problem(r, 422, "validation")["errors"]]


def post_raw(client, path: str, text: str, **kw):
    return client.post(API + path, content=text.encode(), headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)


# ---------------------------------------------------------------- integers past their range


@pytest.mark.parametrize(
    "url,loc",
    [
        (f"/jobs?offset={BIG}", ["query", "offset"]),
        ("/jobs?offset=-1", ["query", "offset"]),
        (f"/jobs/{BIG}", ["path", "job_id"]),
        ("/jobs/-3", ["path", "job_id"]),
        (f"/jobs/{BIG}/metrics", ["path", "job_id"]),
        (f"/jobs/1/metrics?after={BIG}", ["query", "after"]),
        ("/jobs/1/metrics?after=-1", ["query", "after"]),
        (f"/jobs/1/events?after={BIG}", ["query", "after"]),
        (f"/jobs/{BIG}/events", ["path", "job_id"]),
        (f"/sweeps/{BIG}", ["path", "sweep_id"]),
        (f"/sweeps/{10**40}", ["path", "sweep_id"]),
    ],
)
def test_integers_past_64_bits_are_422(client, url, loc):
    assert locs(client.get(API + url)) == [loc]


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_write_ids_past_64_bits_are_422(client, action):
    assert locs(client.post(f"{API}/jobs/{BIG}/{action}")) == [["path", "job_id"]]


@pytest.mark.parametrize("job_id", [2**31, INT64_MAX])  # past PostgreSQL's INTEGER id column, and the largest accepted
def test_ids_in_64_bits_that_name_nothing_are_404(client, job_id):
    for url in (f"/jobs/{job_id}", f"/jobs/{job_id}/metrics", f"/jobs/{job_id}/events", f"/sweeps/{job_id}"):
        problem(client.get(API + url), 404, "not-found")
    for action in ("cancel", "retry"):
        problem(client.post(f"{API}/jobs/{job_id}/{action}"), 404, "not-found")


def test_the_largest_64_bit_id_is_a_404(client):
    problem(client.get(f"{API}/jobs/{INT64_MAX}"), 404, "not-found")
    problem(client.get(f"{API}/jobs/{INT64_MAX}/metrics?after={INT64_MAX}"), 404, "not-found")
    problem(client.get(f"{API}/sweeps/{INT64_MAX}"), 404, "not-found")
    assert client.get(f"{API}/jobs?offset={INT64_MAX}").json()["data"] == []


def test_last_event_id_past_64_bits_is_422(client):
    job = client.post(f"{API}/jobs", json={"spec": {"defaults": True}}).json()
    for value in (str(BIG), "-1", "abc"):
        r = client.get(f"{API}/jobs/{job['id']}/events", headers={"Last-Event-ID": value})
        assert locs(r) == [["header", "last-event-id"]], value


# ---------------------------------------------------------------- bodies: non-finite numbers, NUL, surrogates, depth


@pytest.mark.parametrize("path", ["/jobs", "/sweeps", "/specs/validate"])
@pytest.mark.parametrize(
    "text",
    [
        '{"spec": NaN}',
        '{"spec": {"train": {"lr": Infinity}}}',
        '{"base": {"train": {"lr": -Infinity}}}',
        '{"spec": {"train": {"lr": 1e400}}}',
        '{"force": NaN}',
    ],
)
def test_non_finite_numbers_are_422(client, dispatcher, path, text):
    body = problem(post_raw(client, path, text), 422, "validation")
    assert body["errors"][0]["loc"][0] == "body" and "finite" in body["errors"][0]["msg"]
    assert dispatcher.job_ids == []


def test_integers_past_64_bits_in_a_body_are_422(client):
    assert locs(post_raw(client, "/jobs", f'{{"spec": {{"train": {{"seed": {BIG}}}}}}}')) == [["body", "spec", "train", "seed"]]
    assert locs(post_raw(client, "/jobs", '{"spec": {"train": {"seed": %s}}}' % ("9" * 5000))) == [["body"]]


@pytest.mark.parametrize(
    "path,body,loc",
    [
        ("/sweeps", {"name": "nul\x00name", "base": {"defaults": True}}, ["body", "name"]),
        ("/jobs", {"spec": {"name": "a\x00b"}}, ["body", "spec", "name"]),
        ("/jobs", {"spec": {"data": {"root": "/data\x00/x"}}}, ["body", "spec", "data", "root"]),
        ("/sweeps", {"base": {}, "grid": {"train.seed": ["\x00"]}}, ["body", "grid", "train.seed", 0]),
        ("/sweeps", {"base": {}, "grid": {"train\x00seed": [1]}}, ["body", "grid"]),
    ],
)
def test_nul_bytes_in_body_strings_are_422(client, dispatcher, path, body, loc):
    r = client.post(API + path, json=body)
    assert locs(r) == [loc]
    assert "NUL" in r.json()["errors"][0]["msg"] and dispatcher.job_ids == []


def test_lone_surrogates_are_422(client):
    assert locs(post_raw(client, "/sweeps", '{"name": "x\\ud800y", "base": {"defaults": true}}')) == [["body", "name"]]


def test_nul_bytes_in_query_strings_are_422(client):
    assert locs(client.get(f"{API}/jobs?q=a%00b")) == [["query", "q"]]
    assert locs(client.get(f"{API}/leaderboard?track=%00")) == [["query", "track"]]
    assert locs(client.get(f"{API}/jobs/%00")) == [["path"]]


def test_non_ascii_digit_keys_are_422(client):
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"dynds.²": [1]}})
    assert locs(r) == [["body", "grid", "dynds.²"]]
    r = client.post(f"{API}/jobs", json={"spec": {"train": {"²": 1}}})
    assert problem(r, 422, "validation")["errors"]


def nested(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth  # as text: json.dumps itself cannot nest 5000 deep


@pytest.mark.parametrize("depth", [40, 900, 5000])
def test_deep_nesting_is_422(client, depth):
    for path, key in (("/sweeps", "base"), ("/jobs", "spec")):
        r = post_raw(client, path, f'{{"{key}": {{"train": {{"seed": {nested(depth)}}}}}}}')
        assert any(e["type"] == "value_error.depth" for e in problem(r, 422, "validation")["errors"]), r.text


def test_malformed_json_is_422_with_its_position(client):
    (err,) = problem(post_raw(client, "/jobs", '{"spec": {'), 422, "validation")["errors"]
    assert err["loc"][0] == "body" and err["type"] == "json_invalid" and "line 1" in err["msg"]


# ---------------------------------------------------------------- strict at the door


def test_a_bare_spec_is_a_422_saying_to_wrap_it(client, dispatcher):
    r = client.post(f"{API}/jobs", json={"model": {"arch": "resnet20"}, "train": {"epochs": 3}})
    (err,) = problem(r, 422, "validation")["errors"]
    assert err["loc"] == ["body"] and err["type"] == "missing_spec" and "bare spec" in err["msg"] and '{"spec": ...}' in err["msg"]
    (err,) = problem(client.post(f"{API}/jobs", json={}), 422, "validation")["errors"]
    assert err["type"] == "missing_spec" and "spec is required" in err["msg"]
    assert dispatcher.job_ids == []


def test_unknown_top_level_keys_are_422(client, dispatcher):
    assert locs(client.post(f"{API}/jobs", json={"spec": {"defaults": True}, "forse": True})) == [["body", "forse"]]
    assert locs(client.post(f"{API}/jobs", json={"spec": {"defaults": True}, "force": "yes"})) == [["body", "force"]]
    assert locs(client.post(f"{API}/sweeps", json={"base": {"defaults": True}, "gird": {}})) == [["body", "gird"]]
    assert locs(client.post(f"{API}/specs/validate", json={"spec": {"defaults": True}, "x": 1})) == [["body", "x"]]
    assert dispatcher.job_ids == []


# ---------------------------------------------------------------- auth before validation


@pytest.fixture
def token(session):
    return create_token(session=session, name="ci")


@pytest.mark.parametrize("path", ["/jobs", "/sweeps", "/specs/validate", "/jobs/1/cancel"])
@pytest.mark.parametrize("text", ['{"spec": NaN}', "{not json", '{"forse": true}', "[" * 5000])
def test_an_unauthenticated_malformed_write_is_401(client, token, path, text):
    body = problem(post_raw(client, path, text), 401, "unauthorized")
    assert "Bearer" in body["detail"]
    problem(post_raw(client, path, text, headers={"Authorization": "Bearer wrong"}), 403, "forbidden")
    r = post_raw(client, path, text, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (404, 422), r.text  # past the door: the body's own answer


def test_an_unauthenticated_malformed_id_is_401(client, token):
    problem(client.post(f"{API}/jobs/{BIG}/cancel"), 401, "unauthorized")


def test_revoking_the_last_token_keeps_writes_closed(client, session, token):
    revoke_token(session=session, name="ci", close_writes=True)
    assert "writes are closed" in problem(client.post(f"{API}/jobs", json={"spec": {"defaults": True}}), 401, "unauthorized")["detail"]
    problem(client.post(f"{API}/jobs", json={"spec": {"defaults": True}}, headers={"Authorization": f"Bearer {token}"}), 403, "forbidden")
    assert client.get(f"{API}/meta").json()["auth_required"] is True
    new = create_token(session=session, name="next")
    r = client.post(f"{API}/jobs", json={"spec": {"defaults": True}}, headers={"Authorization": f"Bearer {new}"})
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------- headers, request ids, the 500 of last resort


@pytest.mark.parametrize("path", ["/", f"{API}/jobs", f"{API}/jobs/99", "/healthz", "/static/js/api.js", "/openapi.json"])
def test_security_headers_on_every_answer(client, path):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp


def test_the_dashboard_has_no_inline_script(client):
    import re

    html = client.get("/").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers either
    api_js = client.get("/static/js/api.js").text
    assert "sessionStorage.getItem(TOKEN_KEY)" in api_js and "localStorage.setItem" not in api_js
    assert "sessionStorage" in client.get("/static/js/prefetch.js").text


def test_request_id_is_echoed_or_made(client):
    r = client.get(f"{API}/jobs", headers={"X-Request-ID": "ci-build-7.1"})
    assert r.headers["x-request-id"] == "ci-build-7.1"
    made = client.get(f"{API}/jobs", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert made != "bad id\twith spaces" and len(made) == 32


def test_every_answer_says_the_time_the_app_took(client, monkeypatch):
    # Server-Timing: a load test tells the server's share of a request's time from the queueing around it.
    real = crud.list_jobs_json

    def slow(**kw):
        time.sleep(0.25)
        return real(**kw)

    monkeypatch.setattr(crud, "list_jobs_json", slow)
    for r in (client.get(f"{API}/jobs"), client.get(f"{API}/jobs", params={"limit": -1})):
        name, dur = r.headers["server-timing"].split(";dur=")
        assert name == "app" and float(dur) >= 0
    assert float(client.get(f"{API}/jobs").headers["server-timing"].split("=")[1]) >= 250


def test_an_unexpected_error_is_a_500_problem_naming_the_request_id(app, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    def boom(**kw):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(crud, "list_jobs_json", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get(f"{API}/jobs", headers={"X-Request-ID": "req-500"})
    body = problem(r, 500, "internal")
    assert body["request_id"] == "req-500" and "req-500" in body["detail"]
    assert "secret internals" not in r.text and "RuntimeError" not in r.text
    assert any("req-500" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_errors_are_problems_with_stable_types(client, session, settings):
    problem(client.get(f"{API}/jobs/12345"), 404, "not-found")
    problem(client.get(f"{API}/frontier?track=nope"), 404, "not-found")
    job = client.post(f"{API}/jobs", json={"spec": {"defaults": True}}).json()
    problem(client.post(f"{API}/jobs/{job['id']}/retry"), 409, "conflict")  # queued: nothing to retry
    big = "x" * (settings.max_body_bytes + 1)
    problem(client.post(f"{API}/jobs", content=big, headers={"content-type": "application/json"}), 413, "payload-too-large")


# ---------------------------------------------------------------- the OpenAPI


def test_openapi_documents_jobspec_bearer_and_every_status(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]
    assert "JobSpec" in components["schemas"] and "Problem" in components["schemas"]
    assert components["securitySchemes"]["bearer"] == {**components["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    create = components["schemas"]["JobCreate"]
    assert {"$ref": "#/components/schemas/JobSpec"} in create["properties"]["spec"]["oneOf"]
    assert create["required"] == ["spec"] and create["additionalProperties"] is False
    sweep = components["schemas"]["SweepCreate"]
    assert {"$ref": "#/components/schemas/JobSpec"} in sweep["properties"]["base"]["oneOf"]
    paths = schema["paths"]
    expected = {
        ("/api/v1/jobs", "post"): {"200", "201", "401", "403", "413", "422", "500", "503"},
        ("/api/v1/jobs/{job_id}", "get"): {"200", "404", "422", "500"},
        ("/api/v1/jobs/{job_id}/cancel", "post"): {"200", "401", "403", "404", "409", "422"},
        ("/api/v1/jobs/{job_id}/retry", "post"): {"200", "201", "401", "403", "404", "409", "422", "503"},
        ("/api/v1/jobs/{job_id}/events", "get"): {"200", "404", "422", "503"},
        ("/api/v1/sweeps", "post"): {"201", "401", "403", "413", "422", "503"},
        ("/api/v1/specs/validate", "post"): {"200", "401", "403", "413", "422"},
    }
    for (path, method), codes in expected.items():
        op = paths[path][method]
        assert codes <= set(op["responses"]), (path, method, sorted(op["responses"]))
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert "application/problem+json" in response["content"], (path, code)
    assert paths["/api/v1/jobs"]["post"]["security"] == [{"bearer": []}]
