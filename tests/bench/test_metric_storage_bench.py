"""bench/metric_storage.py on a small job: it measures both layouts and the archive holds every step."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("metric_storage_bench", ROOT / "bench" / "metric_storage.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_a_small_job_is_measured_before_and_after(tmp_path, capsys):
    assert bench.main(["--steps", "20000", "--epochs", "3", "--db", "sqlite"]) == 0
    out = capsys.readouterr().out
    assert "SQL rows before 40,006, after " in out
    after_rows = int(re.search(r"after ([\d,]+)\n", out).group(1).replace(",", ""))
    assert after_rows <= 2 * 2000 + 6  # at most 2,000 step points per run, and the epoch points
    (result,) = re.findall(r"RESULT db=sqlite steps=40000 before_bytes=(\d+) after_sql_bytes=(\d+) parquet_bytes=(\d+)", out)
    before, after_sql, parquet = map(int, result)
    assert 0 < after_sql < before and parquet > 0
