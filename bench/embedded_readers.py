"""Embedded mode: does a job run by `dynds serve` while dashboard clients read the API measure what it
would alone, or say that it did not have the machine to itself?

Claim (printed beside the figures, issue 16): with each job in a child process of its own
(worker/embedded.py), a job run while 20 clients read the API either has a lockstep time_saving within
--max-shift (2 points, the bound lockstep pairing holds to under a load burst) of the same job alone, or is
flagged (contended or timing_noisy): never neither. Before, in one process with the API, closed-loop readers
moved a job's time_saving from 26.4 % to 11.5 %, unflagged.

Measured (2 cores, 2 rounds, 200 steps per run; load 3.0-4.6 from other work on the machine):

    readers   job  time_saving  shift pt   wait   cpu  base step ms  req/s  p99 ms  flagged
    none        2        18.3%      -0.4   0.23  0.77          36.4                 contended noisy
    closed      3        20.7%      +1.9   0.63  0.37          77.1    232     404  contended noisy
    think       4        19.3%      +0.6   0.10  0.90          30.6     75      96  noisy
    none        5        19.2%      +0.4   0.08  0.91          29.4                 noisy
    closed      6        18.5%      -0.2   0.53  0.47          64.3    238     382  contended noisy
    think       7        19.6%      +0.8   0.34  0.67          42.9     75      47  contended noisy

(wait, cpu: the runs' largest wait_share and smallest cpu_share.) Every job was also timing_noisy: other work
made full steps vary by 40-64 %.

Conditions (printed with the results): one real `dynds serve` (embedded executor, SQLite, its own port on
127.0.0.1 and its own DYNDS_HOME in a temporary directory), the same short job submitted again and again
(ResNet-20 on synthetic 16x16 images, batch 32, lockstep baseline, DynDS stochastic p=0.5, --steps steps
per run, no equal-time run). Conditions interleave in rounds: alone, closed loop, think time, alone, ... so
that drift on the machine falls on all of them. Readers are asyncio + httpx clients in a separate process,
started before the job is submitted and stopped when it has finished, each repeating what a dashboard
does: GET /jobs/{id}, GET /jobs/{id}/metrics (the last 100 points), GET /jobs; either with a think time
(250 ms, jittered +-50 %) or closed loop (the next request as soon as the last one answered). A job's
figures are its own (time_saving, its runs' wait_share and cpu_share, its flags); the base step time is its
baseline run's mean step. Server, readers and the observer share the machine's cores (count and load
average printed).

    python bench/embedded_readers.py                          # the defaults
    python bench/embedded_readers.py --env DYNDS_WORKER_THREADS=2 --rounds 3
                                                              # the server with other settings
Bounded in time (rounds x 3 jobs of about --steps x 2 steps each, plus start-up), loopback only; the server
and the readers are killed on exit. Exit status 0 when every job with readers is within --max-shift of the
alone jobs' mean, or flagged.
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
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from service_process import start_serve, stop  # noqa: E402

API = "/api/v1"
KINDS = ("none", "closed", "think")


def job_spec(steps: int) -> dict:
    return {
        "name": "embedded-readers",
        "model": {"arch": "resnet20"},
        "data": {"dataset": "synthetic", "synthetic_size": 32 * steps, "image_size": 16},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "device": "cpu"},
        "dynds": {"schedule": {"kind": "stochastic", "p": 0.5}},
        "baseline": True,
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


async def readers_main(base: str, job_id: int, n: int, think_ms: float) -> dict:
    """``n`` dashboard clients until this process's stdin closes; then their request count and latencies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
    done, errors, lat = 0, 0, []
    t_start = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=n, max_keepalive_connections=n)) as c:

        async def one(i: int) -> None:
            nonlocal done, errors
            rng = random.Random(i)
            cursor = 0
            await asyncio.sleep(rng.random() * max(think_ms, 50) / 1000)
            k = i
            while not stop.is_set():
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
    return {
        "requests": done,
        "errors": errors,
        "per_s": done / max(time.monotonic() - t_start, 1e-9),
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "p99_ms": lat[int(len(lat) * 0.99)] if lat else None,
    }


