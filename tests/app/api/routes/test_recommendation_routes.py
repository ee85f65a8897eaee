"""GET /recommendation over jobs finished with constructed results: DynDS and its relatives on one track."""

from app.leaderboard.keys import RELATIVE_METHODS

API = "/api/v1"


def job(finished_job, schedule, seed, gap):
    return finished_job({"dynds": {"schedule": schedule}, "train": {"seed": seed}}, time_saving=0.3, acc_delta=-1.0, equal_time_gap=gap)


def test_recommendation_names_the_relative_whose_verdict_holds(client, finished_job):
    for seed, (g1, g2) in enumerate(((-3.0, 1.0), (-3.5, 1.2), (-2.5, 1.1))):
        job(finished_job, {"kind": "stochastic", "p": 0.5}, seed, g1)
        job(finished_job, {"kind": "progressive"}, seed, g2)
    r = client.get(f"{API}/recommendation")
    assert r.status_code == 200, r.text
    (rec,) = r.json()["recommendations"]
    assert rec["kind"] == "setting" and rec["evidence"]["method"] == RELATIVE_METHODS["progressive"]
    assert rec["evidence"]["seeds"] == [0, 1, 2] and rec["evidence"]["setting_key"].startswith("progressive x0.5")
    assert rec["verdicts"]["loses_to_equal_time"] == 1 and rec["n_conclusive"] == 2
    # the same board asked for one track, and a track nobody ran: no recommendation, not an error
    assert client.get(f"{API}/recommendation", params={"track": rec["track_key"]}).json()["recommendations"] == [rec]
    assert client.get(f"{API}/recommendation", params={"track": "nothing/here"}).json()["recommendations"] == []
    # fewer seeds than asked for: nothing conclusive, said so
    (few,) = client.get(f"{API}/recommendation", params={"min_seeds": 4}).json()["recommendations"]
    assert few["kind"] == "not_enough_evidence"
    assert client.get(f"{API}/recommendation", params={"min_seeds": 0}).status_code == 422


def test_recommendation_is_in_the_openapi_with_its_model(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"][f"{API}/recommendation"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RecommendationsPublic")
    assert "Recommendation" in spec["components"]["schemas"] and "RecommendationEvidence" in spec["components"]["schemas"]


def test_recommendation_is_cached_until_a_job_of_its_tracks_succeeds(client, finished_job, monkeypatch):
    from app.api.routes import recommendation as route

    builds = []
    real = route.build_recommendations
    monkeypatch.setattr(route, "build_recommendations", lambda board: builds.append(1) or real(board))
    for seed in range(3):
        job(finished_job, {"kind": "progressive"}, seed, -2.0)
    first = client.get(f"{API}/recommendation").json()
    assert client.get(f"{API}/recommendation").json() == first and len(builds) == 1  # served from the cache
    assert first["recommendations"][0]["kind"] == "baseline_for_less_time"
    for seed in range(3):  # a setting whose verdict holds: the answer changes at once
        job(finished_job, {"kind": "mixsize"}, seed, 2.0)
    (rec,) = client.get(f"{API}/recommendation").json()["recommendations"]
    assert rec["kind"] == "setting" and rec["evidence"]["schedule_kind"] == "mixsize" and len(builds) == 2
