"""The dashboard's requests at a million jobs: 50 clients on the jobs list (sorted by every column, deep
pages by cursor, filters), the leaderboard, a track's board and frontier, a job page and its metrics.

Claim (target): with 1,000,000 finished jobs (128 tracks: 16 recipes x 8 hardware keys, 15 settings
each) and 20,000,000 metric points in PostgreSQL, API p99 under 50 ms and no errors, one uvicorn
worker (--server-workers for more). Each request's own time on the server (its Server-Timing header) prints
beside what the clients saw. SQLite beside it at a smaller size. Conditions (cores, load, pacing) print with the figures;
the clients run on the server's machine and share its cores.

    python bench/million_jobs.py                                  # PostgreSQL, 1,000,000 jobs, 20 points each
    python bench/million_jobs.py --jobs 100000 --points 20000000  # 200 points per job
    python bench/million_jobs.py --db sqlite --jobs 100000 --points 2000000

The jobs are made in the database itself (INSERT ... SELECT over a series, from 240 real job rows of
bench/api_load.py as templates): a million rows take a minute, not an hour of Python. The database is
a throwaway one (dropped afterwards, --keep to keep it for a rerun with --reuse).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import lean_http  # noqa: E402
from api_load import free_port, job_rows, pct, proc_cpu_s, start_server, tree_cpu_s  # noqa: E402

HARDWARE_KEYS = tuple(f"cuda:NVIDIA H100 80GB HBM3 x{1 + i % 2} rack{i}" for i in range(8))
VERDICTS = ("beats_equal_time", "tie", "needs_seeds", "loses_to_equal_time", "no_equal_time")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POINT = '{"loss": 1.234, "acc": 55.5, "lr": 0.05, "batch_type": "reduced", "step_time_s": 0.01}'


def _sql(dialect: str) -> dict[str, str]:
    """The few expressions the two databases write differently."""
    if dialect == "postgresql":
        return {
            "rand": "random()",
            "at": "(TIMESTAMPTZ '2026-01-01 00:00:00+00' + ({s}) * INTERVAL '1 second')",
            "series": "SELECT g FROM generate_series(1, {n}) AS g",
            "json": "'{v}'::json",
        }
    return {
        "rand": "((abs(random()) % 1000000) / 1000000.0)",
        "at": "(datetime('2026-01-01 00:00:00', '+' || ({s}) || ' seconds') || '.000000')",
        "series": "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s",
        "json": "'{v}'",
    }


def fill(url: str, n_jobs: int, n_points: int) -> None:
    """n_jobs finished jobs (96% succeeded with summary figures, the rest failed or cancelled) and about
    n_points metric points, written by the database from 240 template rows."""
    from sqlalchemy import insert, text
    from sqlmodel import Session

    from app.core.db import init_db, make_engine
    from app.models import Job

    engine = make_engine(url)
    init_db(engine)
    dialect = engine.dialect.name
    sql = _sql(dialect)
    templates = job_rows(240 * 4, subsets=(5000, 10000, 20000, 50000))  # 64 recipes x 15 settings
    n_tpl = len(templates)
    t = time.perf_counter()
    with Session(engine) as s:
        s.execute(insert(Job), templates)
        s.commit()
    r1, r2, r3 = (sql["rand"],) * 3
    ts = "(0.1 + 0.5 * r1)"
    ad = "(-0.4 + 1.5 * (r2 - 0.5))"
    hw = " ".join(f"WHEN {i} THEN '{k}'" for i, k in enumerate(HARDWARE_KEYS))
    verdict = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(VERDICTS))
    over = {
        "name": "'bench-' || g",
        "status": "CASE g % 50 WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled' ELSE 'succeeded' END",
        "active_hash": "NULL",
        "seed": f"g / {n_tpl * len(HARDWARE_KEYS)}",
        "hardware_key": f"CASE (g / {n_tpl}) % {len(HARDWARE_KEYS)} {hw} END",
        "created_at": sql["at"].format(s="g"),
        "started_at": sql["at"].format(s="g + 10"),
        "finished_at": sql["at"].format(s="g + 300 + g % 997"),
        "heartbeat_at": "NULL",
        "error": "CASE g % 50 WHEN 0 THEN 'bench: failed on purpose' ELSE NULL END",
        "time_saving": ts,
        "acc_delta": ad,
        "flop_saving": f"{ts} + 0.1",
        "equal_time_gap": "(0.8 + (r3 - 0.5))",
        "dynds_acc": f"70 + {ad}",
        "baseline_acc": "70.0",
        "equal_time_acc": "69.0",
        "dynds_time_s": f"100 * (1 - {ts})",
        "baseline_time_s": "100.0",
        "time_saving_interleaved": ts,
        "verdict": f"CASE g % {len(VERDICTS)} {verdict} END",
    }
    summary = {"time_saving", "acc_delta", "flop_saving", "equal_time_gap", "dynds_acc", "baseline_acc", "equal_time_acc",
               "dynds_time_s", "baseline_time_s", "time_saving_interleaved", "verdict"}  # fmt: skip
    names = [c.name for c in Job.__table__.columns if c.name != "id"]
    exprs = []
    for c in names:
        e = over.get(c, f't."{c}"')
        if c in summary:
            e = f"CASE WHEN g % 50 > 1 THEN {e} ELSE NULL END"
        exprs.append(e)
    series = sql["series"].format(n=n_jobs)
    cols = ", ".join(f'"{c}"' for c in names)
    jobs_sql = (
        f"INSERT INTO job ({cols}) SELECT {', '.join(exprs)} FROM (SELECT g, {r1} AS r1, {r2} AS r2, {r3} AS r3 FROM ({series}) AS gs) AS x "
        f"JOIN job AS t ON t.id = 1 + (x.g % {n_tpl})"
    )
    per_job = max(1, n_points // n_jobs)
    points_sql = (
        'INSERT INTO metric_point (job_id, run, kind, step, epoch, train_time_s, "values") '
        f"SELECT j.id, 'dynds', CASE WHEN k % 10 = 9 THEN 'epoch' ELSE 'step' END, k, k / 10, 0.01 * k, {sql['json'].format(v=POINT)} "
        f"FROM job AS j CROSS JOIN ({sql['series'].format(n=per_job)}) AS ks(k) WHERE j.id > {n_tpl}"
    )
    if dialect == "sqlite":  # a recursive series of 0 .. per_job - 1 (SQLite has no column aliases on a subquery)
        steps = f"(WITH RECURSIVE ks(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM ks WHERE k < {per_job - 1}) SELECT k FROM ks) AS ks"
        points_sql = points_sql.replace(f"({sql['series'].format(n=per_job)}) AS ks(k)", steps)
    with engine.connect() as conn:
        if dialect == "postgresql":
            # Bulk load without the per-row results triggers (migration 0009); the counters are filled after.
            conn.execute(text("SET session_replication_role = replica"))
        conn.execute(text(jobs_sql))
        conn.execute(text(f"DELETE FROM job WHERE id <= {n_tpl}"))  # the templates go; their copies stay
        conn.commit()
        print(f"  {n_jobs:,} jobs in {time.perf_counter() - t:.0f} s", flush=True)
        t2 = time.perf_counter()
        conn.execute(text(points_sql))
        conn.execute(text("DELETE FROM results_version"))
        for scope, column in (("track", "track"), ("frontier", "frontier_key")):
            conn.execute(text(
                f"INSERT INTO results_version (scope, key, version) SELECT '{scope}', {column}, count(*) FROM job "
                f"WHERE status = 'succeeded' AND {column} IS NOT NULL GROUP BY {column}"
            ))  # fmt: skip
        conn.commit()
        print(f"  {per_job * n_jobs:,} metric points in {time.perf_counter() - t2:.0f} s", flush=True)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        t3 = time.perf_counter()
        if dialect == "postgresql":
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
        else:
            conn.execute(text("ANALYZE"))
        print(f"  vacuum/analyze in {time.perf_counter() - t3:.0f} s", flush=True)
    engine.dispose()


# What a dashboard asks for, by weight: the jobs list (polled every 2 s while jobs run) and job pages most, the
# whole leaderboard (megabytes at this size: every track's cells) once per visit of its page.
MIX = {"jobs_sorted": 3, "jobs_deep": 2, "jobs_filtered": 2, "job": 2, "metrics": 3, "leaderboard_track": 1, "frontier": 1, "leaderboard": 0.5}


def requests(rng: random.Random, n_jobs: int, first_id: int, tracks: list[str]):
    """One dashboard request: (kind, path, params). Deep pages start at a random position in the order."""
    from app.crud import JOB_ORDERS
    from app.crud.queries import encode_cursor

    kind = rng.choices(tuple(MIX), weights=tuple(MIX.values()))[0]
    jid = first_id + rng.randrange(n_jobs)
    if kind == "jobs_sorted":
        return kind, "/api/v1/jobs", {"limit": 50, "order": rng.choice(JOB_ORDERS)}
    if kind == "jobs_deep":
        order = rng.choice(("-created_at", "-id", "-time_saving", "acc_delta", "-finished_at", "name"))
        name = order.lstrip("-")
        value = {
            "created_at": T0 + timedelta(seconds=jid - first_id),
            "finished_at": T0 + timedelta(seconds=jid - first_id + 300),
            "time_saving": rng.uniform(0.1, 0.6),
            "acc_delta": rng.uniform(-1.1, 0.3),
            "name": f"bench-{rng.randrange(n_jobs)}",
            "id": jid,
        }[name]
        return kind, "/api/v1/jobs", {"limit": 50, "order": order, "cursor": encode_cursor(order, value, jid)}
    if kind == "jobs_filtered":
        params = rng.choice(
            (
                {"status": "failed"},
                {"status": "succeeded", "order": "-time_saving"},
                {"hardware_key": rng.choice(HARDWARE_KEYS), "order": "-acc_delta"},
                {"track": "resnet56/cifar100/e30-n20000", "order": "verdict"},
                {"arch": "resnet18", "dataset": "cifar10", "order": "-equal_time_gap"},
            )
        )
        return kind, "/api/v1/jobs", {"limit": 50, **params}
    if kind == "leaderboard":
        return kind, "/api/v1/leaderboard", {}
    if kind == "leaderboard_track":
        return kind, "/api/v1/leaderboard", {"track": rng.choice(tracks)}
    if kind == "frontier":
        return kind, "/api/v1/frontier", {"track": rng.choice(tracks)}
    if kind == "job":
        return kind, f"/api/v1/jobs/{jid}", {}
    return kind, f"/api/v1/jobs/{jid}/metrics", {"limit": 1000}


async def run_clients(
    base: str, n_clients: int, duration_s: float, think_ms: float, n_jobs: int, first_id: int, tracks: list[str], client: str = "lean"
) -> dict:
    """``n_clients`` dashboards for ``duration_s``, each on its own keep-alive connection: per request kind, the
    latency the client saw, the server's own share (Server-Timing), the errors, and the CPU the clients used."""
    lat: dict[str, list[float]] = defaultdict(list)
    app: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    sent: dict[str, list[int]] = defaultdict(list)
    stop = time.monotonic() + duration_s
    host, port = base.removeprefix("http://").split(":")
    cpu0 = time.process_time()

    async def one(i: int, get):
        rng = random.Random(i)
        await asyncio.sleep(rng.random() * think_ms / 1000)
        while time.monotonic() < stop:
            kind, path, params = requests(rng, n_jobs, first_id, tracks)
            t = time.perf_counter()
            try:
                r = await get(path, params)
                ms = (time.perf_counter() - t) * 1000
                if r.status_code == 200:
                    server_ms = float(r.headers.get("server-timing", "app;dur=nan").split("dur=")[1])
                    for name in (kind, f"  order={params['order']}") if kind == "jobs_sorted" else (kind,):
                        lat[name].append(ms)
                        app[name].append(server_ms)
                        sent[name].append(int(r.headers.get("content-length", 0)))  # as sent: gzipped where it was
                else:
                    errors[kind].append(f"HTTP {r.status_code} {path} {params}")
            except (httpx.HTTPError, lean_http.HTTPError) as exc:
                errors[kind].append(type(exc).__name__)
            if think_ms:
                await asyncio.sleep(think_ms / 1000 * rng.uniform(0.5, 1.5))

    if client == "lean":
        conns = [lean_http.Connection(host, int(port)) for _ in range(n_clients)]
        await asyncio.gather(*(one(i, c.get) for i, c in enumerate(conns)))
        for c in conns:
            await c.close()
    else:
        limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as hc:
            await asyncio.gather(*(one(i, lambda path, params: hc.get(path, params=params)) for i in range(n_clients)))
    return {"lat": lat, "app": app, "errors": errors, "sent": sent, "client_cpu_s": time.process_time() - cpu0}


