"""bench/gpu_check.sh in its CPU fallback: it must run end to end and print every figure it promises."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_fallback_prints_every_figure():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPU_CHECK_TIMEOUT_S": "150"}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--threads", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    assert "no CUDA: CPU fallback" in out
    # Every precision x step type, with a speed-up and the FLOP ratio beside it.
    rows = re.findall(
        r"^resnet20\s+8\s+(fp32 nchw|fp32 channels_last|bf16 channels_last)\s+(full|reduced .*?)\s+"
        r"([\d.]+)\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)x$",
        out,
        re.M,
    )
    assert len(rows) == 9, out
    flop = {step.strip(): float(ratio) for _, step, _, _, _, ratio in rows}
    assert flop["full"] == 1.0
    assert flop["reduced none (input /2 only)"] == 4.0  # input /2: a quarter of the pixels
    assert 8.0 < flop["reduced avg s1 (default)"] < 9.5  # METHOD.md: 8.9x fewer at batch 128
    assert all(float(ms) > 0 for _, _, ms, _, _, _ in rows)
    # The lockstep job's figures.
    assert re.search(r"^card: cpu", out, re.M), out
    assert re.search(r"^hardware: cpu · .+ · 1 thread$", out, re.M), out  # the key the job recorded
    assert re.search(r"^pairing: lockstep$", out, re.M), out
    for key in ("time_saving", "time_saving_interleaved"):
        assert re.search(rf"^{key}: -?[\d.]+%$", out, re.M), (key, out)
    for key in ("acc_delta", "equal_time_gap"):
        assert re.search(rf"^{key}: [+-][\d.]+ pt", out, re.M), (key, out)
    assert re.search(r"^verdict: \w+: \S.+\.$", out, re.M), out
    assert "gpu_check done in" in out
