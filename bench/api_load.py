"""API load benchmark: 50 concurrent clients on GET /jobs, GET /jobs/{id}/metrics and GET /leaderboard.

Claim (target): with 10,000 jobs and 1,000,000 metric points stored, p99 latency under 50 ms and no
errors, on SQLite and on PostgreSQL, one uvicorn worker process.
Conditions: printed with the results (machine cores, client pacing, duration). The load generator runs
on the same machine as the server, so on a small machine they share the cores.

    python bench/api_load.py                          # both databases, 50 clients, 20 s each
    python bench/api_load.py --db sqlite --think-ms 0 # closed loop: every client fires again at once

Each client repeats: one of the three requests (in turn), then waits --think-ms (jittered +-50%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service_process import pg_database, settle_bulk_load  # noqa: E402

ARCHS = ("resnet20", "resnet32", "resnet56", "resnet18")
DATASETS = ("cifar10", "cifar100")
EPOCHS = (12, 30)
PS = (0.2, 0.35, 0.5, 0.65, 0.8)
KINDS = ("stochastic", "periodic", "phase")


def job_rows(n: int, subsets: tuple[int, ...] = (10000,)) -> list[dict]:
    """n jobs: 16 tracks per train subset x 15 settings x seeds, 90% succeeded with summary figures."""
    from app.crud import job_columns
    from dynds_core.spec import JobSpec

    rng = random.Random(0)
    rows, t0 = [], datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        kind = KINDS[i % 3]
        sched = {
            "kind": kind,
            **({"p": PS[(i // 3) % 5]} if kind == "stochastic" else {"every": 2 + (i // 3) % 5} if kind == "periodic" else {"end": PS[(i // 3) % 5]}),
        }
        spec = JobSpec.parse(
            {
                "name": f"bench-{i}",
                "model": {"arch": ARCHS[(i // 15) % 4]},
                "data": {"dataset": DATASETS[(i // 60) % 2], "train_subset": subsets[(i // 240) % len(subsets)]},
                "train": {"epochs": EPOCHS[(i // 120) % 2], "seed": i // (240 * len(subsets))},
                "dynds": {"schedule": sched},
            }
        )
        cols = job_columns(spec)
        status = "succeeded" if i % 10 else rng.choice(("failed", "queued", "cancelled"))
        created = t0 + timedelta(seconds=i)
        row = {
            **cols,
            "status": status,
            "active_hash": None,
            "attempt": 1,
            "created_at": created,
            "cancel_requested": False,
            "started_at": created,
            "finished_at": created + timedelta(minutes=5) if status in ("succeeded", "failed", "cancelled") else None,
        }
        if status == "succeeded":
            ts, ad = rng.uniform(0.1, 0.6), rng.gauss(-0.4, 0.5)
            row.update(
                time_saving=ts,
                acc_delta=ad,
                flop_saving=ts + 0.1,
                equal_time_gap=rng.gauss(0.8, 0.4),
                dynds_acc=70 + ad,
                baseline_acc=70.0,
                equal_time_acc=69.0,
                dynds_time_s=100 * (1 - ts),
                baseline_time_s=100.0,
            )
        rows.append(row)
    return rows


def seed(url: str, n_jobs: int, n_points: int) -> None:
    from sqlalchemy import insert
    from sqlmodel import Session

    from app.core.db import init_db, make_engine
    from app.models import Job

    engine = make_engine(url)
    init_db(engine)
    t = time.perf_counter()
    rows = job_rows(n_jobs)
    with Session(engine) as s:
        s.execute(insert(Job), rows)
        s.commit()
    per_job = n_points // n_jobs
    values = json.dumps({"loss": 1.234, "acc": 55.5, "lr": 0.05, "batch_type": "reduced", "step_time_s": 0.01})
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cur.copy('COPY metric_point (job_id, run, kind, step, epoch, train_time_s, "values") FROM STDIN') as copy:
                for job_id in range(1, n_jobs + 1):
                    for k in range(per_job):
                        copy.write_row((job_id, "dynds", "step", k, k // 10, 0.01 * k, values))
        else:
            sql = 'INSERT INTO metric_point (job_id, run, kind, step, epoch, train_time_s, "values") VALUES (?,?,?,?,?,?,?)'
            chunk = []
            for job_id in range(1, n_jobs + 1):
                chunk.extend((job_id, "dynds", "step", k, k // 10, 0.01 * k, values) for k in range(per_job))
                if len(chunk) >= 100_000:
                    cur.executemany(sql, chunk)
                    chunk = []
            if chunk:
                cur.executemany(sql, chunk)
        settle_bulk_load(engine, raw, cur)
    finally:
        raw.close()
    engine.dispose()
    print(f"  seeded {n_jobs} jobs and {per_job * n_jobs} metric points in {time.perf_counter() - t:.1f} s", flush=True)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (uvicorn --workers N: the supervisor and its workers)."""
    total = proc_cpu_s(pid)
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                try:
                    total += tree_cpu_s(int(child))
                except OSError:
                    pass  # a child that ended meanwhile
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int, home: str, workers: int = 1, http: str = "auto") -> subprocess.Popen:
    env = {**os.environ, "DYNDS_DATABASE_URL": url, "DYNDS_HOME": home, "OMP_NUM_THREADS": "1"}
    env.pop("DYNDS_BROKER_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            http,
            "--loop",  # the pure-Python pair, or the compiled one (uvicorn[standard]); auto: what is installed
            {"h11": "asyncio", "httptools": "uvloop"}.get(http, "auto"),
            "--timeout-keep-alive",
            "30",
        ],
        cwd=REPO,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API server did not become ready in 60 s")