def db_cpu_s(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving ``url``'s database (Linux /proc; 0 for SQLite)."""
    if not url.startswith("postgresql"):
        return 0.0
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu_s(pid)
        except OSError:
            pass  # a backend that ended meanwhile
    return total


def cost(base: str, url: str, proc, n_jobs: int, first_id: int, tracks: list[str], per_kind: int) -> None:
    """One client, one request at a time, ``per_kind`` of each kind: wall time, and the CPU the server and the
    database spent per request. CPU time holds on a shared machine, where wall times measure the neighbours."""
    rng = random.Random(1)
    print(f"  {'request (1 client)':<28}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms':>15}{'db CPU ms':>11}")
    with httpx.Client(base_url=base, timeout=120) as client:
        for kind, weight in MIX.items():
            if not weight:
                continue
            wall = []
            server0, db0 = tree_cpu_s(proc.pid), db_cpu_s(url)
            while len(wall) < per_kind:
                k, path, params = requests(rng, n_jobs, first_id, tracks)
                if k != kind:
                    continue
                t = time.perf_counter()
                r = client.get(path, params=params)
                wall.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, params, r.status_code, r.text[:200])
            server_ms = (tree_cpu_s(proc.pid) - server0) * 1000 / per_kind
            db_ms = (db_cpu_s(url) - db0) * 1000 / per_kind
            print(f"  {kind:<28}{per_kind:>5}{pct(wall, 50):>9.1f}{pct(wall, 99):>9.1f}{server_ms:>15.2f}{db_ms:>11.2f}", flush=True)


