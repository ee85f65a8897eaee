"""bench/tradeoff.py: the study's plan, its resumable JSON lines, and the table's statistics and verdicts."""

import importlib.util
import json
from pathlib import Path

import pytest

from dynds_core import JobSpec
from dynds_core.result import RunResult
from dynds_core.stats import mean_ci95
from dynds_core.trainer import compare

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tradeoff_bench", ROOT / "bench" / "tradeoff.py")
tradeoff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tradeoff)


def _args(*argv):
    import argparse

    ns = argparse.Namespace(
        data=Path("/nonexistent.tar.gz"),
        arch="resnet20",
        subset=10000,
        val_subset=None,
        epochs=12,
        seeds=[0, 1, 2],
        settings=["baseline", "input-only", "phase-first50", "default"],
        threads=1,
        device="cpu",
        min_seeds=3,
        include_noisy=False,
        max_acc_drop=0.5,
    )
    for k, v in zip(argv[::2], argv[1::2], strict=True):
        setattr(ns, k, v)
    return ns


def test_plan_has_every_setting_with_lockstep_baselines_and_the_frontier_budgets():
    jobs = tradeoff.plan_jobs(_args())
    keys = [j["key"] for j in jobs]
    assert len(keys) == len(set(keys)) == 3 * (3 + 4)
    for j in jobs:
        s = JobSpec.parse(j["spec"])  # each is a valid service job
        assert j["spec"]["train"]["pairing"] == "lockstep"  # said in the spec, not left to the default
        assert s.train.num_threads == 1 and s.data.train_subset == 10000 and s.data.val_subset is None
        if j["setting"] == "baseline":
            assert s.dynds.schedule.kind == "none" and not s.baseline and not s.equal_time_baseline
        else:
            assert s.baseline and s.equal_time_baseline and s.train.epochs == 12
    assert sorted(j["epochs"] for j in jobs if j["key"].startswith("baseline/s0/")) == [3, 6, 9, 12]


def _record(setting, seed, epochs, *, saving, acc, base_acc=None, eq_acc=None):
    dynds_section = tradeoff.SETTINGS[setting] or {"schedule": {"kind": "none"}}
    s = JobSpec.parse(
        {
            **tradeoff.base_spec(_args(), seed, epochs),
            "dynds": dynds_section,
            "baseline": base_acc is not None,
            "equal_time_baseline": eq_acc is not None,
        }
    )
    if base_acc is None:
        dynds = RunResult(run="dynds", steps=100, steps_full=100, train_time_s=90, time_full_s=90, final_val_acc=acc)
        res = compare(s, "cpu (1 threads)", dynds, None, None)
    else:
        t = 90 * (1 - saving)  # interleaved = paired: not noisy
        dynds = RunResult(
            run="dynds",
            steps=100,
            steps_full=50,
            steps_reduced=50,
            train_time_s=t,
            time_full_s=45,
            time_reduced_s=t - 45,
            total_flops=55,
            final_val_acc=acc,
        )
        base = RunResult(run="baseline", steps=100, steps_full=100, train_time_s=90, time_full_s=90, total_flops=100, final_val_acc=base_acc)
        eq = RunResult(run="equal_time", steps=round(100 * (1 - saving)), steps_full=round(100 * (1 - saving)), final_val_acc=eq_acc)
        res = compare(s, "cpu (1 threads)", dynds, base, eq, pairing="lockstep")
    return {
        "key": f"{setting}/s{seed}/e{epochs}",
        "setting": setting,
        "seed": seed,
        "epochs": epochs,
        "wall_s": 1.0,
        "finished_at": "2026-12-01T20:00:00+00:00",
        "result": res.model_dump(mode="json"),
    }


def _study(tmp_path):
    recs = []
    savings = {0: 0.36, 1: 0.38, 2: 0.37}
    for seed in (0, 1, 2):
        b = 70.0 + seed
        recs.append(_record("default", seed, 12, saving=savings[seed], acc=b - 9, base_acc=b, eq_acc=b - 5 + 0.1 * seed))
        for e, drop in ((3, 15), (6, 8), (9, 3), (12, 0)):
            recs.append(_record("baseline", seed, e, saving=None, acc=b - drop))
    path = tmp_path / "study.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"cut short by a kill\n')
    return path, savings


def test_resume_skips_the_jobs_already_written(tmp_path):
    path, _ = _study(tmp_path)
    done = tradeoff.done_keys(path)  # the torn last line is ignored
    assert "default/s2/e12" in done and "baseline/s1/e3" in done and len(done) == 15
    todo = [j for j in tradeoff.plan_jobs(_args()) if j["key"] not in done]
    assert sorted({j["setting"] for j in todo}) == ["input-only", "phase-first50"]


