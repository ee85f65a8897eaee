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
    detail = r.json()["detail"]
    assert {tuple(e["loc"]) for e in detail} == {("body", "grid", "dynds.schedule.p", 1), ("body", "grid", "model.arch", 1)}
    assert any("dynds.schedule.p=1.7" in e["msg"] for e in detail)
    assert any("model.arch='vgg'" in e["msg"] for e in detail)
    assert client.get(f"{API}/jobs").json()["count"] == 0 and dispatcher.job_ids == []


def test_unknown_grid_key_bad_base_and_too_many_points(client, settings):
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"dynds.schedule.q": [1]}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "grid", "dynds.schedule.q", 0]
    r = client.post(f"{API}/sweeps", json={"base": {"train": {"epochs": 0}}, "grid": {"train.seed": [0, 1]}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "base", "train", "epochs"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": list(range(101)), "dynds.schedule.p": [0.1] * 10}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "grid"] and "1010" in r.json()["detail"][0]["msg"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.seed": []}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "grid", "train.seed"]
    r = client.post(f"{API}/sweeps", json={"base": {}, "grid": {"train.epochs.x": [1]}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "grid", "train.epochs.x"]
    assert client.get(f"{API}/jobs").json()["count"] == 0
