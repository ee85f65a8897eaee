"""POST/GET /sweeps: grid expansion, validation of every point before anything is queued."""

API = "/api/v1"


def test_grid_expands_to_the_cartesian_product(client, dispatcher):
    body = {"name": "p-sweep", "base": {"train": {"epochs": 3}}, "grid": {"dynds.schedule.p": [0.3, 0.5], "train.seed": [0, 1]}}
    r = client.post(f"{API}/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["name"] == "p-sweep" and sweep["count"] == 4 and len(sweep["jobs"]) == 4
    points = [(j["spec"]["dynds"]["schedule"]["p"], j["spec"]["train"]["seed"]) for j in sweep["jobs"]]
    assert points == [(0.3, 0), (0.3, 1), (0.5, 0), (0.5, 1)]
    assert all(j["spec"]["train"]["epochs"] == 3 for j in sweep["jobs"])
    assert sorted(dispatcher.job_ids) == sorted(j["id"] for j in sweep["jobs"])
    assert client.get(f"{API}/sweeps/{sweep['id']}").json() == sweep
    assert client.get(f"{API}/sweeps/999").status_code == 404


def test_a_point_identical_to_an_existing_job_reuses_it(client, dispatcher):
    existing = client.post(f"{API}/jobs", json={"spec": {"train": {"seed": 1}}}).json()
    sweep = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": [0, 1]}}).json()
    assert sweep["count"] == 2 and sweep["jobs"][1]["id"] == existing["id"]
    assert len(dispatcher.job_ids) == 2  # the existing job and one new one


def test_a_bad_grid_value_is_named_and_nothing_is_queued(client, dispatcher):
    body = {"base": {}, "grid": {"dynds.schedule.p": [0.5, 1.7], "model.arch": ["resnet20", "vgg"], "train.seed": [0, 1]}}
    r = client.post(f"{API}/sweeps", json=body)
    assert r.status_code == 422
    detail = r.json()["errors"]
    assert {tuple(e["loc"]) for e in detail} == {("body", "grid", "dynds.schedule.p", 1), ("body", "grid", "model.arch", 1)}
    assert any("dynds.schedule.p=1.7" in e["msg"] for e in detail)
    assert any("model.arch='vgg'" in e["msg"] for e in detail)
    assert client.get(f"{API}/jobs").json()["count"] == 0 and dispatcher.job_ids == []


def test_unknown_grid_key_bad_base_and_too_many_points(client, settings):
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"dynds.schedule.q": [1]}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid", "dynds.schedule.q", 0]
    r = client.post(f"{API}/sweeps", json={"base": {"train": {"epochs": 0}}, "grid": {"train.seed": [0, 1]}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "base", "train", "epochs"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": list(range(101)), "dynds.schedule.p": [0.1] * 10}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid"] and "1010" in r.json()["errors"][0]["msg"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": []}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid", "train.seed"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.epochs.x": [1]}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid", "train.epochs.x"]
    assert client.get(f"{API}/jobs").json()["count"] == 0


def test_seeds_run_every_grid_point_once_per_seed(client, dispatcher):
    body = {"base": {"train": {"epochs": 3}}, "grid": {"dynds.schedule.p": [0.3, 0.5]}, "seeds": [7, 0, 3]}
    r = client.post(f"{API}/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["count"] == 6 and len({j["id"] for j in sweep["jobs"]}) == 6
    points = [(j["spec"]["dynds"]["schedule"]["p"], j["spec"]["train"]["seed"]) for j in sweep["jobs"]]
    assert points == [(0.3, 7), (0.3, 0), (0.3, 3), (0.5, 7), (0.5, 0), (0.5, 3)]
    assert len({j["recipe_hash"] for j in sweep["jobs"]}) == 1  # seeds and settings: one recipe
    only_seeds = client.post(f"{API}/sweeps", json={"base": {"train": {"epochs": 4}}, "seeds": [1, 2]}).json()
    assert [j["spec"]["train"]["seed"] for j in only_seeds["jobs"]] == [1, 2]


def test_bad_seeds_are_refused(client):
    for seeds in ([], list(range(51)), [1, 1], [-1], [2**31], ["a"]):
        r = client.post(f"{API}/sweeps", json={"base": {}, "seeds": seeds})
        assert r.status_code == 422, seeds
        assert r.json()["errors"][0]["loc"][:2] == ["body", "seeds"], r.json()
    assert client.post(f"{API}/sweeps", json={"base": {}, "seeds": list(range(50))}).status_code == 201
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": [0]}, "seeds": [1]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "seeds"]
    assert client.get(f"{API}/jobs").json()["count"] == 50


def test_frontier_preset_queues_the_baseline_at_four_budgets_per_seed(client, dispatcher):
    base = {
        "name": "fr",
        "data": {"train_subset": 500},
        "train": {"epochs": 12, "lr": 0.05},
        "dynds": {"schedule": {"kind": "stochastic", "p": 0.7}},
        "equal_time_baseline": True,
    }
    r = client.post(f"{API}/sweeps", json={"base": base, "preset": "frontier", "seeds": [0, 1]})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert r.json()["count"] == 8 and len(dispatcher.job_ids) == 8
    assert [(j["spec"]["train"]["epochs"], j["spec"]["train"]["seed"]) for j in jobs] == [(e, s) for e in (3, 6, 9, 12) for s in (0, 1)]
    for j in jobs:
        spec = j["spec"]
        assert spec["dynds"]["schedule"] == {"kind": "none", "final_full_fraction": 0.0}
        assert spec["baseline"] is False and spec["equal_time_baseline"] is False
        assert spec["train"]["lr"] == 0.05 and spec["data"]["train_subset"] == 500 and spec["dynds"]["kernel"] == jobs[0]["spec"]["dynds"]["kernel"]
    # The 12-epoch baseline-only jobs share the recipe of the base spec's track.
    from app.leaderboard import recipe_hash
    from dynds_core.spec import JobSpec

    assert {j["recipe_hash"] for j in jobs if j["spec"]["train"]["epochs"] == 12} == {recipe_hash(JobSpec.parse(base).canonical())}
    # Few epochs: rounded, at least 1, deduplicated; without seeds the base spec's seed.
    small = client.post(f"{API}/sweeps", json={"base": {"train": {"epochs": 2, "seed": 5}}, "preset": "frontier"}).json()
    assert [(j["spec"]["train"]["epochs"], j["spec"]["train"]["seed"]) for j in small["jobs"]] == [(1, 5), (2, 5)]
    r = client.post(f"{API}/sweeps", json={"base": {}, "preset": "frontier", "grid": {"train.lr": [0.1]}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "grid"]
    assert client.post(f"{API}/sweeps", json={"base": {}, "preset": "other"}).status_code == 422


def test_a_sweep_is_one_transaction(session, monkeypatch):
    from sqlmodel import select

    from app import crud
    from app.crud import submission
    from app.models import Job, Sweep
    from dynds_core.spec import JobSpec

    specs = [JobSpec.parse({"train": {"seed": s}}) for s in range(4)]
    real = crud.job_columns
    calls = []

    def flaky(spec):
        calls.append(spec)
        if len(calls) == 3:
            raise RuntimeError("the database went away")
        return real(spec)

    monkeypatch.setattr(submission, "job_columns", flaky)
    try:
        crud.create_sweep(session=session, name="s", base={}, grid={"train.seed": [0, 1, 2, 3]}, specs=specs)
    except RuntimeError:
        session.rollback()
    else:
        raise AssertionError("expected the failure")
    assert session.exec(select(Job)).all() == [] and session.exec(select(Sweep)).all() == []
    monkeypatch.setattr(submission, "job_columns", real)
    sweep, jobs = crud.create_sweep(session=session, name="s", base={}, grid={"train.seed": [0, 1, 2, 3, 0]}, specs=specs + specs[:1])
    assert [created for _, created in jobs] == [True, True, True, True, False]  # the repeated point: the job made above
    assert sweep.job_ids[4] == sweep.job_ids[0] and len(session.exec(select(Job)).all()) == 4