def bench(kind: str, url: str, args) -> bool:
    home = tempfile.mkdtemp(prefix="dynds-million-")
    if not args.reuse:
        print(f"\n[{kind}] filling {args.jobs:,} jobs, {args.points:,} points ...", flush=True)
        fill(url, args.jobs, args.points)
    if args.fill_only:
        return True
    from sqlalchemy import text

    from app.core.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        first_id = conn.execute(text("SELECT min(id) FROM job")).scalar_one()
        n_jobs = conn.execute(text("SELECT max(id) FROM job")).scalar_one() - first_id + 1
        n_points = conn.execute(text("SELECT max(id) FROM metric_point")).scalar_one()
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one() if kind == "postgresql" else os.path.getsize(url[10:])
    engine.dispose()
    port = free_port()
    t = time.perf_counter()
    proc = start_server(url, port, home, workers=args.server_workers, http=args.http)
    ready = time.perf_counter() - t
    ok = True
    try:
        base = f"http://127.0.0.1:{port}"
        # The server warms its results cache in the background once ready (app.main.warm_results); a request
        # for a body under construction waits for that build. Timed from ready: what the first visitor waits.
        t = time.perf_counter()
        listed = httpx.get(f"{base}/api/v1/leaderboard/tracks", timeout=600)
        first_tracks = time.perf_counter() - t
        t = time.perf_counter()
        board = httpx.get(f"{base}/api/v1/leaderboard", timeout=600)
        cold = time.perf_counter() - t
        tracks = [tr["track"] for tr in board.json()["tracks"]]
        assert len(tracks) == len(listed.json()["tracks"])
        # Every track's board and frontier once (a dashboard in use has them warm; their first build is timed here).
        t = time.perf_counter()
        with httpx.Client(base_url=base, timeout=600) as client:
            for tr in tracks:
                assert client.get("/api/v1/leaderboard", params={"track": tr}).status_code == 200
            cold_track = (time.perf_counter() - t) / len(tracks)
            t = time.perf_counter()
            for tr in tracks:
                assert client.get("/api/v1/frontier", params={"track": tr}).status_code == 200
            cold_frontier = (time.perf_counter() - t) / len(tracks)
        print(
            f"[{kind}] {n_jobs:,} jobs, ~{n_points:,} points, {size / 1e9:.1f} GB; server ready in {ready:.1f} s "
            f"({args.server_workers} uvicorn worker{'s' if args.server_workers > 1 else ''}); then the tracks list in "
            f"{first_tracks:.1f} s and the full leaderboard in {cold:.1f} s "
            f"({len(tracks)} tracks, {len(board.content) / 1e6:.1f} MB; both warmed in the background from start-up); "
            f"first build of a track's board {cold_track * 1000:.0f} ms, of its frontier {cold_frontier * 1000:.0f} ms",
            flush=True,
        )
        asyncio.run(run_clients(base, 5, 3.0, 0, n_jobs, first_id, tracks, args.client))  # warm-up: the jobs pages
        if args.cost:
            cost(base, url, proc, n_jobs, first_id, tracks, args.cost)
        gc.collect()
        gc.freeze()
        # One load phase per client asked for, one after the other on the same warm server.
        for client in args.client.split(","):
            server0, load0 = tree_cpu_s(proc.pid), os.getloadavg()
            res = asyncio.run(run_clients(base, args.clients, args.duration, args.think_ms, n_jobs, first_id, tracks, client))
            ok &= report(kind, args, res, client, (tree_cpu_s(proc.pid) - server0) / args.duration, load0)
    finally:
        proc.terminate()
        proc.wait(10)
    return ok


