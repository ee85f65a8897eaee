"""SSE load benchmark: 200 event-stream clients replaying a long history, and /healthz meanwhile.

Claim (target): while 200 clients replay a 200,000-point job history over GET /jobs/{id}/events,
/healthz answers with p99 under 100 ms, and the server's memory returns after the clients leave:
its RSS 10 s after the last client has gone is within 10 % of its RSS before the load (both numbers,
and the peak, are printed). On SQLite and (--database postgresql) on PostgreSQL.

Conditions (printed with the results): one real `dynds serve` process (embedded mode, its own port on
127.0.0.1 and its own DYNDS_HOME in a temporary directory, idle executor); the job is finished, so each
client replays the whole history and gets `end`; the clients are asyncio + httpx streams in a separate
process; the load lasts until every client has finished or --duration seconds have passed, then the
clients leave (their connections close). /healthz is probed every --probe-ms on a new connection (as an
orchestrator's health check does) from this process, the server's RSS is read from /proc/<pid>/status.
Server, clients and prober share the machine's cores (`os.cpu_count()`, load average printed).

    python bench/sse_load.py                              # SQLite, 200 clients, 200,000 points
    python bench/sse_load.py --database postgresql

Before/after: copy this file into an older checkout's bench/ and run it there (it serves the checkout it lies in).

Bounded in time (--duration plus about 30 s), loopback only; the server and client processes are
killed on exit, also on Ctrl-C. Exit status 0 when both targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service_process import pg_database, settle_bulk_load, start_serve, stop  # noqa: E402

# ---------------------------------------------------------------- seeding


def seed(url: str, n_points: int) -> int:
    """One succeeded job with ``n_points`` step points; returns its id."""
    from sqlalchemy import insert
    from sqlmodel import Session

    from app.core.db import init_db, make_engine
    from app.crud import job_columns
    from app.models import Job
    from dynds_core.spec import JobSpec

    engine = make_engine(url)
    init_db(engine)
    t = time.perf_counter()
    spec = JobSpec.parse({"name": "sse-load", "train": {"epochs": 30}})
    now = datetime.now(UTC)
    row = {
        **job_columns(spec),
        "status": "succeeded",
        "active_hash": None,
        "created_at": now - timedelta(hours=1),
        "started_at": now - timedelta(hours=1),
        "finished_at": now,
        "cancel_requested": False,
    }
    with Session(engine) as s:
        job_id = s.execute(insert(Job).returning(Job.id), [row]).scalar_one()
        s.commit()
    values = json.dumps({"loss": 1.234, "acc": 55.5, "lr": 0.05, "batch_type": "reduced", "step_time_s": 0.01})
    rows = ((job_id, "dynds", "step", k, k // 400, 0.01 * k, values) for k in range(n_points))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cur.copy('COPY metric_point (job_id, run, kind, step, epoch, train_time_s, "values") FROM STDIN') as copy:
                for r in rows:
                    copy.write_row(r)
        else:
            cur.executemany('INSERT INTO metric_point (job_id, run, kind, step, epoch, train_time_s, "values") VALUES (?,?,?,?,?,?,?)', rows)
        settle_bulk_load(engine, raw, cur)
    finally:
        raw.close()
    engine.dispose()
    print(f"  seeded job {job_id} with {n_points} metric points in {time.perf_counter() - t:.1f} s", flush=True)
    return job_id


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- the clients (their own process)


async def clients_main(base: str, job_id: int, n: int, duration_s: float) -> dict:
    """n streams from the start of the history; each reads to `end` or until the deadline."""
    deadline, t0, cpu0 = time.monotonic() + duration_s, time.monotonic(), time.process_time()
    limits = httpx.Limits(max_connections=n + 5, max_keepalive_connections=0)
    done, points, statuses, errors, times = 0, 0, {}, [], []
    timeout = httpx.Timeout(30.0, read=60.0)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            nonlocal done, points
            await asyncio.sleep(i * 0.005)  # a 1 s ramp, as page loads would come
            t0 = time.monotonic()
            got, tail = 0, b""
            try:
                async with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as r:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code != 200:
                        return
                    async for chunk in r.aiter_raw():
                        both = tail + chunk
                        got += both.count(b"\nevent: metric\n") - tail.count(b"\nevent: metric\n")
                        if b"event: end\n" in both:
                            done += 1
                            times.append(time.monotonic() - t0)
                            return
                        tail = both[-32:]
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            finally:
                points += got

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()))
        for t in pending:  # the deadline: the rest leave now
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return {
        "finished": done,
        "left_early": len(pending),
        "points": points,
        "statuses": statuses,
        "errors": sorted(set(errors))[:5],
        "n_errors": len(errors),
        "replay_s_p50": statistics.median(times) if times else None,
        "client_cores": (time.process_time() - cpu0) / (time.monotonic() - t0),
    }


# ---------------------------------------------------------------- measuring


def healthz_once(host: str, port: int, timeout: float = 30.0) -> bool:
    """GET /healthz on a new connection, as a bare socket (an httpx client per probe costs more than the request)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Probe(threading.Thread):
    """Probes /healthz every ``every_s`` (each on a new connection), and samples the server's RSS, into the current phase."""

    def __init__(self, base: str, pid: int, every_s: float):
        super().__init__(daemon=True)
        self.host, self.port = base.rsplit("/", 1)[1].split(":")
        self.port, self.pid, self.every_s = int(self.port), pid, every_s
        self.phase = "before"
        self.lat: dict[str, list[float]] = {}
        self.fail: dict[str, int] = {}
        self.rss: dict[str, list[float]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        last_rss = 0.0
        while not self.halt.is_set():
            phase, t = self.phase, time.perf_counter()
            ok = healthz_once(self.host, self.port)
            ms = (time.perf_counter() - t) * 1000
            if ok:
                self.lat.setdefault(phase, []).append(ms)
            else:
                self.fail[phase] = self.fail.get(phase, 0) + 1
            if time.monotonic() - last_rss >= 0.5:
                last_rss = time.monotonic()
                with contextlib.suppress(OSError):
                    self.rss.setdefault(phase, []).append(rss_mb(self.pid))
            self.halt.wait(max(0.0, self.every_s - (time.perf_counter() - t)))


def pct(xs: list[float], q: int) -> float:
    if not xs:
        return float("nan")
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def bench(args) -> bool:
    home = tempfile.mkdtemp(prefix="dynds-sse-bench-")
    server = clients = None
    try:
        with contextlib.ExitStack() as stack:
            url = (
                f"sqlite:///{home}/bench.db" if args.database == "sqlite" else stack.enter_context(pg_database(args.postgres_url, "dynds_sse_bench"))
            )
            print(f"[{args.database}] seeding ...", flush=True)
            job_id = seed(url, args.points)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start_serve({"DYNDS_DATABASE_URL": url, "DYNDS_HOME": home}, port)
            probe = Probe(base, server.pid, args.probe_ms / 1000)
            probe.start()
            time.sleep(args.quiet_s)  # before
            load0, cpu0, t0 = os.getloadavg()[0], proc_cpu_s(server.pid), time.monotonic()
            probe.phase = "during"
            clients = subprocess.Popen(
                [sys.executable, __file__, "--_clients", base, str(job_id), str(args.clients), str(args.duration)],
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                out, _ = clients.communicate(timeout=args.duration + 30)
            except subprocess.TimeoutExpired:
                stop(clients)
                out = "{}"
            res = json.loads(out.strip().splitlines()[-1] if out.strip() else "{}")
            probe.phase = "after"
            server_cores = (proc_cpu_s(server.pid) - cpu0) / (time.monotonic() - t0)
            time.sleep(args.quiet_s)
            probe.halt.set()
            probe.join(35)
            stop(server)
    finally:
        stop(clients)
        stop(server)
        shutil.rmtree(home, ignore_errors=True)

    total = args.points * args.clients
    print(
        f"[{args.database}] {args.clients} clients replaying {args.points} points each, at most {args.duration:g} s; "
        f"load average {load0:.1f} on {os.cpu_count()} cores as the load started; /healthz every {args.probe_ms:g} ms"
    )
    print(
        f"  clients: {res.get('finished', 0)} replayed the whole history (median {res.get('replay_s_p50') or float('nan'):.1f} s), "
        f"{res.get('left_early', '?')} left at the deadline; {res.get('points', 0):,} of {total:,} points delivered; "
        f"HTTP statuses {res.get('statuses')}; {res.get('n_errors', '?')} client errors {res.get('errors') or ''}; "
        f"the server used {server_cores:.2f} cores meanwhile, the clients {res.get('client_cores', float('nan')):.2f}"
    )
    print(f"  {'phase':<8}{'probes':>7}{'fails':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'RSS MB (last)':>15}{'peak':>8}")
    for phase in ("before", "during", "after"):
        xs, rss = probe.lat.get(phase, []), probe.rss.get(phase, [])
        print(
            f"  {phase:<8}{len(xs):>7}{probe.fail.get(phase, 0):>6}{pct(xs, 50):>9.1f}{pct(xs, 99):>9.1f}{max(xs, default=float('nan')):>9.1f}"
            f"{(rss[-1] if rss else float('nan')):>15.0f}{max(rss, default=float('nan')):>8.0f}"
        )
    during = probe.lat.get("during", [])
    p99 = pct(during, 99)
    before_rss = (probe.rss.get("before") or [float("nan")])[-1]
    after_rss = (probe.rss.get("after") or [float("nan")])[-1]
    ok_lat = p99 < args.target_p99_ms and not probe.fail.get("during")
    ok_mem = after_rss <= before_rss * (1 + args.rss_tolerance)
    print(f"  target /healthz p99 during the load < {args.target_p99_ms:g} ms (no failed probe): {p99:.1f} ms, {'met' if ok_lat else 'MISSED'}")
    print(
        f"  target RSS {args.quiet_s:g} s after the clients left within {100 * args.rss_tolerance:g} % of before: "
        f"{before_rss:.0f} -> {after_rss:.0f} MB ({100 * (after_rss / before_rss - 1):+.1f} %), {'met' if ok_mem else 'MISSED'}",
        flush=True,
    )
    return ok_lat and ok_mem


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_clients"]:
        base, job_id, n, duration = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        print(json.dumps(asyncio.run(clients_main(base, job_id, n, duration))), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0, help="the most seconds the clients stay (they leave when done)")
    p.add_argument("--quiet-s", type=float, default=10.0, help="seconds measured before the load and after the clients left")
    p.add_argument("--probe-ms", type=float, default=50.0)
    p.add_argument("--target-p99-ms", type=float, default=100.0)
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--postgres-url", default=os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill of the benchmark still ends its children
    print(f"sse_load: dynds serve from {REPO}, python {sys.version.split()[0]}", flush=True)
    return 0 if bench(args) else 1


if __name__ == "__main__":
    sys.exit(main())
