"""POST /gate: a decision over seeds from finished jobs (constructed results), the seeds it submits, its 422s."""

import pytest

from app import crud
from dynds_core.spec import JobSpec
from tests.app.conftest import make_result

API = "/api/v1"
SETTING = {"dynds": {"schedule": {"kind": "stochastic", "p": 0.5}}}


def seeded(seed, **more):
    return {**SETTING, "train": {"seed": seed}, **more}


def ask(client, require="worth-it", **body):
    r = client.post(f"{API}/gate", json={"spec": SETTING, "require": require, **body})
    assert r.status_code == 200, r.text
    return r.json()


def finish(session, job_id, **figures):
    """Run a job the gate submitted to its end with the given figures (what a worker would report)."""
    spec = JobSpec.parse(crud.get_job(session=session, job_id=job_id).spec)
    assert crud.claim_job(session=session, job_id=job_id, worker="test") is not None
    assert crud.finish_job(session=session, job_id=job_id, result=make_result(spec, **figures))


def test_finished_seeds_that_beat_the_equal_time_baseline_pass_without_new_jobs(client, finished_job, dispatcher):
    ids = [finished_job(seeded(s, name=f"earlier-{s}"), equal_time_gap=gap) for s, gap in enumerate((0.9, 1.3, 1.1))]
    g = ask(client)
    assert g["decision"] == "pass" and g["reason"].startswith("Worth it: DynDS is +1.10 pt against the baseline trained for the same time")
    assert "98.3% interval +0.22 pt to +1.98 pt at look 1 of 3, 3 seeds on cpu · Test CPU · 1 thread" in g["reason"]
    assert g["metric"] == "equal_time_gap" and g["threshold"] == 0.0 and g["level"] == pytest.approx(1 - 0.05 / 3)
    assert g["looks_planned"] == 3 and [lk["n_seeds"] for lk in g["looks"]] == [3] and g["n_seeds"] == 3
    assert g["ci95"][0] > g["ci"][0] and g["ci95"][1] < g["ci"][1]  # the corrected interval is the wider
    assert [s["status"] for s in g["seeds"]] == ["done", "done", "done", "not_needed", "not_needed"]
    assert [s["job_ids"] for s in g["seeds"][:3]] == [[i] for i in ids]  # reused, whoever named them
    assert g["submitted_job_ids"] == [] and dispatcher.job_ids == []


def test_the_gate_submits_its_seeds_once_then_one_per_look_until_max_seeds(client, session, dispatcher):
    first = ask(client)
    assert first["decision"] == "undecided" and len(first["submitted_job_ids"]) == 3 and dispatcher.job_ids == first["submitted_job_ids"]
    assert first["notes"] == ["equal_time_baseline set to true: worth-it needs it"]
    specs = [crud.get_job(session=session, job_id=i).spec for i in first["submitted_job_ids"]]
    assert [s["train"]["seed"] for s in specs] == [0, 1, 2] and all(s["equal_time_baseline"] for s in specs)
    assert [s["status"] for s in first["seeds"]] == ["queued"] * 3 + ["not_needed"] * 2
    assert "waiting for seed 0 (queued, job" in first["reason"] and "look 1 of 3 comes at 3 seeds" in first["reason"]

    again = ask(client)  # polling submits nothing twice
    assert again["submitted_job_ids"] == [] and len(dispatcher.job_ids) == 3 and again["seeds"] == first["seeds"]

    for job_id, gap in zip(first["submitted_job_ids"], (1.0, -1.0, 0.5), strict=True):
        finish(session, job_id, equal_time_gap=gap)
    look1 = ask(client)
    assert look1["decision"] == "undecided" and len(look1["submitted_job_ids"]) == 1 and len(look1["looks"]) == 1
    assert look1["seeds"][3]["status"] == "queued" and "look 2 of 3 comes at 4 seeds" in look1["reason"]
    finish(session, look1["submitted_job_ids"][0], equal_time_gap=-0.5)
    look2 = ask(client)
    finish(session, look2["submitted_job_ids"][0], equal_time_gap=0.2)
    last = ask(client)
    assert last["decision"] == "inconclusive" and "still spans 0 after 5 seeds (max_seeds)" in last["reason"]
    assert [lk["n_seeds"] for lk in last["looks"]] == [3, 4, 5] and len(dispatcher.job_ids) == 5


def test_no_worse_fails_when_the_drop_is_surely_larger_than_allowed(client, finished_job):
    for s, delta in enumerate((-2.0, -2.2, -1.9)):
        finished_job(seeded(s), acc_delta=delta)
    g = ask(client, "no-worse", max_acc_drop=0.5, min_seeds=3, max_seeds=3)
    assert g["decision"] == "fail" and g["metric"] == "acc_delta" and g["threshold"] == -0.5 and g["level"] == pytest.approx(0.95)
    assert g["reason"].startswith("Worse: the accuracy delta against the baseline is -2.03 pt") and "below -0.5 pt" in g["reason"]
    assert ask(client, "no-worse", max_acc_drop=3)["decision"] == "pass"