@pytest.mark.parametrize("aggregation", ["leaderboard", "direct"])
def test_table_shows_means_intervals_verdict_and_frontier_position(tmp_path, capsys, monkeypatch, aggregation):
    if aggregation == "direct":  # an install without the service extra: dynds_core.stats directly
        monkeypatch.setattr(tradeoff, "leaderboard_module", lambda: None)
    else:  # the test environment has the service: the study must use the leaderboard's own functions
        assert tradeoff.leaderboard_module() is not None
    path, savings = _study(tmp_path)
    assert tradeoff.table_from(path, _args()) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| default"))
    mean, (lo, hi) = mean_ci95([100 * v for v in savings.values()])
    assert f"{mean:.1f} [{lo:.1f}, {hi:.1f}]" in row  # time saving, Student t over 3 seeds
    assert "| -9.00 [-9.00, -9.00] |" in row  # acc delta: -9 pt in every seed
    gap_mean, (glo, ghi) = mean_ci95([-4.0, -4.1, -4.2])
    assert f"{gap_mean:.2f} [{glo:.2f}, {ghi:.2f}]" in row
    assert "| loses_to_equal_time |" in row  # the gap's interval is below zero
    # x = 1 - 0.37 = 0.63 lies between the 50 % (acc b-8) and 75 % (b-3) budgets: the band's low edge there is
    # about b-7.9 (b-5.4 less the interval's half width); DynDS at b-9 is below
    assert row.rstrip().endswith("| below |")
    base = next(line for line in out.splitlines() if line.startswith("| baseline"))
    bmean, (blo, bhi) = mean_ci95([70.0, 71.0, 72.0])
    assert f"{bmean:.2f} [{blo:.2f}, {bhi:.2f}]" in base
    assert "| 0.25 | 56.00 [" in out and "| 1.00 | 71.00 [" in out  # frontier points per budget
    assert "Not worth it:" in out  # the verdict sentence
    assert "python bench/tradeoff.py --table-only" in out and "2026-12-01" in out
    assert ("app.leaderboard" if aggregation == "leaderboard" else "dynds_core.stats") in out


def test_methods_add_the_relatives_settings_beside_dynds(capsys):
    assert tradeoff.main(["--methods", "progressive,mixsize,fixres", "--settings", "default", "--seeds", "0", "--print-specs"]) == 0
    specs = [JobSpec.parse(json.loads(line)) for line in capsys.readouterr().out.splitlines()]
    settings = {(s.dynds.schedule.kind, s.dynds.bn_recalibration is not None) for s in specs if s.baseline}
    assert settings == {
        ("stochastic", False),
        ("progressive", False),
        ("mixsize", False),
        ("progressive", True),
        ("mixsize", True),
        ("stochastic", True),
    }
    assert all(s.equal_time_baseline and s.train.pairing == "lockstep" for s in specs if s.baseline)
    assert sum(1 for s in specs if not s.baseline) == 4  # the baseline frontier comes with the methods
    with pytest.raises(SystemExit):
        tradeoff.main(["--methods", "fixres,lars", "--print-specs"])


def test_the_study_runs_on_fashion_mnist_by_name_and_pools_kernels_where_asked(capsys):
    args = ["--data", "fashion-mnist", "--settings", "baseline,progressive-pooled", "--seeds", "0", "--print-specs"]
    assert tradeoff.main(args) == 0
    specs = [JobSpec.parse(json.loads(line)) for line in capsys.readouterr().out.splitlines()]
    assert {s.data.dataset for s in specs} == {"fashion-mnist"} and all(s.data.train_subset == 10000 for s in specs)
    (pooled,) = [s for s in specs if s.baseline]
    assert pooled.dynds.schedule.kind == "progressive" and pooled.dynds.schedule.kernels == "pooled"


# A study's parent as the bench makes it: its pool's job processes start with _init_worker; it prints a job's pid.
_STUDY = """
import concurrent.futures as cf, multiprocessing as mp, os, sys, time
sys.path.insert(0, sys.argv[1])  # importable by name in the spawned job process too
import tradeoff
with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=tradeoff._init_worker, initargs=(1,)) as pool:
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(120)
"""


def test_a_killed_study_leaves_no_job_training_on():
    """SIGKILL to the study: its job processes end too (they once trained on for an hour, taking a core)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    study = subprocess.Popen([sys.executable, "-c", _STUDY, str(ROOT / "bench")], stdout=subprocess.PIPE, text=True)
    job = int(study.stdout.readline())
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(job, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(job, signal.SIGKILL)
    raise AssertionError(f"job process {job} outlived its study")


@pytest.mark.parametrize("results", ["tradeoff.jsonl", "tradeoff-fashion.jsonl"])
def test_the_documented_study_tables_are_the_committed_results(results, capsys):
    """docs/figures.md's study tables are regenerated from bench/results (--table-only): every setting's
    lockstep time saving and test accuracy there, each with its 95 % interval, is what the records give now."""
    assert tradeoff.table_from(ROOT / "bench" / "results" / results, _args()) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    cells = [(r[0].strip(), r[4].strip(), r[6].strip()) for r in rows if len(r) == 11 and "[" in r[4]]
    assert len(cells) >= 2
    docs = (ROOT / "docs" / "figures.md").read_text()
    missing = [c for c in cells if not (f"| {c[1]} |" in docs and f"| {c[2]} |" in docs)]
    assert not missing, f"docs/figures.md lacks these settings' figures (run the study's --table-only): {missing}"
