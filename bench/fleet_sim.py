"""Fleet simulation: a hundred workers on the real control plane, only the training replaced.

Claim (measured, not a target): how many jobs a second, and metric points a second, one PostgreSQL, one
Redis and one API process carry with 100 workers claiming, heartbeating, flushing metrics and finishing
jobs at once; that no job is lost or run twice (checked from the database's records); the API's p99
meanwhile; and what each recovery and re-dispatch sweep (app/crud/recovery.py, run by app/main.py) costs
over a table of 1,000,000 jobs.

What is real: `dynds serve` as a process (Celery mode: it sends each job to Redis and runs its recovery and
re-dispatch sweeps), jobs submitted through POST /api/v1/jobs, `dynds worker` processes (Celery prefork, as
deployed: one pool child per job slot, a fresh child per job) running worker/runner.run_job with its claim,
reproducibility record, job log, metrics sink (worker/sink.py: flushes, heartbeats, cancel polls) and
finish, on PostgreSQL. What is not: ``dynds_core.train``, replaced in the worker processes this script
starts (and only there: ``worker_entry`` patches the module before `dynds worker` forks its pool) by
``stand_in_train``, a timed lockstep pair (baseline and DynDS, one step of each in turn, sleeping instead of
computing) that reports through the callbacks train would, and returns a JobResult with its figures.

How 100 workers fit on a small machine: --processes `dynds worker`s with --concurrency pool children each
(default 4 x 25). The stand-in sleeps, so the CPU left is the control plane's own: Celery forking a child
per job, the runner, the sink, the API, PostgreSQL and Redis. The load generator shares the machine.

PostgreSQL: by default a private cluster of this machine's PostgreSQL binaries (initdb in a temporary
directory, max_connections 400, otherwise default settings), stopped and deleted afterwards: each of the
100 pool children holds its own connection, more than a default server's max_connections of 100 allows
beside its other clients. --postgres-url uses a server of yours instead (a dedicated database there,
dropped afterwards). Redis: --redis-url (default database 13), a queue named for this run, removed after.

    nice -n 10 python bench/fleet_sim.py                                   # 100 workers, 10,000 jobs, 1M-job sweeps
    nice -n 10 python bench/fleet_sim.py --jobs 500 --processes 2 --concurrency 10 --sweep-jobs 0
    nice -n 10 python bench/fleet_sim.py --jobs 0 --sweep-jobs 1000000     # the sweeps only

Exit status 0 when no job was lost or run twice and every point is stored once.

Measured (2026-12-06, 2 cores shared with other work, load average 10 at the start and 70-100 during: the
machine is far too small for 100 workers of 2-s jobs, so these are CPU-bound floors, not a server's limits):
100 workers, 84 points a job, a fresh child per job (the default): 0.7 jobs/s, 0.9 s of worker CPU a job;
with DYNDS_WORKER_MAX_JOBS_PER_CHILD=100: 2.5 jobs/s (600 jobs), 0.3 s; 0 lost, 0 run twice, no point twice.
The same 100 workers through 10,000 jobs on a faster machine (AMD EPYC, 2026-12-06, load 55-74 during):
16.8 jobs/s and 1,412 points/s sustained, 74 ms of worker CPU and 24 ms of PostgreSQL CPU a job; 0 lost,
0 run twice, no point twice (docs/figures.md).
Sweeps over 1,000,000 jobs: the heartbeat check and the re-dispatch 3-10 ms when they find nothing; a stale
job requeued and re-sent about 11 ms, a queued job re-sent about 1.4 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from api_load import free_port, pct, run_clients  # noqa: E402
from service_process import pg_database, start_serve, stop  # noqa: E402

RUNS = ("baseline", "dynds")  # the lockstep pair of a default job


# ---------------------------------------------------------------- the stand-in for training (worker processes only)


def stand_in_train(spec: Any, callbacks: Any = None, *, steps_per_epoch: int, step_s: float, **_ignored: Any) -> Any:
    """A timed stand-in for ``dynds_core.train`` (bench only): the job's lockstep pair, ``spec.train.epochs``
    epochs of ``steps_per_epoch`` steps, one step of each run in turn, each a sleep of ``step_s`` (half for
    the DynDS run's reduced steps, every other one); every step and epoch reported through the callbacks
    as train does (the sink flushes, heartbeats and polls the cancel flag as in a real job). Returns a
    JobResult with plausible figures; stops within one step when a callback asks."""
    from dynds_core.callbacks import Callback, CallbackList
    from dynds_core.result import EpochMetrics, JobResult, RunResult, StepMetrics

    cb = CallbackList([callbacks] if isinstance(callbacks, Callback) else list(callbacks or ()))
    epochs, rng = spec.train.epochs, random.Random(spec.spec_hash)
    total = epochs * steps_per_epoch
    done = {run: RunResult(run=run) for run in RUNS}
    for run in RUNS:
        cb.on_run_start(run, {"total_steps": total, "epochs": epochs, "device": "cpu"})
    cancelled = False
    for epoch in range(epochs):
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            for run in RUNS:
                if cb.should_stop():
                    cancelled = True
                    break
                reduced = run == "dynds" and step % 2 == 1
                dt = step_s * (0.5 if reduced else 1.0)
                time.sleep(dt)
                r = done[run]
                r.steps, r.train_time_s = r.steps + 1, r.train_time_s + dt
                r.steps_reduced += reduced
                r.steps_full += not reduced
                loss = 2.3 * math.exp(-2 * step / total) + rng.gauss(0, 0.05)
                cb.on_step(
                    StepMetrics(
                        run=run, step=step, epoch=epoch, batch_type="reduced" if reduced else "full", loss=loss,
                        acc=100 * (1 - loss / 2.5), lr=0.1 * (1 - step / total), step_time_s=dt, train_time_s=r.train_time_s,
                        total_steps=total,
                    )
                )  # fmt: skip
            if cancelled:
                break
        if cancelled:
            break
        for run in RUNS:
            r = done[run]
            val_acc = 40 + 30 * (epoch + 1) / epochs + rng.gauss(0, 0.5)
            m = EpochMetrics(
                run=run, epoch=epoch, epochs=epochs, train_loss=1.0, train_acc=val_acc + 2, val_loss=1.1, val_acc=val_acc,
                train_time_s=r.train_time_s, time_full_s=r.train_time_s, time_reduced_s=0.0, steps_full=r.steps_full,
                steps_reduced=r.steps_reduced,
            )  # fmt: skip
            r.epochs.append(m)
            r.final_val_acc = r.best_val_acc = val_acc
            cb.on_epoch(m)
    for run in RUNS:
        cb.on_run_end(done[run])
    base, dyn = done["baseline"], done["dynds"]
    saving = 1 - dyn.train_time_s / base.train_time_s if base.train_time_s else None
    delta = (dyn.final_val_acc - base.final_val_acc) if dyn.final_val_acc is not None and base.final_val_acc is not None else None
    return JobResult(
        spec_hash=spec.spec_hash, spec=spec.model_dump(mode="json"), device="cpu", dynds=dyn, baseline=base,
        time_saving=saving, acc_delta=delta, flop_saving=saving, pairing="lockstep", cancelled=cancelled,
    )  # fmt: skip


def worker_entry(argv: list[str]) -> int:
    """`python bench/fleet_sim.py worker --steps-per-epoch N --step-ms MS -- <dynds worker arguments>`: a real
    `dynds worker` whose ``dynds_core.train`` is ``stand_in_train`` (patched here, before the pool forks, so
    every child runs the stand-in; runner.run_job reads ``dynds_core.train`` at each job)."""
    p = argparse.ArgumentParser(prog="fleet_sim.py worker")
    p.add_argument("--steps-per-epoch", type=int, required=True)
    p.add_argument("--step-ms", type=float, required=True)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    import dynds_core

    dynds_core.train = functools.partial(stand_in_train, steps_per_epoch=args.steps_per_epoch, step_s=args.step_ms / 1000)  # type: ignore[attr-defined]
    from dynds.cli import main

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return main(["worker", *rest])


# ---------------------------------------------------------------- services: a private PostgreSQL, the API, workers


@contextlib.contextmanager
def own_postgres(max_connections: int = 400):
    """A PostgreSQL cluster of this run's own (this machine's binaries, default settings but
    ``max_connections``), on a free port of 127.0.0.1 with trust authentication; yields its admin URL.
    Run as the `postgres` user when this process is root (initdb refuses root)."""
    import glob
    import pwd

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    bindir = Path(bins[-1]).parent if bins else Path(shutil.which("initdb") or "initdb").parent
    root = Path(tempfile.mkdtemp(prefix="dynds-fleet-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, **quiet)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*ctl, "-o", opts, "-l", str(root / "log"), "-w", "start"], check=True, **quiet)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], **quiet)
        shutil.rmtree(root, ignore_errors=True)


def postgres_cpu_s(admin_url: str) -> float:
    """CPU seconds of the server's processes: the postmaster (with its exited backends) and those alive."""
    import psycopg

    with psycopg.connect(admin_url) as conn:
        pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()[0]
    master = parent_of(pid)
    return tree_cpu_s(master) if master else 0.0