def test_a_failed_seed_is_an_error_naming_the_job_to_retry(client, session, finished_job):
    finished_job(seeded(0), acc_delta=-0.1)
    g = ask(client, "no-worse")
    failed = g["submitted_job_ids"][0]
    crud.fail_job(session=session, job_id=failed, error="out of memory")
    g = ask(client, "no-worse")
    assert g["decision"] == "error" and f"job {failed} (seed 1) ended without a result (out of memory)" in g["reason"]
    assert f"POST /jobs/{failed}/retry" in g["reason"] and g["submitted_job_ids"] == []


def test_seeds_from_unlike_hardware_are_not_pooled(client, finished_job):
    finished_job(seeded(0), acc_delta=0.1)
    finished_job(seeded(1), acc_delta=0.2)
    other = finished_job(seeded(2), acc_delta=0.1, hardware="cuda")
    g = ask(client, "no-worse")
    assert g["decision"] == "error" and g["hardware_key"] == "cpu · Test CPU · 1 thread"
    assert g["seeds"][2]["status"] == "elsewhere" and f"seed 2 ran on cuda · Test GPU · x1 (job {other})" in g["reason"]


def test_max_seeds_defaults_to_5_or_min_seeds_if_larger(client):
    assert ask(client, "no-worse", min_seeds=7)["max_seeds"] == 7
    assert ask(client, "no-worse")["max_seeds"] == 5


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"spec": SETTING}, ["body", "require"], "Field required"),
        ({"spec": SETTING, "require": "better"}, ["body", "require"], "worth-it"),
        ({"spec": SETTING, "require": "worth-it", "max_acc_drop": 1}, ["body", "max_acc_drop"], "applies to require: no-worse"),
        ({"spec": SETTING, "require": "no-worse", "min_seeds": 4, "max_seeds": 3}, ["body", "max_seeds"], "max_seeds must be >= min_seeds (4)"),
        ({"spec": SETTING, "require": "no-worse", "min_seeds": 1}, ["body", "min_seeds"], "greater than or equal to 2"),
        ({"spec": {"train": {"epochs": 0}}, "require": "no-worse"}, ["body", "spec", "train", "epochs"], ""),
        ({"spec": SETTING, "require": "no-worse", "forse": True}, ["body", "forse"], "Extra inputs"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, dispatcher, body, loc, msg):
    r = client.post(f"{API}/gate", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["loc"] == loc and msg in e["msg"] for e in errors), errors
    assert dispatcher.job_ids == []


def test_the_gate_is_in_the_openapi_with_its_models(client):
    schema = client.app.openapi()
    op = schema["paths"]["/api/v1/gate"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/GateRequest")
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/GatePublic")
    decision = schema["components"]["schemas"]["GatePublic"]["properties"]["decision"]
    assert decision["enum"] == ["pass", "fail", "undecided", "inconclusive", "error"]


def test_dynds_submit_require_exits_with_the_decisions_code(live_server, session, finished_job, tmp_path, capsys):
    """`dynds submit --wait --require` against a live server: 1 fail, 3 inconclusive, 4 a seed failed or --timeout."""
    import httpx
    import yaml

    from dynds.cli import main

    def submit(p, *flags):
        path = tmp_path / f"p{p}.yaml"
        path.write_text(yaml.safe_dump({"dynds": {"schedule": {"kind": "stochastic", "p": p}}}))
        code = main(["submit", str(path), "--server", live_server, "--wait", "--retry-for", "5", *flags])
        return code, capsys.readouterr()

    for s, delta in enumerate((-2.0, -2.2, -1.9)):
        finished_job({"dynds": {"schedule": {"kind": "stochastic", "p": 0.5}}, "train": {"seed": s}}, acc_delta=delta)
    code, out = submit(0.5, "--require", "no-worse", "--max-acc-drop", "0.5")
    assert code == 1 and "gate fail: Worse:" in out.out and "seed 2: done acc_delta -1.90 pt" in out.out

    for s, delta in enumerate((1.0, -1.0, 0.5)):
        finished_job({"dynds": {"schedule": {"kind": "stochastic", "p": 0.6}}, "train": {"seed": s}}, acc_delta=delta)
    code, out = submit(0.6, "--require", "no-worse", "--min-seeds", "3", "--max-seeds", "3")
    assert code == 3 and "gate inconclusive: Inconclusive:" in out.out

    # Nothing runs the seeds here (the app's dispatcher only records them): --timeout ends the wait with 4.
    code, out = submit(0.7, "--require", "no-worse", "--timeout", "1")
    assert code == 4 and "gate undecided: Undecided: waiting for seed 0 (queued, job" in out.out and "did not decide within" in out.err
    gate = httpx.post(f"{live_server}/api/v1/gate", json={"spec": {"dynds": {"schedule": {"kind": "stochastic", "p": 0.7}}}, "require": "no-worse"})
    crud.fail_job(session=session, job_id=gate.json()["seeds"][0]["job_ids"][0], error="out of memory")
    code, out = submit(0.7, "--require", "no-worse")
    assert code == 4 and "gate error: Error: job" in out.out and "(out of memory)" in out.out

    code, out = submit(0.7, "--require", "worth-it", "--max-acc-drop", "1")  # refused before asking: 2
    assert code == 2 and "--max-acc-drop goes with --require no-worse" in out.err