def report(kind: str, args, res: dict, client: str, server_cores: float, load0: tuple[float, ...]) -> bool:
    """Print one load phase's figures; whether it met the p99 target with no error."""
    ok = True
    total = sum(len(v) for k, v in res["lat"].items() if not k.startswith(" "))
    print(f"[{kind}] {args.clients} clients, {args.duration:.0f} s, think {args.think_ms:g} ms: {total / args.duration:.0f} req/s")
    print(
        f"  server used {server_cores:.2f} cores ({args.http} HTTP), the clients ({client} HTTP client, one process) "
        f"{res['client_cpu_s'] / args.duration:.2f}; load average {load0[0]:.1f} {load0[1]:.1f} on {os.cpu_count()} cores at the start"
    )
    # p99 as the clients saw it, and the server's own share (Server-Timing): the rest is queueing for a core
    # or the event loop, and transfer, on a machine the clients share.
    print(f"  {'request':<28}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'app p99':>9}{'errors':>8}{'kB sent':>10}")
    for name in sorted(res["lat"], key=lambda k: (k.startswith(" "), k)):
        xs, errs = res["lat"][name], res["errors"].get(name, [])
        app_p99 = pct(res["app"][name], 99) if res["app"].get(name) else float("nan")
        kb = sum(res["sent"][name]) / len(res["sent"][name]) / 1000
        line = f"  {name:<28}{len(xs):>7}{pct(xs, 50):>9.1f}{pct(xs, 99):>9.1f}{app_p99:>9.1f}{len(errs):>8}{kb:>10.1f}"
        print(line + (f"  {sorted(set(errs))[:2]}" if errs else ""))
        if not name.startswith(" "):
            ok &= not errs and pct(xs, 99) < args.target_p99_ms
    for name, errs in res["errors"].items():
        if name not in res["lat"]:
            ok = False
            print(f"  {name:<28}{0:>7}{'':>18}{len(errs):>8}  {sorted(set(errs))[:2]}")
    print(f"  target p99 < {args.target_p99_ms:g} ms and no errors: {'met' if ok else 'MISSED'}", flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--points", type=int, default=20_000_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes (each with its own results cache)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--think-ms", type=float, default=250.0, help="pause between a client's requests (0: closed loop)")
    p.add_argument("--target-p99-ms", type=float, default=50.0)
    p.add_argument(
        "--client",
        default="lean",
        help="the clients' HTTP client, or several comma-separated (a load phase each, on the same server): lean "
        "(bench/lean_http.py, little CPU) or httpx (the figures before 2026-12-06)",
    )
    p.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="the server's HTTP parser and event loop: h11 with asyncio, httptools with uvloop, or what is installed",
    )
    p.add_argument("--postgres-url", default=os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--board-weight", type=float, default=MIX["leaderboard"], help="weight of the full leaderboard in the mix (0: leave it out)")
    p.add_argument("--cost", type=int, default=0, metavar="N", help="first, N requests of each kind from one client: wall and CPU per request")
    p.add_argument("--name", default="dynds_bench_million", help="the PostgreSQL database (or SQLite file stem) to fill")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--reuse", action="store_true", help="measure a database kept by --keep, without filling it")
    p.add_argument("--fill-only", action="store_true", help="fill the database, keep it and stop (e.g. for bench/dashboard_render.py --url)")
    args = p.parse_args(argv)
    if not set(args.client.split(",")) <= {"lean", "httpx"}:
        p.error(f"--client: choose from lean, httpx (comma-separated), not {args.client!r}")
    args.keep = args.keep or args.fill_only
    MIX["leaderboard"] = args.board_weight
    print(
        f"million_jobs: {args.jobs:,} jobs, {args.points:,} metric points, {args.clients} clients, {args.server_workers} uvicorn worker(s), "
        f"{os.cpu_count()} CPU cores shared by server, clients and database, python {sys.version.split()[0]}"
    )
    if args.db == "sqlite":
        path = Path(tempfile.gettempdir()) / f"{args.name}.db"
        if not args.reuse:
            path.unlink(missing_ok=True)
        try:
            return 0 if bench("sqlite", f"sqlite:///{path}", args) else 1
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    import psycopg

    with psycopg.connect(args.postgres_url, autocommit=True) as conn:
        if not args.reuse:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.name}"')
    try:
        return 0 if bench("postgresql", args.postgres_url.rsplit("/", 1)[0] + "/" + args.name, args) else 1
    finally:
        if not args.keep:
            with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