def start_readers(base: str, job_id: int, n: int, think_ms: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--_readers", base, str(job_id), str(n), str(think_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_readers(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(input="", timeout=60)  # stdin closed: the readers stop and report
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- the session


def run_job(c: httpx.Client, base: str, spec: dict, kind: str, args) -> dict:
    """Submit ``spec`` (readers of ``kind`` already reading while it waits to start), wait for its end."""
    # The readers need a job to read: the last one (the first round's first job reads an empty one).
    last = c.get(f"{API}/jobs", params={"limit": 1}).json()["data"]
    readers = None
    if kind != "none":
        readers = start_readers(base, last[0]["id"] if last else 1, args.readers, args.think_ms if kind == "think" else 0)
        time.sleep(1.0)  # reading before the job starts: the load lasts the whole job
    try:
        r = c.post(f"{API}/jobs", json={"spec": spec, "force": True})
        r.raise_for_status()
        job_id = r.json()["id"]
        deadline = time.monotonic() + args.job_timeout_s
        while (job := c.get(f"{API}/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                c.post(f"{API}/jobs/{job_id}/cancel")
                raise RuntimeError(f"job {job_id} did not finish in {args.job_timeout_s:g} s")
            time.sleep(0.5)
    finally:
        res = stop_readers(readers) if readers is not None else None
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
    result = job["result"]
    runs = [result["baseline"], result["dynds"]]
    return {
        "kind": kind,
        "id": job_id,
        "saving": result["time_saving"],
        "noisy": result["timing_noisy"],
        "contended": result.get("contended", False),
        "why": "; ".join(w for w in (result.get("timing_noise"), result.get("contention")) if w),
        "wait": max((r.get("wait_share") or 0.0) for r in runs),
        "cpu": min((r.get("cpu_share") or 0.0) for r in runs),
        "step_ms": 1000 * result["baseline"]["train_time_s"] / max(result["baseline"]["steps"], 1),
        "readers": res,
    }


def session(args) -> int:
    home = tempfile.mkdtemp(prefix="dynds-embedded-bench-")
    server = None
    extra = dict(kv.split("=", 1) for kv in args.env)
    spec = job_spec(args.steps)
    jobs: list[dict] = []
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(port, home, extra)
        load0 = os.getloadavg()[0]
        with httpx.Client(base_url=base, timeout=30) as c:
            run_job(c, base, job_spec(8), "none", args)  # the first job pays the data's and the server's first costs
            for _ in range(args.rounds):
                for kind in KINDS:
                    jobs.append(run_job(c, base, spec, kind, args))
                    print(f"  ... {kind}: time_saving {jobs[-1]['saving']:.1%}, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        stop(server)
        shutil.rmtree(home, ignore_errors=True)

    alone = [j["saving"] for j in jobs if j["kind"] == "none"]
    ref = statistics.mean(alone)
    print(
        f"embedded_readers: {args.readers} readers, jobs of {args.steps} steps per run (lockstep), conditions interleaved "
        f"over {args.rounds} rounds ({' '.join(KINDS)}), server env {extra or 'defaults'}; "
        f"{os.cpu_count()} cores, load average {load0:.1f} at the start; python {sys.version.split()[0]}"
    )
    print(f"  {'readers':<8}{'job':>5}{'time_saving':>13}{'shift pt':>10}{'wait':>7}{'cpu':>6}{'base step ms':>14}{'req/s':>7}{'p99 ms':>8}  flagged")
    ok = True
    for j in jobs:
        shift = 100 * (j["saving"] - ref)
        flagged = "contended" if j["contended"] else ""
        flagged += (" noisy" if flagged else "noisy") if j["noisy"] else ""
        res = j["readers"]
        if j["kind"] != "none":
            ok &= abs(shift) <= args.max_shift or bool(flagged)
        rq = f"{res['per_s']:.0f}" if res else ""
        p99 = f"{res['p99_ms']:.0f}" if res and res["p99_ms"] is not None else ""
        figures = f"{j['saving']:>13.1%}{shift:>+10.1f}{j['wait']:>7.2f}{j['cpu']:>6.2f}{j['step_ms']:>14.1f}"
        print(f"  {j['kind']:<8}{j['id']:>5}{figures}{rq:>7}{p99:>8}  {flagged or '-'}")
    for kind in KINDS[1:]:
        mine = [j for j in jobs if j["kind"] == kind]
        shifts = [100 * (j["saving"] - ref) for j in mine]
        flagged = sum(j["contended"] or j["noisy"] for j in mine)
        mean = statistics.mean(shifts)
        print(f"  {kind:<7} readers: time_saving shift {mean:+.1f} pt on average (alone {ref:.1%}), {flagged} of {len(mine)} flagged")
    for j in jobs:
        if j["why"]:
            print(f"  job {j['id']} ({j['kind']}): {j['why']}")
    print(f"  claim: every job with readers within {args.max_shift:g} pt of alone, or flagged: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_readers"]:
        base, job_id, n, think = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        print(json.dumps(asyncio.run(readers_main(base, job_id, n, think))), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readers", type=int, default=20)
    p.add_argument("--think-ms", type=float, default=250.0)
    p.add_argument("--steps", type=int, default=200, help="steps per run (each job: a baseline and a DynDS run in lockstep)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (alone, closed loop, think time)")
    p.add_argument("--max-shift", type=float, default=2.0, help="points of time_saving a job with readers may move unflagged")
    p.add_argument("--job-timeout-s", type=float, default=300.0)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable for the server")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return session(args)


if __name__ == "__main__":
    sys.exit(main())
