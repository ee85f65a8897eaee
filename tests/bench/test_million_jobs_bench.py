"""bench/million_jobs.py at a small size on SQLite: it fills, serves with two uvicorn workers, and prints each
request's p99 as the clients saw it beside the server's own (Server-Timing)."""

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("million_jobs_bench", ROOT / "bench" / "million_jobs.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_a_small_fill_is_served_and_measured_with_the_server_share(capsys):
    bench.main(["--db", "sqlite", "--jobs", "2000", "--points", "20000", "--duration", "3", "--clients", "4", "--server-workers", "2"])
    out = capsys.readouterr().out
    assert re.search(r"server ready in [\d.]+ s \(2 uvicorn workers\); then the tracks list in [\d.]+ s", out), out
    rows = re.findall(r"^  (job|metrics|jobs_sorted)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+0\s+([\d.]+)$", out, re.M)
    assert {r[0] for r in rows} == {"job", "metrics", "jobs_sorted"}, out
    for _, n, _p50, p99, app_p99, kb in rows:
        assert int(n) > 0 and 0 < float(app_p99) <= float(p99)  # the server's share is part of what the client saw
        assert float(kb) > 0
    assert re.search(r"the clients \(lean HTTP client, one process\) [\d.]+", out), out