async def run_clients(base: str, n_clients: int, duration_s: float, think_ms: float, n_jobs: int) -> dict:
    lat: dict[str, list[float]] = {"jobs": [], "metrics": [], "leaderboard": []}
    errors: dict[str, list[str]] = {k: [] for k in lat}
    stop = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(i: int):
            rng = random.Random(i)
            k = i % 3
            await asyncio.sleep(rng.random() * think_ms / 1000)  # spread the starts
            while time.monotonic() < stop:
                name = ("jobs", "metrics", "leaderboard")[k % 3]
                k += 1
                if name == "jobs":
                    path, params = "/api/v1/jobs", {"limit": 50, "offset": rng.randrange(0, 500)}
                    if rng.random() < 0.3:
                        params["status"] = "succeeded"
                elif name == "metrics":
                    path, params = f"/api/v1/jobs/{rng.randrange(1, n_jobs + 1)}/metrics", {"limit": 100}
                else:
                    path, params = "/api/v1/leaderboard", {"max_acc_drop": 0.5}
                t = time.perf_counter()
                try:
                    r = await client.get(path, params=params)
                    ok = r.status_code == 200
                    if not ok:
                        errors[name].append(f"HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    ok = False
                    errors[name].append(type(exc).__name__)
                if ok:
                    lat[name].append((time.perf_counter() - t) * 1000)
                if think_ms:
                    await asyncio.sleep(think_ms / 1000 * rng.uniform(0.5, 1.5))

        await asyncio.gather(*(one(i) for i in range(n_clients)))
    return {"lat": lat, "errors": errors}


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def bench_one(kind: str, args) -> bool:
    from contextlib import ExitStack

    home = tempfile.mkdtemp(prefix="dynds-bench-")
    with ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{home}/bench.db"
        else:
            url = stack.enter_context(pg_database(args.postgres_url))
        print(f"\n[{kind}] seeding ...", flush=True)
        seed(url, args.jobs, args.points)
        port = free_port()
        proc = start_server(url, port, home)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(run_clients(base, 5, 2.0, 0, args.jobs))  # warm-up (caches, connection pool)
            # This process imported torch and built the seed data: without this, its own full garbage
            # collections (about 80 ms each) stalled every request in flight and were counted as latency.
            gc.collect()
            gc.freeze()
            server0, client0, load0 = proc_cpu_s(proc.pid), time.process_time(), os.getloadavg()[0]
            res = asyncio.run(run_clients(base, args.clients, args.duration, args.think_ms, args.jobs))
            server_cpu, client_cpu = proc_cpu_s(proc.pid) - server0, time.process_time() - client0
        finally:
            proc.terminate()
            proc.wait(10)
    ok = True
    total = sum(len(v) for v in res["lat"].values())
    print(f"[{kind}] {args.clients} clients, {args.duration:.0f} s, think {args.think_ms:g} ms: {total / args.duration:.0f} req/s")
    # Whether the server was starved: a saturated server that used well under one core was waiting for CPU.
    print(
        f"  server used {server_cpu / args.duration:.2f} cores ({1000 * server_cpu / max(total, 1):.2f} ms CPU per request), "
        f"clients {client_cpu / args.duration:.2f} cores; load average {load0:.1f} on {os.cpu_count()} cores at the start"
    )
    print(f"  {'endpoint':<14}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, xs in res["lat"].items():
        errs = res["errors"][name]
        p99 = pct(xs, 99)
        print(f"  {name:<14}{len(xs):>7}{pct(xs, 50):>9.1f}{p99:>9.1f}{len(errs):>8}" + (f"  {sorted(set(errs))[:3]}" if errs else ""))
        ok &= not errs and p99 < args.target_p99_ms
    print(f"  target p99 < {args.target_p99_ms:g} ms and no errors: {'met' if ok else 'MISSED'}", flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per database")
    p.add_argument("--think-ms", type=float, default=250.0, help="pause between a client's requests (0: closed loop)")
    p.add_argument("--target-p99-ms", type=float, default=50.0)
    p.add_argument("--postgres-url", default=os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = p.parse_args(argv)
    print(
        f"api_load: {args.jobs} jobs, {args.points} metric points, {args.clients} clients, 1 uvicorn worker, "
        f"{os.cpu_count()} CPU cores shared by server and clients, python {sys.version.split()[0]}"
    )
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    results = [bench_one(k, args) for k in kinds]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
