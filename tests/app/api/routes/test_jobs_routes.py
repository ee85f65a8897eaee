"""POST/GET /jobs, cancel, retry, metrics and events, on SQLite and PostgreSQL."""

import json
import threading

import httpx
import pytest
from sqlmodel import select

from app import crud
from app.main import create_app
from app.models import Job
from app.security import create_token

API = "/api/v1"


def submit(client, spec=None, **kw):
    # an empty spec is refused unless asked for with {"defaults": true}
    return client.post(f"{API}/jobs", json={"spec": spec or {"defaults": True}, **kw.pop("body", {})}, **kw)


# ---------------------------------------------------------------- submitting


def test_submit_queues_the_job_and_dispatches_it(client, dispatcher):
    r = submit(client, {"name": "quick", "model": {"arch": "resnet32"}, "data": {"train_subset": 100}, "train": {"epochs": 3, "batch_size": 50}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["name"] == "quick" and job["attempt"] == 1 and not job["deduplicated"]
    assert job["track"] == "resnet32/synthetic/e3-n100"
    assert job["spec"]["train"]["lr"] == 0.1  # canonical: defaults spelled out
    assert job["created_at"].endswith("Z")
    assert dispatcher.job_ids == [job["id"]]
    assert client.get(f"{API}/jobs/{job['id']}").json()["spec_hash"] == job["spec_hash"]
    assert client.get(f"{API}/jobs/999999").status_code == 404


BAD_SPECS = [
    ({"model": {"arch": "vgg16"}}, ["model", "arch"]),
    ({"train": {"epochs": 0}}, ["train", "epochs"]),
    ({"train": {"epochs": 501}}, ["train", "epochs"]),  # JobSpec allows it; the server's bound does not
    ({"train": {"batch_size": 5000}}, ["train", "batch_size"]),
    ({"train": {"lr": -1}}, ["train", "lr"]),
    ({"data": {"dataset": "imagenet"}}, ["data", "dataset"]),
    ({"data": {"train_subset": 3_000_000}}, ["data", "train_subset"]),
    ({"dynds": {"input": {"factor": 16}}}, ["dynds", "input", "factor"]),
    ({"dynds": {"schedule": {"kind": "stochastic", "p": 1.5}}}, ["dynds", "schedule", "p"]),
    ({"dynds": {"schedule": {"kind": "sometimes"}}}, ["dynds", "schedule"]),
    ({"dynds": {"kernal": {}}}, ["dynds", "kernal"]),
    # Accepted before, and trained on 1x1 images (the estimate of the same spec was a 500).
    ({"data": {"image_size": 8}, "dynds": {"input": {"factor": 8}}}, ["dynds", "input", "factor"]),
    ({"dynds": {"schedule": {"kind": "periodic", "every": None}}}, ["dynds", "schedule", "every"]),
    ({"dynds": {"kernel": {"window": 4}}}, ["dynds", "kernel", "window"]),
]


@pytest.mark.parametrize("spec,loc", BAD_SPECS, ids=[".".join(loc) for _, loc in BAD_SPECS])
def test_bad_spec_is_422_at_its_key_path(client, dispatcher, spec, loc):
    r = submit(client, spec)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["body", "spec", *loc] in locs, locs
    assert all(e["msg"] for e in r.json()["errors"])
    assert client.get(f"{API}/jobs").json()["count"] == 0 and dispatcher.job_ids == []


def test_every_bad_key_path_is_listed_at_once(client, data_dir):
    spec = {"model": {"arch": "vgg"}, "train": {"epochs": 600, "batch_size": 1}, "data": {"root": "/etc"}, "extra": 1}
    locs = sorted(tuple(e["loc"][2:]) for e in submit(client, spec).json()["errors"])
    assert locs == sorted([("model", "arch"), ("train", "epochs"), ("train", "batch_size"), ("data", "root"), ("extra",)])


def test_data_root_must_stay_inside_the_data_dirs(client, data_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_dir / "escape").symlink_to(outside)
    refused = [
        "/etc",
        str(data_dir / ".." / "outside"),
        str(data_dir / "escape"),
        str(data_dir / "escape" / "x"),
        "cifar10",
        str(data_dir) + "-sibling",
    ]
    for root in refused:
        r = submit(client, {"data": {"dataset": "cifar10", "root": root}})
        assert r.status_code == 422, root
        (err,) = r.json()["errors"]
        assert err["loc"] == ["body", "spec", "data", "root"] and str(data_dir.resolve()) in err["msg"], err
    # a root that holds the link out is refused too, naming the link (every entry is resolved at submission)
    r = submit(client, {"data": {"dataset": "cifar10", "root": str(data_dir)}})
    assert r.status_code == 422 and str(data_dir / "escape") in r.json()["errors"][0]["msg"]
    (data_dir / "escape").unlink()
    for root in (str(data_dir), str(data_dir / "cifar10"), str(data_dir / "sub" / ".." / "cifar10")):
        assert submit(client, {"data": {"dataset": "cifar10", "root": root}}).status_code in (200, 201), root


def test_identical_spec_is_deduplicated_unless_forced(client, dispatcher):
    first = submit(client, {"name": "a"}).json()
    again = submit(client, {"name": "b", "train": {"seed": 0}})  # the name is not part of the hash
    assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["deduplicated"]
    forced = submit(client, {}, body={"force": True})
    assert forced.status_code == 201 and forced.json()["id"] != first["id"]
    other = submit(client, {"train": {"seed": 1}})
    assert other.status_code == 201
    assert dispatcher.job_ids == [first["id"], forced.json()["id"], other.json()["id"]]


def test_a_failed_job_does_not_block_a_new_submission(client, session):
    first = submit(client).json()
    crud.fail_job(session=session, job_id=first["id"], error="boom")
    second = submit(client)
    assert second.status_code == 201 and second.json()["id"] != first["id"]


def test_twenty_concurrent_identical_submissions_make_one_job(live_server, dispatcher):
    barrier = threading.Barrier(20)
    answers = []

    def one():
        with httpx.Client(base_url=live_server, timeout=60) as c:
            barrier.wait()
            r = c.post(f"{API}/jobs", json={"spec": {"name": "race", "train": {"seed": 7}}})
            answers.append((r.status_code, r.json()["id"]))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 20
    assert len({job_id for _, job_id in answers}) == 1
    assert sorted(code for code, _ in answers) == [200] * 19 + [201]
    assert len(dispatcher.job_ids) == 1
    assert httpx.get(f"{live_server}{API}/jobs").json()["count"] == 1


def test_idempotency_key_returns_the_first_job(client, dispatcher):
    first = submit(client, {"train": {"seed": 1}}, headers={"Idempotency-Key": "ci-run-42"})
    assert first.status_code == 201
    # Same key, same request (the spec spelled differently but canonically equal): the first request's job.
    repeat = submit(client, {"train": {"seed": 1, "epochs": first.json()["spec"]["train"]["epochs"]}}, headers={"Idempotency-Key": "ci-run-42"})
    assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"] and not repeat.json()["deduplicated"]
    # Same key, another spec, or force where the first had none: a 422 naming the header, nothing queued.
    for other in ({"spec": {"train": {"seed": 2}}}, {"spec": {"train": {"seed": 1}}, "force": True}):
        r = client.post(f"{API}/jobs", json=other, headers={"Idempotency-Key": "ci-run-42"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"], r.text
        assert "new key" in r.json()["errors"][0]["msg"]
    assert submit(client, {"train": {"seed": 2}}, headers={"Idempotency-Key": "ci-run-43"}).status_code == 201
    assert len(dispatcher.job_ids) == 2


def test_a_dispatcher_that_cannot_take_the_job_fails_it(settings, failing_dispatcher, session):
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, dispatcher=failing_dispatcher)) as c:
        r = submit(c)
        assert r.status_code == 503 and "redis://nowhere" in r.json()["detail"]
    (job,) = session.exec(select(Job)).all()
    assert job.status == "failed" and "could not dispatch" in job.error


# ---------------------------------------------------------------- tokens and limits


def test_writes_need_a_token_once_one_exists(client, session):
    assert submit(client, {"train": {"seed": 1}}).status_code == 201  # no token yet: open
    token = create_token(session=session, name="ci")
    r = submit(client, {"train": {"seed": 2}})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    assert submit(client, {"train": {"seed": 2}}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert submit(client, {"train": {"seed": 2}}, headers={"Authorization": "Token " + token}).status_code == 401
    assert submit(client, {"train": {"seed": 2}}, headers={"Authorization": f"Bearer {token}"}).status_code == 201
    assert client.post(f"{API}/jobs/1/cancel").status_code == 401
    assert client.get(f"{API}/jobs").status_code == 200  # reads stay open
    assert client.get(f"{API}/meta").json()["auth_required"] is True


def test_reads_can_require_a_token(settings, session, dispatcher):
    from fastapi.testclient import TestClient

    token = create_token(session=session, name="viewer")
    app = create_app(settings.model_copy(update={"read_requires_token": True}), dispatcher=dispatcher)
    with TestClient(app) as c:
        assert c.get(f"{API}/jobs").status_code == 401
        assert c.get(f"{API}/leaderboard").status_code == 401
        assert c.get(f"{API}/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_body_size_limit(live_server, settings):
    limit = settings.max_body_bytes
    big = json.dumps({"spec": {"name": "x" * (limit + 10)}}).encode()
    r = httpx.post(f"{live_server}{API}/jobs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(limit) in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    r = httpx.post(f"{live_server}{API}/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert httpx.post(f"{live_server}{API}/jobs", json={"spec": {"defaults": True}}).status_code == 201


# ---------------------------------------------------------------- listing


def test_list_filters_and_paginates(client, session):
    for seed in range(3):
        submit(client, {"train": {"seed": seed}, "model": {"arch": "resnet20"}})
    submit(client, {"model": {"arch": "resnet32"}, "dynds": {"schedule": {"kind": "periodic"}}, "name": "periodic-one"})
    crud.fail_job(session=session, job_id=1, error="boom")
    page = client.get(f"{API}/jobs", params={"limit": 2}).json()
    assert page["count"] == 4 and [j["id"] for j in page["data"]] == [4, 3]
    assert "result" not in page["data"][0] or page["data"][0]["result"] is None
    assert [j["id"] for j in client.get(f"{API}/jobs", params={"limit": 2, "offset": 2}).json()["data"]] == [2, 1]
    assert client.get(f"{API}/jobs", params={"arch": "resnet32"}).json()["count"] == 1
    assert client.get(f"{API}/jobs", params={"schedule_kind": "periodic"}).json()["data"][0]["id"] == 4
    assert [j["id"] for j in client.get(f"{API}/jobs", params={"status": "failed"}).json()["data"]] == [1]
    assert client.get(f"{API}/jobs", params={"q": "PERIODIC"}).json()["count"] == 1
    assert client.get(f"{API}/jobs", params={"track": "resnet20/synthetic/e2-nall"}).json()["count"] == 3
    assert [j["id"] for j in client.get(f"{API}/jobs", params={"order": "id"}).json()["data"]] == [1, 2, 3, 4]
    assert client.get(f"{API}/jobs", params={"order": "bogus"}).status_code == 422
    assert client.get(f"{API}/jobs", params={"status": "done"}).status_code == 422


# ---------------------------------------------------------------- cancel and retry


def test_cancel_queued_at_once_running_by_flag_finished_409(client, session):
    queued = submit(client, {"train": {"seed": 1}}).json()
    r = client.post(f"{API}/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert crud.claim_job(session=session, job_id=queued["id"], worker="w") is None  # a cancelled job is never run

    running = submit(client, {"train": {"seed": 2}}).json()
    crud.claim_job(session=session, job_id=running["id"], worker="w")
    r = client.post(f"{API}/jobs/{running['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["cancel_requested"]
    assert crud.job_control(session=session, job_id=running["id"]) == (True, "running")

    assert client.post(f"{API}/jobs/{queued['id']}/cancel").status_code == 409
    assert client.post(f"{API}/jobs/424242/cancel").status_code == 404


def test_retry_makes_a_new_attempt_and_keeps_the_old(client, session, dispatcher):
    job = submit(client).json()
    assert client.post(f"{API}/jobs/{job['id']}/retry").status_code == 409  # still queued
    crud.claim_job(session=session, job_id=job["id"], worker="w")
    crud.fail_job(session=session, job_id=job["id"], error="CUDA out of memory")
    r = client.post(f"{API}/jobs/{job['id']}/retry")
    assert r.status_code == 201
    new = r.json()
    assert new["id"] != job["id"] and new["attempt"] == 2 and new["retry_of"] == job["id"] and new["status"] == "queued"
    assert new["spec"] == job["spec"]
    old = client.get(f"{API}/jobs/{job['id']}").json()
    assert old["status"] == "failed" and old["error"] == "CUDA out of memory"
    assert dispatcher.job_ids[-1] == new["id"]
    # The retry holds the spec now: an identical submission is answered with it.
    assert submit(client).json()["id"] == new["id"]


# ---------------------------------------------------------------- metrics


def points(n, start=0, run="dynds"):
    return [
        {
            "run": run,
            "kind": "step",
            "step": start + i,
            "epoch": 0,
            "train_time_s": 0.1 * (start + i),
            "values": {"loss": 2.0, "acc": 10.0, "lr": 0.1, "batch_type": "reduced"},
        }
        for i in range(n)
    ]


def test_metrics_are_read_incrementally_with_a_cursor(client, session):
    job = submit(client).json()
    crud.append_metrics(session=session, job_id=job["id"], points=points(5))
    crud.append_metrics(
        session=session, job_id=job["id"], points=[{"run": "dynds", "kind": "epoch", "epoch": 0, "train_time_s": 1.0, "values": {"val_acc": 11.0}}]
    )
    url = f"{API}/jobs/{job['id']}/metrics"
    first = client.get(url, params={"limit": 4}).json()
    assert [p["step"] for p in first["data"]] == [0, 1, 2, 3] and first["next_cursor"] == first["data"][-1]["id"]
    rest = client.get(url, params={"after": first["next_cursor"]}).json()
    assert [p["kind"] for p in rest["data"]] == ["step", "epoch"]
    nothing = client.get(url, params={"after": rest["next_cursor"]}).json()
    assert nothing == {"data": [], "next_cursor": rest["next_cursor"]}
    crud.append_metrics(session=session, job_id=job["id"], points=points(2, start=5))
    newer = client.get(url, params={"after": rest["next_cursor"]}).json()
    assert [p["step"] for p in newer["data"]] == [5, 6]
    assert [p["kind"] for p in client.get(url, params={"kind": "epoch"}).json()["data"]] == ["epoch"]
    assert client.get(f"{API}/jobs/9999/metrics").status_code == 404


def read_events(url, headers=None, timeout=30, first=None):
    """Parse a server-sent event stream until `end`: [(event, id, data)]; ``first`` (an Event) is set on the first."""
    events, current = [], {}
    with httpx.stream("GET", url, headers=headers or {}, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line == "":
                if current:
                    events.append((current.get("event"), current.get("id"), json.loads(current["data"])))
                    if first is not None:
                        first.set()
                    if current.get("event") == "end":
                        return events
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return events


def test_events_stream_metrics_and_states_until_the_end(live_server, session, result_for):
    from dynds_core.spec import JobSpec

    job = submit(httpx.Client(base_url=live_server)).json()
    received, connected = [], threading.Event()
    reader = threading.Thread(target=lambda: received.extend(read_events(f"{live_server}{API}/jobs/{job['id']}/events", first=connected)))
    reader.start()
    assert connected.wait(20), "no event arrived"
    crud.claim_job(session=session, job_id=job["id"], worker="w")
    for i in range(3):
        crud.append_metrics(session=session, job_id=job["id"], points=points(2, start=2 * i))
        threading.Event().wait(0.1)
    crud.finish_job(session=session, job_id=job["id"], result=result_for(JobSpec.parse(job["spec"])))
    reader.join(30)
    assert not reader.is_alive(), "the stream did not end after the job finished"
    kinds = [e for e, _, _ in received]
    assert kinds[0] == "status" and kinds[-1] == "end"
    metric_steps = [d["step"] for e, _, d in received if e == "metric"]
    assert metric_steps == list(range(6))
    ids = [int(i) for e, i, _ in received if e == "metric"]
    assert ids == sorted(ids)
    statuses = [d["status"] for e, _, d in received if e == "status"]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    assert received[-1][2]["status"] == "succeeded"

    # Resuming after the third point replays only the rest.
    resumed = read_events(f"{live_server}{API}/jobs/{job['id']}/events", headers={"Last-Event-ID": str(ids[2])})
    assert [d["step"] for e, _, d in resumed if e == "metric"] == [3, 4, 5]
    assert httpx.get(f"{live_server}{API}/jobs/777/events").status_code == 404


def test_a_list_item_is_the_job_without_its_result(client, session, finished_job):
    done = finished_job({"train": {"seed": 5}}, time_saving=0.2, acc_delta=-0.1)
    crud.set_reproducibility(session=session, job_id=done, record={"host": "h", "git_dirty": False})
    queued = submit(client, {"train": {"seed": 6}}).json()["id"]
    crud.record_heartbeat(session=session, job_id=queued, progress={"run": "dynds", "fraction": 0.25})
    items = {j["id"]: j for j in client.get(f"{API}/jobs").json()["data"]}
    for job_id in (done, queued):
        full = client.get(f"{API}/jobs/{job_id}").json()
        assert items[job_id] == {**full, "result": None}
    assert client.get(f"{API}/jobs/{done}").json()["result"]["time_saving"] == 0.2
