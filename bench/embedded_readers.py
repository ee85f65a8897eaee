"""Embedded mode: how much do API readers slow the job that `dynds serve` is running?

Claim (printed beside the figures): with the embedded defaults (worker/embedded.py: torch threads one
core fewer, the API's sync routes in 4 threads, a 1 ms switch interval), 20 readers slow a running
job's steps by at most --target-slowdown (2.5x; measured on 2 shared cores: 1.9x at 250 ms think time,
2.4x closed loop, against 2.5x / 3.8x with the former defaults, whose steps were also 2-10x slower
in absolute terms) (mean step time with readers / without, the phases next to it;
the mean, because steps are a random mix of full and reduced ones: a median jumps between the two).

Conditions (printed with the results): one real `dynds serve` (embedded executor, SQLite, its own
port on 127.0.0.1 and its own DYNDS_HOME in a temporary directory) running one real small job
(ResNet-20 on synthetic 16x16 images, batch 32, no baselines, many epochs: it is cancelled at the
end). Readers are asyncio + httpx clients in a separate process, each repeating what a dashboard
does: GET /jobs/{id}, GET /jobs/{id}/metrics (the last 100 points), GET /jobs; either with a think
time (250 ms, jittered +-50 %) or closed loop (the next request as soon as the last one answered).
Phases of --phase-s seconds interleave in one session: none, think, none, closed, none, think, ...
so that drift (other load on the machine, the job's own phases) falls on both sides; each phase with
readers is compared with the mean of the no-reader phases either side of it. A step's time is the
trainer's own `step_time_s`; the points of a phase are those that reached the database (observed by a
poll every 0.25 s, present in every phase) from 1.5 s after the phase began to its end.
Server, readers and the observer share the machine's cores (count and load average printed).

    python bench/embedded_readers.py                          # the defaults
    python bench/embedded_readers.py --env DYNDS_WORKER_THREADS=2 --env DYNDS_EMBEDDED_API_THREADS=40
                                                              # the server with other settings
Bounded in time (about 2 + phases x phase-s seconds plus start-up), loopback only; the server and the
readers are killed on exit. Exit status 0 when the target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from service_process import start_serve, stop  # noqa: E402

API = "/api/v1"
JOB = {
    "name": "embedded-readers",
    "model": {"arch": "resnet20"},
    "data": {"dataset": "synthetic", "synthetic_size": 4096, "image_size": 16},
    "train": {"epochs": 400, "batch_size": 32, "lr": 0.05, "device": "cpu"},
    "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
    "baseline": False,
    "equal_time_baseline": False,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, home: str, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {"DYNDS_HOME": home, "DYNDS_DATABASE_URL": f"sqlite:///{home}/dynds.db", **extra_env}
    return start_serve(env, port, unset=("OMP_NUM_THREADS",))  # the server decides its torch threads itself


# ---------------------------------------------------------------- the readers (their own process)


async def readers_main(base: str, job_id: int, n: int, think_ms: float, duration_s: float) -> dict:
    stop_at = time.monotonic() + duration_s
    done, errors, lat = 0, 0, []
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=n, max_keepalive_connections=n)) as c:

        async def one(i: int) -> None:
            nonlocal done, errors
            rng = random.Random(i)
            cursor = 0
            await asyncio.sleep(rng.random() * max(think_ms, 50) / 1000)
            k = i
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    which = k % 3
                    if which == 0:
                        r = await c.get(f"{API}/jobs/{job_id}")
                    elif which == 1:
                        r = await c.get(f"{API}/jobs/{job_id}/metrics", params={"after": cursor, "limit": 100})
                        if r.status_code == 200:
                            cursor = max(0, r.json()["next_cursor"] - 100)
                    else:
                        r = await c.get(f"{API}/jobs", params={"limit": 20})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done += ok
                errors += not ok
                lat.append((time.perf_counter() - t) * 1000)
                k += 1
                if think_ms:
                    await asyncio.sleep(think_ms / 1000 * rng.uniform(0.5, 1.5))

        await asyncio.gather(*(one(i) for i in range(n)))
    lat.sort()
    return {"requests": done, "errors": errors, "p50_ms": lat[len(lat) // 2] if lat else None, "p99_ms": lat[int(len(lat) * 0.99)] if lat else None}


# ---------------------------------------------------------------- the session


def observe(client: httpx.Client, job_id: int, cursor: int, seen: list[tuple[float, float]]) -> int:
    """New step points since ``cursor``, stamped with the time they were seen: (time, step_time_s)."""
    r = client.get(f"{API}/jobs/{job_id}/metrics", params={"after": cursor, "limit": 10_000, "kind": "step"})
    r.raise_for_status()
    body = r.json()
    now = time.monotonic()
    seen.extend((now, p["values"]["step_time_s"]) for p in body["data"] if p["run"] == "dynds")
    return body["next_cursor"]


def session(args) -> int:
    home = tempfile.mkdtemp(prefix="dynds-embedded-bench-")
    server = readers = None
    extra = dict(kv.split("=", 1) for kv in args.env)
    kinds = ["none"] + [k for _ in range(args.rounds) for k in ("think", "none", "closed", "none")]
    phases: list[tuple[str, float, float, dict | None]] = []
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(port, home, extra)
        with httpx.Client(base_url=base, timeout=30) as c:
            job = c.post(f"{API}/jobs", json={"spec": JOB, "force": True})
            job.raise_for_status()
            job_id = job.json()["id"]
            seen: list[tuple[float, float]] = []
            cursor = 0
            deadline = time.monotonic() + 120
            while not seen:  # the job has started stepping (its data made, its model built)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the job did not start: {c.get(f'{API}/jobs/{job_id}').json()}")
                time.sleep(0.25)
                cursor = observe(c, job_id, cursor, seen)
            time.sleep(args.warmup_s)
            info = c.get(f"{API}/jobs/{job_id}").json()
            load0 = os.getloadavg()[0]
            for kind in kinds:
                t0 = time.monotonic()
                if kind != "none":
                    think = args.think_ms if kind == "think" else 0
                    readers = subprocess.Popen(
                        [sys.executable, __file__, "--_readers", base, str(job_id), str(args.readers), str(think), str(args.phase_s)],
                        stdout=subprocess.PIPE,
                        text=True,
                        start_new_session=True,
                    )
                while time.monotonic() - t0 < args.phase_s:
                    time.sleep(0.25)
                    cursor = observe(c, job_id, cursor, seen)
                t1 = time.monotonic()
                res = None
                if readers is not None:
                    out, _ = readers.communicate(timeout=60)
                    readers = None
                    res = json.loads(out.strip().splitlines()[-1])
                phases.append((kind, t0, t1, res))
            status = c.get(f"{API}/jobs/{job_id}").json()["status"]
            c.post(f"{API}/jobs/{job_id}/cancel")
        repro = info.get("reproducibility") or {}
    finally:
        stop(readers)
        stop(server)
        shutil.rmtree(home, ignore_errors=True)

    def steps(t0: float, t1: float) -> list[float]:
        return [st for t, st in seen if t0 + 1.5 <= t <= t1]

    med = [statistics.mean(steps(t0, t1)) if steps(t0, t1) else float("nan") for _, t0, t1, _ in phases]
    print(
        f"embedded_readers: {args.readers} readers, phases of {args.phase_s:g} s interleaved ({' '.join(k for k, *_ in phases)}), "
        f"server env {extra or 'defaults'}; job status at the end: {status}; torch threads {repro.get('torch_threads', '?')}; "
        f"{os.cpu_count()} cores, load average {load0:.1f} at the start; python {sys.version.split()[0]}"
    )
    print(f"  {'phase':<8}{'steps':>7}{'mean step ms':>16}{'slowdown':>10}{'reader req/s':>14}{'req p50 ms':>12}{'req p99 ms':>12}{'errors':>8}")
    worst: dict[str, list[float]] = {"think": [], "closed": []}
    for i, (kind, t0, t1, res) in enumerate(phases):
        n = len(steps(t0, t1))
        slow = ""
        if kind != "none":
            ref = statistics.mean(m for m in (med[i - 1], med[i + 1] if i + 1 < len(med) else med[i - 1]))
            ratio = med[i] / ref
            worst[kind].append(ratio)
            slow = f"{ratio:.2f}x"
        rq = f"{res['requests'] / args.phase_s:.0f}" if res else ""
        p50 = f"{res['p50_ms']:.1f}" if res and res["p50_ms"] is not None else ""
        p99 = f"{res['p99_ms']:.1f}" if res and res["p99_ms"] is not None else ""
        errs = str(res["errors"]) if res else ""
        print(f"  {kind:<8}{n:>7}{1000 * med[i]:>16.1f}{slow:>10}{rq:>14}{p50:>12}{p99:>12}{errs:>8}")
    ok = True
    for kind, ratios in worst.items():
        if ratios:
            mean = statistics.mean(ratios)
            ok &= mean <= args.target_slowdown
            print(
                f"  {kind:<7} readers: step-time slowdown {mean:.2f}x (mean of {len(ratios)} phases; worst {max(ratios):.2f}x); "
                f"target <= {args.target_slowdown:g}x: {'met' if mean <= args.target_slowdown else 'MISSED'}"
            )
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_readers"]:
        base, job_id, n, think, duration = argv[1], int(argv[2]), int(argv[3]), float(argv[4]), float(argv[5])
        print(json.dumps(asyncio.run(readers_main(base, job_id, n, think, duration))), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readers", type=int, default=20)
    p.add_argument("--think-ms", type=float, default=250.0)
    p.add_argument("--phase-s", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=2, help="rounds of (think, none, closed, none) after a first none")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--target-slowdown", type=float, default=2.5)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable for the server")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return session(args)


if __name__ == "__main__":
    sys.exit(main())
