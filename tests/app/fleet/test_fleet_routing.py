"""app/fleet/routing.py: the queue a job goes to, the queues a worker listens to, who serves a queue (pure functions)."""

from __future__ import annotations

import pytest

from app.fleet.routing import Offer, declared_kinds, job_queue, parse_queue_names, requested, unserved_reason, worker_queues
from dynds_core.hardware import hardware_queues, make_hardware, requested_queue
from dynds_core.spec import JobSpec

CPU1 = make_hardware(device="cpu", model="Intel Xeon", threads=1)
CPU2 = make_hardware(device="cpu", model="Intel Xeon", threads=2)
GPU = make_hardware(device="cuda", model="NVIDIA H100 80GB HBM3", count=1)


@pytest.mark.parametrize(
    "train, queue",
    [({}, "dynds"), ({"device": "auto"}, "dynds"), ({"device": "cpu"}, "cpu"), ({"device": "cuda"}, "cuda"),
     ({"device": "cuda:1"}, "cuda"), ({"hardware": "cuda"}, "cuda"), ({"hardware": "NVIDIA H100 80GB HBM3"}, "cuda.nvidia-h100-80gb-hbm3"),
     ({"hardware": "cpu · Intel Xeon · 2 threads"}, "cpu.intel-xeon.t2"), ({"hardware": "cpu.intel-xeon.t1"}, "cpu.intel-xeon.t1")],
)  # fmt: skip
def test_a_job_goes_to_the_queue_its_spec_asks_for_else_the_default(train, queue):
    spec = JobSpec.parse({"train": train})
    assert job_queue(spec, "dynds") == queue
    assert job_queue(spec.canonical(), "dynds") == queue  # a stored job's spec says the same
    assert (requested(spec) is None) is (queue == "dynds")


@pytest.mark.parametrize("hw", [CPU1, CPU2, GPU], ids=lambda hw: hw.hardware_class)
def test_every_queue_a_spec_can_ask_of_some_hardware_is_one_that_hardware_listens_to(hw):
    """The device kind, the model and the whole class, each asked as a spec asks: the worker listens to it."""
    queues = worker_queues(hw, default="dynds")
    for pin in (hw.device, hw.model, hw.key, hw.hardware_class):
        assert requested_queue("auto", pin) in queues, pin
    assert requested_queue(hw.device, "auto") in queues


def test_a_cpu_worker_never_listens_to_a_gpu_queue_nor_a_gpu_worker_to_a_cpu_one():
    cpu, gpu = set(worker_queues(CPU2, default="dynds")), set(worker_queues(GPU, default="dynds"))
    assert not {q for q in cpu if q.startswith("cuda")} and not {q for q in gpu if q.startswith("cpu")}
    assert cpu & gpu == {"dynds"}  # the default queue: jobs that ask for nothing
    # Thread counts are hardware: a 1-thread worker does not take what asks for 2.
    assert "cpu.intel-xeon.t2" not in worker_queues(CPU1, default="dynds")


def test_worker_queues_are_the_hardwares_broadest_first_then_the_default_then_the_named_each_once():
    assert worker_queues(CPU2, default="dynds", extra=["gpu", "cpu", "dynds"]) == [*hardware_queues(CPU2), "dynds", "gpu"]


def test_queue_names_from_the_command_line():
    assert parse_queue_names(None) == [] and parse_queue_names(" gpu , fast,") == ["gpu", "fast"]
    with pytest.raises(ValueError, match="'has space'"):
        parse_queue_names("ok,has space")


def test_unserved_reason_names_the_live_hardware_classes():
    offers = [Offer(CPU1.hardware_class, tuple(worker_queues(CPU1, default="dynds")))]
    assert unserved_reason("cpu", offers) is None and unserved_reason("dynds", offers) is None
    reason = unserved_reason("cuda", offers)
    assert "'cuda'" in reason and "cpu.intel-xeon.t1" in reason
    assert "no worker is alive" in unserved_reason("dynds", [])


def test_declared_devices_are_kinds():
    assert declared_kinds(["cpu", "cuda:0", " cuda:1 "]) == {"cpu", "cuda"}