def parent_of(pid: int) -> int | None:
    from worker.fleet import parent_pid

    return parent_pid(pid)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its children alive now, and its children that exited (cutime, cstime)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    own = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_of(int(p)) == pid]
    return own + sum(tree_cpu_s(k) for k in kids)


def stop_all(procs: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM to every worker's session at once (a warm shutdown: running jobs stop after their step and are
    requeued), SIGKILL to what is left after ``grace_s``."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            stop(p, grace_s=0)


def redis_cpu_s(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def forget_queue(url: str, queue: str) -> None:
    """The run's queue and what Celery keeps about it (bindings) out of the Redis database."""
    import redis

    client = redis.Redis.from_url(url)
    names = [queue, *client.scan_iter(match=f"*{queue}*")]
    client.delete(*names)


def redis_commands(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("stats")["total_commands_processed"])


def redispatch_after_s() -> float:
    """The API's re-dispatch age: DYNDS_REDISPATCH_AFTER_S from this environment (which `dynds serve` inherits)."""
    from app.core.config import Settings

    return float(os.environ.get("DYNDS_REDISPATCH_AFTER_S", Settings.model_fields["redispatch_after_s"].default))


def redis_pushes(url: str) -> int:
    """LPUSH calls so far, the whole server's: kombu's Redis transport publishes each task message with one."""
    import redis

    return int(redis.Redis.from_url(url).info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Fleet:
    """What one simulation runs: ``processes`` `dynds worker`s of ``concurrency`` pool children each."""

    jobs: int = 10_000
    processes: int = 4
    concurrency: int = 25
    epochs: int = 2
    steps_per_epoch: int = 20
    step_ms: float = 30.0
    submitters: int = 4  # concurrent POST /jobs clients
    readers: int = 4  # concurrent GET clients meanwhile (a few dashboards open)
    think_ms: float = 500.0
    timeout_s: float = 540.0  # from the first submission to the last job's end
    max_jobs_per_child: int = 1  # DYNDS_WORKER_MAX_JOBS_PER_CHILD: 1 (the default) forks a fresh pool child per job
    redis_url: str = "redis://127.0.0.1:6379/13"
    queue: str = field(default_factory=lambda: f"fleet-sim-{os.getpid()}")

    @property
    def workers(self) -> int:
        return self.processes * self.concurrency

    @property
    def points_per_job(self) -> int:
        return len(RUNS) * self.epochs * (self.steps_per_epoch + 1)  # each step, and each epoch's evaluation

    def spec(self, i: int) -> dict[str, Any]:
        return {
            "name": f"fleet-{i}",
            "model": {"arch": "resnet20"},
            "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 128},
            "train": {"epochs": self.epochs, "batch_size": 32, "seed": i, "num_threads": 1},
        }


def service_env(url: str, home: Path, fleet: Fleet) -> dict[str, str]:
    return {
        "DYNDS_DATABASE_URL": url,
        "DYNDS_HOME": str(home),
        "DYNDS_QUEUE": fleet.queue,
        "DYNDS_WORKER_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def start_workers(url: str, home: Path, fleet: Fleet, logs: Path) -> list[subprocess.Popen]:
    env = {
        **os.environ, **service_env(url, home, fleet), "DYNDS_BROKER_URL": fleet.redis_url,
        "DYNDS_WORKER_MAX_JOBS_PER_CHILD": str(fleet.max_jobs_per_child),
    }  # fmt: skip
    procs = []
    for k in range(fleet.processes):
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "worker", "--steps-per-epoch", str(fleet.steps_per_epoch),
            "--step-ms", str(fleet.step_ms), "--", "--concurrency", str(fleet.concurrency),
            "--name", f"{fleet.queue}-{k}@%h", "--log-level", "warning",
        ]  # fmt: skip
        out = open(logs / f"worker-{k}.log", "wb")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def wait_registered(engine: Any, fleet: Fleet, procs: list[subprocess.Popen], timeout_s: float = 180.0) -> None:
    """Until every worker process has registered in the fleet's registry (its pool is forked by then)."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a dynds worker exited with {p.returncode} at start-up (see its log)")
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM worker WHERE name LIKE :n AND stopped_at IS NULL"), {"n": f"{fleet.queue}-%"}).scalar()
        if n >= fleet.processes:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the dynds workers did not register within {timeout_s:g} s")


# ---------------------------------------------------------------- load: submissions, readers


async def submit_all(base: str, fleet: Fleet, submitted: list[int]) -> list[float]:
    """POST /api/v1/jobs ``fleet.jobs`` times from ``fleet.submitters`` clients; the ids go to ``submitted``."""
    lat: list[float] = []
    counter = iter(range(fleet.jobs))
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one() -> None:
            for i in counter:
                t = time.perf_counter()
                r = await client.post("/api/v1/jobs", json={"spec": fleet.spec(i)})
                if r.status_code != 201:
                    raise RuntimeError(f"POST /jobs answered {r.status_code}: {r.text[:300]}")
                lat.append((time.perf_counter() - t) * 1000)
                submitted.append(r.json()["id"])

        await asyncio.gather(*(one() for _ in range(fleet.submitters)))
    return lat


class Readers(threading.Thread):
    """``n`` clients reading GET /jobs, /jobs/{id}/metrics and /leaderboard (bench/api_load.run_clients) in
    windows of ``window_s``, until stopped; latencies in ms and errors by endpoint."""

    def __init__(self, base: str, n: int, think_ms: float, submitted: list[int], window_s: float = 5.0):
        super().__init__(name="fleet-readers", daemon=True)
        self.base, self.n, self.think_ms, self.submitted, self.window_s = base, n, think_ms, submitted, window_s
        self.lat: dict[str, list[float]] = {"jobs": [], "metrics": [], "leaderboard": []}
        self.errors: dict[str, list[str]] = {k: [] for k in self.lat}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.submitted:
                time.sleep(0.2)
                continue
            # Metrics of jobs 1..n: the jobs submitted so far (a fresh database numbers them from 1).
            res = asyncio.run(run_clients(self.base, self.n, self.window_s, self.think_ms, len(self.submitted)))
            for k in self.lat:
                self.lat[k] += res["lat"][k]
                self.errors[k] += res["errors"][k]


# ---------------------------------------------------------------- the ledger: what the database says happened


def ledger(engine: Any, submitted: list[int], fleet: Fleet) -> dict[str, Any]:
    """Every submitted job succeeded exactly once, its points stored once each: from the database's rows."""
    from sqlalchemy import text

    q = {
        "statuses": "SELECT status, count(*) FROM job GROUP BY status ORDER BY status",
        "jobs": "SELECT count(*) FROM job",
        # Run twice: two runs of one job, neither stopped by a worker's shutdown (a stopped run is requeued and
        # its points deleted, so its rerun is its only run: counted apart, in reruns_after_a_stop).
        "run_twice": "SELECT count(*) FROM job WHERE attempts - stops > 1",
        "reruns_after_a_stop": "SELECT count(*) FROM job WHERE stops > 0 AND status = 'succeeded'",
        # The runner logs one "claimed by" line per claim, stored with the job (app/logs.py): one per attempt.
        "claims_not_attempts": "SELECT count(*) FROM job j WHERE (SELECT count(*) FROM job_log l WHERE l.job_id = j.id "
        "AND l.message LIKE '%claimed by%') <> j.attempts",
        "points": "SELECT count(*) FROM metric_point",
        "duplicate_points": "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM metric_point "
        "GROUP BY job_id, run, kind, step, epoch HAVING count(*) > 1) d",
        "jobs_with_wrong_point_count": "SELECT count(*) FROM job j WHERE (SELECT count(*) FROM metric_point m WHERE m.job_id = j.id) <> :per_job",
        "span_s": "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM job",
        # Sustained: the middle 80 % of the finishes (start-up and drain left out).
        "middle_s": "SELECT extract(epoch FROM percentile_disc(0.9) WITHIN GROUP (ORDER BY finished_at) "
        "- percentile_disc(0.1) WITHIN GROUP (ORDER BY finished_at)) FROM job WHERE status = 'succeeded'",
        "run_s_p50": "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) FROM job",
        "wait_s_p50": "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) FROM job",
        "wait_s_max": "SELECT max(extract(epoch FROM started_at - created_at)) FROM job",
        # Waited in the queue past the re-dispatch age (DYNDS_REDISPATCH_AFTER_S): each one due to be sent again
        # by the age alone (app/main.py leaves those whose queue still holds messages).
        "waited_past_redispatch": "SELECT count(*) FROM job WHERE extract(epoch FROM started_at - created_at) > :redispatch_after_s",
        "db_bytes": "SELECT pg_database_size(current_database())",
        # Transactions and rows written, all clients (API, workers, this harness) since the database was made.
        "xacts": "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        "rows_written": "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = current_database()",
    }
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, sql in q.items():
            rows = conn.execute(text(sql), {"per_job": fleet.points_per_job, "redispatch_after_s": redispatch_after_s()}).all()
            out[name] = dict(rows) if name == "statuses" else rows[0][0]
        ids = {r[0] for r in conn.execute(text("SELECT id FROM job WHERE status = 'succeeded'"))}
    with engine.connect() as conn:
        live = {r[0] for r in conn.execute(text("SELECT id FROM job WHERE status IN ('queued', 'running')"))}
    # Lost: a submitted job that neither succeeded nor is still waiting (failed, cancelled, or gone).
    out["lost"] = len(set(submitted) - ids - live)
    out["unfinished"] = len(live)
    out["ok"] = (
        out["lost"] == 0
        and out["unfinished"] == 0
        and out["run_twice"] == 0
        and out["claims_not_attempts"] == 0
        and out["jobs"] == len(submitted) == fleet.jobs
        and out["duplicate_points"] == 0
        and out["jobs_with_wrong_point_count"] == 0
        and out["points"] == fleet.jobs * fleet.points_per_job
    )
    return out


# ---------------------------------------------------------------- one simulation


def run_fleet(admin_url: str, fleet: Fleet, *, verbose: bool = True) -> dict[str, Any]:
    """Serve, start the workers, submit ``fleet.jobs`` jobs through the API while readers read, wait until
    every job has ended (or ``fleet.timeout_s``), stop everything, and return the figures and the ledger."""

    from app.core.db import init_db, make_engine

    say = print if verbose else (lambda *a, **k: None)
    home = Path(tempfile.mkdtemp(prefix="dynds-fleet-"))
    procs: list[subprocess.Popen] = []
    api = None
    with pg_database(admin_url, "dynds_fleet_sim") as url:
        engine = make_engine(url)
        init_db(engine)
        try:
            port = free_port()
            api = start_serve(service_env(url, home, fleet), port, args=("--broker-url", fleet.redis_url))
            base = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            procs = start_workers(url, home, fleet, home)
            wait_registered(engine, fleet, procs)
            say(f"  {fleet.processes} dynds workers x {fleet.concurrency} registered in {time.monotonic() - t0:.0f} s; {load()}", flush=True)
            cpu0 = {
                "api": tree_cpu_s(api.pid), "workers": sum(tree_cpu_s(p.pid) for p in procs),
                "postgres": postgres_cpu_s(admin_url), "redis": redis_cpu_s(fleet.redis_url), "harness": time.process_time(),
            }  # fmt: skip
            commands0, pushes0 = redis_commands(fleet.redis_url), redis_pushes(fleet.redis_url)
            submitted: list[int] = []
            readers = Readers(base, fleet.readers, fleet.think_ms, submitted)
            readers.start()
            load0, t_start = os.getloadavg(), time.monotonic()
            submit_lat = asyncio.run(submit_all(base, fleet, submitted))
            submit_s = time.monotonic() - t_start
            say(f"  {len(submitted)} jobs submitted in {submit_s:.1f} s; {load()}", flush=True)
            ended, last_report = 0, time.monotonic()
            from sqlalchemy import text

            while time.monotonic() - t_start < fleet.timeout_s:
                with engine.connect() as conn:
                    ended = conn.execute(text("SELECT count(*) FROM job WHERE status IN ('succeeded', 'failed', 'cancelled')")).scalar()
                if ended >= fleet.jobs:
                    break
                if time.monotonic() - last_report > 30:
                    say(f"  {ended} jobs ended after {time.monotonic() - t_start:.0f} s; {load()}", flush=True)
                    last_report = time.monotonic()
                time.sleep(0.5)
            wall_s = time.monotonic() - t_start
            readers.stopping.set()
            readers.join(60)
            cpu = {
                "api": tree_cpu_s(api.pid), "workers": sum(tree_cpu_s(p.pid) for p in procs),
                "postgres": postgres_cpu_s(admin_url), "redis": redis_cpu_s(fleet.redis_url), "harness": time.process_time(),
            }  # fmt: skip
            cpu = {k: cpu[k] - cpu0[k] for k in cpu}
            commands = redis_commands(fleet.redis_url) - commands0
            pushes = redis_pushes(fleet.redis_url) - pushes0
            load1 = os.getloadavg()
        finally:
            stop_all(procs)
            stop(api)
            with contextlib.suppress(Exception):
                forget_queue(fleet.redis_url, fleet.queue)
        figures = ledger(engine, submitted, fleet)
        engine.dispose()
    shutil.rmtree(home, ignore_errors=True)
    figures.update(
        wall_s=wall_s, submit_s=submit_s, submit_lat=submit_lat, reads=readers.lat, read_errors=readers.errors, cpu=cpu,
        load_start=load0, load_end=load1, ended=ended, redis_commands=commands, messages=pushes,
    )  # fmt: skip
    return figures


def report(fleet: Fleet, f: dict[str, Any]) -> None:
    span, middle = float(f["span_s"] or 0), float(f["middle_s"] or 0)
    succeeded = f["statuses"].get("succeeded", 0)
    print(f"\n[fleet] {fleet.workers} workers ({fleet.processes} dynds worker x {fleet.concurrency}, a fresh child every "
          f"{fleet.max_jobs_per_child} jobs), {fleet.jobs} jobs of "
          f"{fleet.points_per_job} points ({len(RUNS)} runs x {fleet.epochs} epochs x {fleet.steps_per_epoch} steps, "
          f"{fleet.step_ms:g} ms per step)")  # fmt: skip
    print(f"  load average at start {', '.join(f'{x:.2f}' for x in f['load_start'])}; at end {', '.join(f'{x:.2f}' for x in f['load_end'])}"
          f" ({os.cpu_count()} cores, shared)")  # fmt: skip
    print(f"  submitted {fleet.jobs} in {f['submit_s']:.1f} s ({fleet.jobs / max(f['submit_s'], 1e-9):.0f}/s from {fleet.submitters} "
          f"clients, POST p50 {pct(f['submit_lat'], 50):.0f} ms, p99 {pct(f['submit_lat'], 99):.0f} ms)")  # fmt: skip
    if succeeded:
        print(f"  jobs: {succeeded / span:.1f}/s over the whole run ({span:.0f} s, first start to last finish), "
              f"{0.8 * succeeded / middle if middle else float('nan'):.1f}/s sustained (middle 80 % of finishes)")  # fmt: skip
        print(f"  metric points written: {f['points'] / span:.0f}/s over the run, "
              f"{0.8 * succeeded * fleet.points_per_job / middle if middle else float('nan'):.0f}/s sustained")  # fmt: skip
        ideal = fleet.workers / (f["run_s_p50"] or float("nan"))
        print(f"  a job runs {f['run_s_p50']:.2f} s (p50, claim to finish; the stand-in alone "
              f"{fleet.epochs * fleet.steps_per_epoch * fleet.step_ms * 1.75 / 1000:.2f} s); waits {f['wait_s_p50']:.1f} s in the queue (p50); "
              f"{fleet.workers} busy workers would finish {ideal:.1f}/s")  # fmt: skip
    cpu = f["cpu"]
    print("  CPU seconds during the run: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
          + f" (of {f['wall_s'] * (os.cpu_count() or 1):.0f} the machine had; redis: the whole server)")  # fmt: skip
    n = max(succeeded, 1)
    print(f"  per job: {f['xacts'] / n:.0f} PostgreSQL transactions, {f['rows_written'] / n:.0f} rows written, "
          f"{f['redis_commands'] / n:.0f} Redis commands (the whole server's); CPU ms: "
          + ", ".join(f"{k} {1000 * v / n:.0f}" for k, v in cpu.items()))  # fmt: skip
    print(f"  database size {f['db_bytes'] / 1e6:.0f} MB")
    print(
        f"  task messages published: {f['messages']} for {f['jobs']} jobs (the rest sent again); {f['waited_past_redispatch']} jobs "
        f"waited past the re-dispatch age ({redispatch_after_s():g} s; the longest {f['wait_s_max'] or 0:.0f} s)"
    )
    print(f"  API while it ran ({sum(map(len, f['reads'].values()))} reads):")
    for name, xs in f["reads"].items():
        errs = f["read_errors"][name]
        print(f"    {name:<12} n={len(xs):<6} p50 {pct(xs, 50):6.1f} ms  p99 {pct(xs, 99):6.1f} ms  errors {len(errs)}"
              + (f" {sorted(set(errs))[:3]}" if errs else ""))  # fmt: skip
    print(f"  ledger: statuses {f['statuses']}; lost {f['lost']}; not finished in time {f['unfinished']}; "
          f"run twice {f['run_twice']} (rerun after a shutdown stopped it: {f['reruns_after_a_stop']}; "
          f"claims logged <> attempts: {f['claims_not_attempts']}); points {f['points']} (expected {fleet.jobs * fleet.points_per_job}), "
          f"duplicated {f['duplicate_points']}, jobs with a wrong count {f['jobs_with_wrong_point_count']}: "
          f"{'OK' if f['ok'] else 'FAILED'}", flush=True)  # fmt: skip


# ---------------------------------------------------------------- the sweeps over a million jobs


def fill_jobs(engine: Any, n: int, *, queued: int, running: int, stale: int) -> None:
    """``n`` jobs generated in the database (generate_series over one submitted job's row): ``queued`` never
    claimed and last sent an hour ago, ``running`` of which ``stale`` without a heartbeat for an hour, the
    rest finished (90 % succeeded). One job is submitted through crud for a real row to copy."""
    from sqlalchemy import text
    from sqlmodel import Session

    from app import crud
    from dynds_core.spec import JobSpec

    with Session(engine) as s:
        crud.submit_job(session=s, spec=JobSpec.parse(Fleet().spec(0)), force=True)
    with engine.begin() as conn:
        names = "SELECT column_name FROM information_schema.columns WHERE table_name = 'job' AND column_name <> 'id'"
        cols = [r[0] for r in conn.execute(text(names))]
        over = {
            "name": "'fleet-' || g",
            "seed": "g",
            "active_hash": "NULL",
            # Queued jobs: submitted 2 h ago, sent again 1 h ago (due under the doubling back-off); the rest over 40 days.
            "created_at": f"CASE WHEN g <= {queued} THEN now() - interval '2 hours' ELSE now() - interval '40 days' + g * interval '1 second' END",
            "status": f"CASE WHEN g <= {queued} THEN 'queued' WHEN g <= {queued + running} THEN 'running' "
            "WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END",
            "attempts": f"CASE WHEN g <= {queued} THEN 0 ELSE 1 END",
            "started_at": f"CASE WHEN g <= {queued} THEN NULL ELSE now() - interval '40 days' + g * interval '1 second' END",
            "finished_at": f"CASE WHEN g <= {queued + running} THEN NULL "
            "ELSE now() - interval '40 days' + g * interval '1 second' + interval '5 minutes' END",
            "heartbeat_at": f"CASE WHEN g <= {queued} THEN now() - interval '1 hour' WHEN g <= {queued + stale} THEN now() - interval '1 hour' "
            f"WHEN g <= {queued + running} THEN now() ELSE NULL END",
            "worker": f"CASE WHEN g <= {queued} THEN NULL ELSE 'gpu-' || (g % 100) || chr(58) || (1000 + g % 50000) || chr(58) || 'MainThread' END",
            "time_saving": "CASE WHEN g % 10 = 0 THEN NULL ELSE 0.1 + (g % 50) / 100.0 END",
            "acc_delta": "CASE WHEN g % 10 = 0 THEN NULL ELSE -1 + (g % 20) / 10.0 END",
        }
        sel = ", ".join(over.get(c, f"t.{c}") for c in cols)
        quoted = ", ".join(f'"{c}"' for c in cols)
        # A bulk load: no triggers (0009's results_version bump per succeeded row updates one counter row per track
        # 900,000 times in one transaction, which is quadratic) and no foreign-key checks; the sweeps read neither.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for lo in range(1, n, 100_000):
            hi = min(n - 1, lo + 99_999)
            conn.execute(
                text(
                    f"WITH t AS MATERIALIZED (SELECT * FROM job WHERE id = 1) INSERT INTO job ({quoted}) "
                    f"SELECT {sel} FROM t CROSS JOIN generate_series({lo}, {hi}) g"
                )
            )
        conn.execute(text("UPDATE job SET status = 'succeeded', finished_at = now() WHERE id = 1"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE job"))  # what autovacuum would have done on a live server


def sweep_costs(admin_url: str, n: int, redis_url: str, *, queued: int = 2000, running: int = 1000, stale: int = 100, repeat: int = 3) -> None:
    """The recovery and re-dispatch sweeps of app/main.py, timed over ``n`` jobs, each as the API runs it."""
    from sqlmodel import Session

    from app import crud
    from app.core.config import Settings
    from app.core.db import init_db, make_engine
    from app.dispatch import CeleryDispatcher
    from app.main import check_heartbeats, redispatch_queued

    queue = f"fleet-sim-sweep-{os.getpid()}"
    logging.getLogger("app").setLevel(logging.ERROR)  # the sweeps' warnings name every job they touch
    with tempfile.TemporaryDirectory(prefix="dynds-fleet-sweep-") as tmp, pg_database(admin_url, "dynds_fleet_sweep") as url:
        home = Path(tmp)
        engine = make_engine(url)
        init_db(engine)
        t = time.perf_counter()
        fill_jobs(engine, n, queued=queued, running=running, stale=stale)
        print(f"\n[sweeps] {n} jobs generated in {time.perf_counter() - t:.0f} s ({queued} queued, last sent 1 h ago; {running} running, "
              f"{stale} of them without a heartbeat for 1 h; the rest finished); {load()}", flush=True)  # fmt: skip
        settings = Settings(home=home, database_url=url, broker_url=redis_url, queue=queue, recover_policy="resume")
        dispatcher = CeleryDispatcher(redis_url, queue=queue)

        def timed(what: str, fn) -> None:
            times, out = [], None
            for _ in range(repeat):
                t = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t)
            print(f"  {what:<64} {min(times) * 1000:8.1f} ms best, {max(times) * 1000:8.1f} ms worst of {repeat}; "
                  f"last returned {len(out) if out is not None else 0} jobs", flush=True)  # fmt: skip

        def first(fn):  # a sweep that changes rows: the first run does the work, the others find none left
            t = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t

        out, dt = first(lambda: check_heartbeats(engine, settings, dispatcher))
        print(f"  {'heartbeat check, ' + str(stale) + ' stale jobs requeued and re-sent':<64} {dt * 1000:8.1f} ms ({len(out)} jobs)")
        timed("heartbeat check, none stale (the steady state, every 60 s)", lambda: check_heartbeats(engine, settings, dispatcher))
        for n_round in range(1, 100):  # at start-up: every queued job due, at most 1,000 a round (a round every 30 s)
            out, dt = first(lambda: redispatch_queued(engine, settings, dispatcher, older_than_s=0.0))
            print(f"  {f're-dispatch at start-up, round {n_round} (every queued job due)':<64} {dt * 1000:8.1f} ms ({len(out)} jobs)")
            if not out:
                break
        timed("re-dispatch, none due (the steady state, every 30 s)", lambda: redispatch_queued(engine, settings, dispatcher))

        def executor_recovery():
            with Session(engine) as s:
                return crud.recover_interrupted(session=s, policy="resume", executor_only=True)

        timed("start-up recovery of embedded executor jobs (none)", executor_recovery)
        with contextlib.suppress(Exception):
            forget_queue(redis_url, queue)
        engine.dispose()


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker_entry(argv[1:])
    d = Fleet()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=d.jobs, help="jobs to run (0: only the sweeps)")
    p.add_argument("--processes", type=int, default=d.processes, help="dynds worker processes")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="pool children (job slots) per worker process")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--step-ms", type=float, default=d.step_ms, help="the stand-in's sleep per step of a run (ms)")
    p.add_argument("--max-jobs-per-child", type=int, default=d.max_jobs_per_child, help="jobs a pool child runs before a fresh one replaces it")
    p.add_argument("--readers", type=int, default=d.readers, help="concurrent API readers while the fleet runs")
    p.add_argument("--think-ms", type=float, default=d.think_ms)
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds from the first submission to the last job's end")
    p.add_argument("--sweep-jobs", type=int, default=1_000_000, help="jobs in the table the sweeps are timed over (0: none)")
    p.add_argument("--redis-url", default=d.redis_url)
    p.add_argument("--postgres-url", default=None, help="a PostgreSQL server to use (default: a private cluster of this run)")
    p.add_argument("--max-connections", type=int, default=400, help="the private cluster's max_connections")
    a = p.parse_args(argv)
    fleet = Fleet(
        jobs=a.jobs, processes=a.processes, concurrency=a.concurrency, epochs=a.epochs, steps_per_epoch=a.steps_per_epoch,
        step_ms=a.step_ms, max_jobs_per_child=a.max_jobs_per_child, readers=a.readers, think_ms=a.think_ms, timeout_s=a.timeout,
        redis_url=a.redis_url,
    )  # fmt: skip
    print(f"fleet_sim: python {sys.version.split()[0]}, {os.cpu_count()} cores; {load()}", flush=True)
    with contextlib.ExitStack() as stack:
        admin = a.postgres_url or stack.enter_context(own_postgres(a.max_connections))
        ok = True
        if fleet.jobs:
            figures = run_fleet(admin, fleet)
            report(fleet, figures)
            ok = figures["ok"]
        if a.sweep_jobs:
            sweep_costs(admin, a.sweep_jobs, a.redis_url)
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop the services
    sys.exit(main())
