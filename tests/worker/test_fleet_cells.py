"""A fleet of unlike workers never pools their results: real PostgreSQL, Redis, `dynds serve` with the broker and
two `dynds worker`s of different hardware classes (one and two torch threads: different hardware on a CPU). A
sweep over seeds spread over both ends in one leaderboard cell per hardware class, never a mixed one."""

from __future__ import annotations

import uuid

import httpx
from service_helpers import TINY_SPEC, Proc, pg_database, start_serve, subprocess_env, wait_until  # noqa: F401  (pg_database: a fixture)

API = "/api/v1"


def test_a_sweep_over_seeds_on_two_hardware_classes_ends_in_one_cell_per_class(tmp_path, redis_url, pg_database):
    queue = f"fleet-{uuid.uuid4().hex[:8]}"
    env = {"DYNDS_BROKER_URL": redis_url, "DYNDS_DATABASE_URL": pg_database, "DYNDS_QUEUE": queue}
    serve, url = start_serve(tmp_path, **env)
    procs = [serve]
    for threads in (1, 2):
        # The spec leaves threads to the worker: each job's hardware is its worker's (1 or 2 threads).
        worker_env = subprocess_env(tmp_path, **env, DYNDS_WORKER_THREADS=str(threads))
        procs.append(Proc(["worker", "--name", f"t{threads}@%h", "--concurrency", "1"], worker_env, tmp_path / f"worker-t{threads}.log"))

    def logs() -> str:
        return "\n".join(f"--- {p.log_path.name}:\n{p.output()[-3000:]}" for p in procs)

    try:
        for p in procs[1:]:  # both workers listening before the sweep goes in: the jobs spread over them
            wait_until(lambda p=p: p.popen.poll() is None and "ready" in p.output(), 90, f"{p.log_path.name} to be ready\n{logs()}", 0.3)
        base = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_SPEC.items()}
        del base["train"]["num_threads"]
        r = httpx.post(f"{url}{API}/sweeps", json={"name": "fleet", "base": base, "seeds": list(range(6))}, timeout=30)
        assert r.status_code == 201, r.text
        ids = [j["id"] for j in r.json()["jobs"]]

        def finished():
            for p in procs:
                assert p.popen.poll() is None, f"{p.log_path.name} exited\n{logs()}"
            jobs = [httpx.get(f"{url}{API}/jobs/{i}", timeout=10).json() for i in ids]
            return all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) and jobs

        jobs = wait_until(finished, 240, f"the sweep's jobs\n{logs()}", 1.0)
        assert all(j["status"] == "succeeded" for j in jobs), [(j["id"], j["status"], j["error"]) for j in jobs]
        key_of = {j["id"]: j["hardware_key"] for j in jobs}
        assert {j["hardware"]["threads"] for j in jobs} == {1, 2}, f"not spread over both workers: {key_of}\n{logs()}"
        assert len(set(key_of.values())) == 2

        board = httpx.get(f"{url}{API}/leaderboard", params={"min_seeds": 1, "max_acc_drop": 100, "include_noisy": True}, timeout=30).json()
        assert sorted(t["hardware_key"] for t in board["tracks"]) == sorted(set(key_of.values()))
        for track in board["tracks"]:
            (cell,) = track["entries"]  # one setting: one cell per hardware class
            assert {key_of[i] for i in cell["job_ids"]} == {track["hardware_key"]}, f"a mixed cell: {track}"
            assert cell["n_seeds"] == sum(1 for k in key_of.values() if k == track["hardware_key"])
        assert sorted(i for t in board["tracks"] for i in t["entries"][0]["job_ids"]) == sorted(ids)
        table = httpx.get(f"{url}{API}/leaderboard/hardware", params={"min_seeds": 1, "min_hardware": 2}, timeout=30).json()
        (recipe,) = table["recipes"]
        assert sorted(recipe["hardware_keys"]) == sorted(set(key_of.values()))
    finally:
        for p in procs:
            p.stop()
