"""Did a run have its hardware to itself (dynds_core.training.contention), and the Contention flag on a job."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from test_trainer import tiny_spec

from dynds_core.result import RunResult
from dynds_core.trainer import Contention, compare, train
from dynds_core.training import contention
from dynds_core.training.contention import CpuMeter, device_users, training_tasks

linux_only = pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="schedstat: Linux")


@pytest.fixture
def one_core():
    """This thread on one core (restored afterwards): a competitor pinned there takes half of it, whatever
    else the machine is doing."""
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    yield core
    os.sched_setaffinity(0, before)


@pytest.fixture
def burner(one_core):
    """A process spinning on this thread's core."""
    proc = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{one_core}}})\nwhile True: pass"])
    time.sleep(0.5)  # started and spinning before the measurement
    yield proc
    proc.kill()
    proc.wait()


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@linux_only
def test_a_busy_step_is_either_on_a_cpu_or_waiting_for_one():
    meter = CpuMeter(threads=1)
    for _ in range(5):
        meter.begin()
        spin(0.02)
        meter.end()
    assert meter.steps == 5 and meter.wall_s >= 0.1
    assert meter.cpu_share() + meter.wait_share() == pytest.approx(1.0, abs=0.15), (meter.cpu_share(), meter.wait_share())
    meter.close()
    # a step that sleeps neither runs nor waits for a CPU (but for the wake-up): a low cpu_share alone proves no neighbour
    meter = CpuMeter(threads=1)
    meter.begin()
    time.sleep(0.2)
    meter.end()
    assert meter.cpu_share() < 0.1 and meter.wait_share() < 0.2, (meter.cpu_share(), meter.wait_share())
    meter.close()


@linux_only
def test_the_training_threads_are_this_one_and_native_threads_not_pythons():
    started, done = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (started.set(), done.wait()))
    other.start()
    started.wait()
    try:
        tasks = training_tasks()
        assert tasks[0] == threading.get_native_id()
        assert other.native_id not in tasks  # an API's or a log writer's thread is not the run's
    finally:
        done.set()
        other.join()


@linux_only
def test_a_run_starved_by_a_cpu_burning_process_is_measured_and_flagged(burner):
    res = train(tiny_spec(train={"num_threads": 1}, data={"synthetic_size": 256}))
    for run in (res.baseline, res.dynds):
        # two processes on one core: each gets about half of it
        assert run.cpu_share < 0.65 and run.wait_share > 0.3, (run.run, run.cpu_share, run.wait_share)
    assert res.contended and "waited for a CPU" in res.contention
    assert "did not have the machine to itself" in res.verdict_sentence


@linux_only
def test_a_cpu_bound_runs_step_time_is_on_a_cpu_or_waiting_for_one(one_core):
    # Whatever else this shared machine runs on the core: the two shares account for the steps' time
    # (alone on a quiet machine here: cpu 0.97-0.99, wait 0.01-0.03).
    res = train(tiny_spec(train={"num_threads": 1}, data={"synthetic_size": 256}))
    for run in (res.baseline, res.dynds):
        assert run.cpu_share + run.wait_share == pytest.approx(1.0, abs=0.1), (run.cpu_share, run.wait_share)


def test_device_users_on_a_cpu_is_nothing_to_see():
    assert device_users(torch.device("cpu")) == (None, None)
    res = train(tiny_spec(baseline=False))
    assert res.dynds.device_others is None and res.dynds.device_users is None


def test_device_users_reads_nvml_through_torch(monkeypatch):
    me = os.getpid()
    cuda = torch.device("cuda", 0)

    def listing(text):
        monkeypatch.setattr(torch.cuda, "list_gpu_processes", lambda device=None: text)
        return device_users(cuda)

    assert listing(f"GPU:0\nprocess {me:>10d} uses 500.000 MB GPU memory") == (0, "none")
    others, words = listing(f"GPU:0\nprocess 4242 uses 2048.000 MB GPU memory\nprocess {me:>10d} uses 500.000 MB GPU memory")
    assert others == 1 and words == "1 other process: pid 4242 (2.0 GiB)"
    # in a container NVML may give host pids: ours is then one of them
    assert listing("GPU:0\nprocess 99 uses 500.000 MB GPU memory")[0] == 0
    assert listing("pynvml module not found, please install nvidia-ml-py") == (None, "unknown: pynvml module not found, please install nvidia-ml-py")


def _job(device="cpu (1 threads)", **runs):
    spec = tiny_spec()
    base = dict(steps=8, steps_full=8, train_time_s=1.0, time_full_s=1.0, final_val_acc=50.0)
    dynds = RunResult(run="dynds", **{**base, "train_time_s": 0.7, **runs.get("dynds", {})})
    baseline = RunResult(run="baseline", **{**base, **runs.get("baseline", {})})
    return spec, device, dynds, baseline


def test_the_flag_names_the_starved_run_and_why():
    quiet = compare(*_job(dynds={"cpu_share": 0.97, "wait_share": 0.02}, baseline={"cpu_share": 0.98, "wait_share": 0.01}), None)
    assert not quiet.contended and quiet.contention is None
    assert "machine to itself" not in quiet.verdict_sentence
    starved = compare(*_job(dynds={"cpu_share": 0.6, "wait_share": 0.4}, baseline={"wait_share": 0.05}), None)
    assert starved.contended and starved.contention.startswith("the dynds run's threads waited for a CPU 40% of their steps' time (more than 15%)")
    assert "did not have the machine to itself" in starved.verdict_sentence
    # the threshold is the caller's
    assert not compare(*_job(dynds={"wait_share": 0.4}), None, contention=Contention(max_wait_share=0.5)).contended


def test_without_the_wait_a_cpu_runs_share_decides_and_a_gpus_other_users_do():
    no_wait = compare(*_job(baseline={"cpu_share": 0.5}), None)
    assert no_wait.contended and "the baseline run's threads got 50%" in no_wait.contention
    # a GPU run's host thread waits on its device by design: its CPU share says nothing of neighbours
    assert not compare(*_job(device="cuda:0", baseline={"cpu_share": 0.5}), None).contended
    shared = compare(*_job(device="cuda:0", dynds={"device_others": 1, "device_users": "1 other process: pid 7 (1.0 GiB)"}), None)
    assert shared.contended and shared.contention == "the GPU had other users during the dynds run (1 other process: pid 7 (1.0 GiB))"
    # unmeasured (results from before): not flagged
    assert not compare(*_job(), None).contended


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "0.1"])
def test_contention_thresholds_are_checked_where_they_enter(bad):
    with pytest.raises(ValueError, match="Contention.max_wait_share must be a number in"):
        Contention(max_wait_share=bad)


def test_the_meter_leaves_no_files_open():
    before = len(os.listdir("/proc/self/fd")) if os.path.exists("/proc/self/fd") else 0
    train(tiny_spec(baseline=False))
    after = len(os.listdir("/proc/self/fd")) if os.path.exists("/proc/self/fd") else 0
    assert after <= before
    assert contention.share(1.0, 0.0, 1) is None and contention.share(1.0, 2.0, 2) == 0.25
