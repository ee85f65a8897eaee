"""The fleet as deployed: PostgreSQL, a Redis of the test's own, `dynds serve` with the broker and `dynds worker`
processes of different hardware classes (on this CPU-only machine: torch thread counts, and one worker told it has a
GPU by the test-only DYNDS_HARDWARE_OVERRIDE, for routing only: its jobs that need CUDA fail there, as they should).

Who took a job is read from each worker's own log ("job N claimed by ..."): a job asking for cuda is claimed by the
GPU worker and never by a CPU one; one asking for cpu never by the GPU worker; one pinned to a class no live worker
has is answered with a warning and waits, then runs on the worker of that class once it starts. A worker killed
outright leaves the live list after its heartbeat timeout and takes its row back when restarted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from service_helpers import (  # noqa: F401  (fixtures)
    DYNDS,
    Proc,
    db_sessions,
    pg_database,
    redis_server,
    subprocess_env,
    tiny_spec,
    wait_until,
)
from service_helpers import start_serve as serve_process
from sqlmodel import select

from app import crud
from app.fleet import registry
from app.models import Worker
from dynds_core.hardware import detect_hardware
from worker.fleet import Heartbeat, jobs_of_process

FLEET = dict(DYNDS_WORKER_HEARTBEAT_S="0.5", DYNDS_WORKER_TIMEOUT_S="3")
FAKE_GPU = '{"device": "cuda", "model": "Test GPU"}'  # TEST ONLY (dynds_core.hardware.OVERRIDE_ENV)
FINAL = ("succeeded", "failed", "cancelled")


# ---------------------------------------------------------------- in one process


def test_the_heartbeat_reports_the_jobs_of_its_process_and_signs_off(sessions, make_job):
    mine, child_of_other = make_job(tiny_spec(seed=1)), make_job(tiny_spec(seed=2))
    host = socket.gethostname()
    with sessions() as s:
        crud.claim_job(session=s, job_id=mine, worker=f"{host}:{os.getpid()}:MainThread")
        crud.claim_job(session=s, job_id=child_of_other, worker=f"{host}:1:MainThread")  # init's, not ours
        assert jobs_of_process(s, host=host, pid=os.getpid()) == [mine]
    hw = detect_hardware("cpu", threads=1, override=False)
    beat = Heartbeat(sessions, name="test@here", kind="celery", hardware=hw, queues=["cpu", "dynds"], interval_s=0.1).start()
    try:
        with sessions() as s:
            wait_until(lambda: s.get(Worker, beat.worker_id, populate_existing=True).job_ids == [mine], 10, "the beat to name the job")
            s.delete(s.get(Worker, beat.worker_id))  # the row is lost (a cleanup by hand): the next beat registers again
            s.commit()
        wait_until(lambda: _rows(sessions) == [("test@here", True)], 10, "the worker to register again")
    finally:
        beat.stop()
    assert _rows(sessions) == [("test@here", False)]  # signed off: gone at once


def test_the_embedded_executor_registers_as_a_worker_while_it_runs(settings, sessions):
    from worker.embedded import EmbeddedExecutor

    executor = EmbeddedExecutor(settings, session_factory=sessions).start()
    try:
        with sessions() as s:
            (w,) = s.exec(select(Worker)).all()
        assert w.kind == "embedded" and w.name == "dynds serve" and w.pid == os.getpid() and w.stopped_at is None
        assert w.queues[0] == "cpu" and "dynds" in w.queues and w.hardware["threads"] == executor.threads
    finally:
        executor.stop()
    assert _rows(sessions) == [("dynds serve", False)]


def test_a_child_forked_while_the_heartbeat_writes_can_still_use_the_database(settings, sessions):
    """The Celery parent forks a pool child per job while its heartbeat thread writes the registry: a child
    forked mid-query inherited SQLite's internal mutex locked and hung at its first query (a CI failure).
    Here the heartbeat beats without pause and each of many forked children must query within seconds."""
    from sqlalchemy import text

    from worker.fleet import unpooled_sessions

    hw = detect_hardware("cpu", threads=1, override=False)
    beat = Heartbeat(unpooled_sessions(settings.database_url), name="test@fork", kind="celery", hardware=hw, queues=["cpu"], interval_s=0).start()
    try:
        for i in range(40):
            pid = os.fork()
            if pid == 0:  # the child: what a pool child does first (a fresh engine, a query), killed if it hangs
                signal.alarm(10)
                try:
                    with unpooled_sessions(settings.database_url)() as s:
                        s.exec(text("SELECT count(*) FROM worker")).one()
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert not os.WIFSIGNALED(status), f"forked child {i + 1} hung at its first query"
    finally:
        beat.stop()


def _rows(sessions) -> list[tuple[str, bool]]:
    with sessions() as s:
        return [(w.name, alive) for w, alive in registry.list_workers(session=s, timeout_s=30, history_s=3600)]


# ---------------------------------------------------------------- as deployed


def start_serve(tmp_path: Path, db_url: str, broker: str, **env: str) -> tuple[Proc, str]:
    proc, url = serve_process(tmp_path, DYNDS_DATABASE_URL=db_url, DYNDS_BROKER_URL=broker, **FLEET, **env)
    return proc, url + "/api/v1"


def start_worker(tmp_path: Path, db_url: str, broker: str, name: str, **env: str) -> Proc:
    return Proc(
        ["worker", "--name", f"{name}@%h", "--concurrency", "1", "--log-level", "info"],
        subprocess_env(tmp_path, DYNDS_DATABASE_URL=db_url, DYNDS_BROKER_URL=broker, **FLEET, **env),
        tmp_path / f"worker-{name}-{time.monotonic_ns()}.log",
    )


def workers(url: str) -> dict[str, dict]:
    """GET /workers by node name without the host (cpu1@host -> cpu1)."""
    return {w["name"].split("@")[0]: w for w in httpx.get(url + "/workers", timeout=5).json()["data"]}


def wait_live(url: str, names: set[str], *procs: Proc, timeout: float = 90) -> dict[str, dict]:
    def ready():
        for p in procs:
            assert p.popen.poll() is None, f"{p.log_path.name} exited:\n{p.output()}"
        found = workers(url)
        return found if all(n in found and found[n]["alive"] for n in names) else None

    return wait_until(ready, timeout, f"workers {sorted(names)} to be live", interval=0.2)


def claimed_in(proc: Proc, job_id: int) -> bool:
    return f"job {job_id} claimed by" in proc.output()


def wait_final(url: str, job_id: int, *procs: Proc, timeout: float = 90) -> dict:
    def final():
        for p in procs:
            assert p.popen.poll() is None, f"{p.log_path.name} exited:\n{p.output()}"
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in FINAL else None

    return wait_until(final, timeout, f"job {job_id} to end", interval=0.2)


def submit(url: str, spec: dict) -> dict:
    r = httpx.post(url + "/jobs", json={"spec": spec, "force": True}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_jobs_go_only_to_workers_of_the_hardware_they_ask_for(tmp_path, pg_database, redis_server):
    """A cpu worker (1 thread) and a "GPU" worker; then a 2-thread worker for the job that waited for it."""
    redis = redis_server()
    serve, url = start_serve(tmp_path, pg_database, redis.url)
    cpu1 = start_worker(tmp_path, pg_database, redis.url, "cpu1")
    gpu = start_worker(tmp_path, pg_database, redis.url, "gpu", DYNDS_HARDWARE_OVERRIDE=FAKE_GPU)
    procs = [serve, cpu1, gpu]
    try:
        live = wait_live(url, {"cpu1", "gpu"}, *procs)
        assert live["gpu"]["hardware_class"] == "cuda.test-gpu.x1" and "cuda" in live["gpu"]["queues"]
        assert live["cpu1"]["hardware_class"].endswith(".t1") and not any(q.startswith("cuda") for q in live["cpu1"]["queues"])
        t2_class = live["cpu1"]["hardware_class"][: -len("t1")] + "t2"

        on_gpu = [submit(url, tiny_spec(seed=s, device="cuda"))["id"] for s in (1, 2)]
        on_cpu = [submit(url, tiny_spec(seed=s, device="cpu"))["id"] for s in (3, 4)]
        # Pinned to a class no live worker has: `dynds submit` passes on the server's warning, and the job waits.
        pinned = tmp_path / "pinned.json"
        long_pinned = tiny_spec(seed=5, hardware=t2_class)
        long_pinned["data"]["synthetic_size"] = 1024  # 32 steps a run: long enough to be seen running
        del long_pinned["train"]["num_threads"]  # a .t2 class is 2 threads: a spec asking for 1 is refused
        pinned.write_text(json.dumps(long_pinned))
        out = subprocess.run([DYNDS, "submit", str(pinned), "--server", url.removesuffix("/api/v1")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"warning: no live worker serves queue '{t2_class}' now" in out.stderr and "cuda.test-gpu.x1" in out.stderr
        waiting = {"id": int(re.match(r"job (\d+) queued", out.stdout).group(1))}
        for job_id in on_gpu + on_cpu:
            wait_final(url, job_id, *procs)
        for job_id in on_gpu:  # no CUDA here: it may fail on the GPU worker, but only that worker ever has it
            assert claimed_in(gpu, job_id) and not claimed_in(cpu1, job_id), f"job {job_id}\n{cpu1.output()[-2000:]}"
        for job_id in on_cpu:
            job = httpx.get(f"{url}/jobs/{job_id}").json()
            assert job["status"] == "succeeded" and claimed_in(cpu1, job_id) and not claimed_in(gpu, job_id), job["error"]
        assert httpx.get(f"{url}/jobs/{waiting['id']}").json()["status"] == "queued"  # nobody serves its class

        cpu2 = start_worker(tmp_path, pg_database, redis.url, "cpu2", DYNDS_WORKER_THREADS="2")
        procs.append(cpu2)
        assert wait_live(url, {"cpu2"}, *procs)["cpu2"]["hardware_class"] == t2_class
        # Its message is in the queue of its class: the worker of that class takes it as it starts, and says so.
        wait_until(lambda: workers(url)["cpu2"]["job_ids"] == [waiting["id"]], 60, "the t2 worker to report its job")
        job = wait_final(url, waiting["id"], *procs)
        assert job["status"] == "succeeded" and claimed_in(cpu2, waiting["id"]), job["error"]
        assert job["hardware"]["hardware_class"] == t2_class  # it recorded the hardware it pinned
        assert not claimed_in(cpu1, waiting["id"]) and not claimed_in(gpu, waiting["id"])
    finally:
        for p in reversed(procs):
            p.stop()


def test_a_killed_worker_leaves_the_live_list_and_a_restart_takes_its_row_back(tmp_path, pg_database, redis_server):
    redis = redis_server()
    serve, url = start_serve(tmp_path, pg_database, redis.url)
    doomed = start_worker(tmp_path, pg_database, redis.url, "k")
    again = None
    try:
        before = wait_live(url, {"k"}, serve, doomed)["k"]
        assert before["pid"] == doomed.popen.pid and before["kind"] == "celery" and before["host"] == socket.gethostname()
        # The parent beats (every 0.5 s here): seen again well within the timeout.
        wait_until(lambda: workers(url)["k"]["last_seen"] > before["last_seen"], 2, "a heartbeat")
        os.killpg(doomed.popen.pid, signal.SIGKILL)  # the whole worker, children too: nothing signs off
        doomed.popen.wait(10)
        killed_at = time.monotonic()

        def gone_row():
            row = workers(url)["k"]
            return row if not row["alive"] else None

        gone = wait_until(gone_row, 15, "the killed worker to leave the live list")
        waited = time.monotonic() - killed_at
        assert gone["stopped_at"] is None and waited <= 3 + 2, f"gone {waited:.1f} s after the kill (timeout 3 s)"  # timeout + a beat + polling

        again = start_worker(tmp_path, pg_database, redis.url, "k")
        after = wait_live(url, {"k"}, serve, again)["k"]
        assert after["id"] == before["id"] and after["pid"] == again.popen.pid != before["pid"]
        assert [w["name"] for w in httpx.get(url + "/workers").json()["data"]] == [before["name"]]  # one row, not two
        sessions = db_sessions(pg_database)
        try:
            with sessions() as s:
                assert len(s.exec(select(Worker)).all()) == 1
        finally:
            sessions.engine.dispose()

        again.popen.send_signal(signal.SIGTERM)  # a graceful stop signs off: gone at once, not after the timeout
        again.popen.wait(30)
        assert workers(url)["k"]["alive"] is False and workers(url)["k"]["stopped_at"] is not None
    finally:
        for p in (again, doomed, serve):
            if p is not None:
                p.stop()
