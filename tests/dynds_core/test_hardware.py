"""dynds_core/hardware.py: the identity a run records, the queues that name it, and the pins a spec may give."""

import json

import pytest
import torch

from dynds_core import JobSpec, train
from dynds_core.hardware import (
    OVERRIDE_ENV,
    clean_cpu_model,
    detect_hardware,
    hardware_queues,
    make_hardware,
    parse_key,
    pin_problem,
    requested_queue,
)
from dynds_core.spec import SpecError


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "Intel Xeon Platinum 8375C"),
        ("AMD EPYC 7R13 Processor", "AMD EPYC 7R13"),
        ("Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz", "Intel Core i7-9750H"),
        ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X"),
        ("Intel Xeon Processor (Icelake)", "Intel Xeon"),
    ],
)
def test_cpu_model_names_are_cleaned_of_marks_and_clocks(raw, clean):
    assert clean_cpu_model(raw) == clean


def test_keys_and_classes_name_device_model_and_threads_or_count():
    cpu = make_hardware(device="cpu", model="Intel Xeon Platinum 8375C", threads=2)
    assert cpu.key == "cpu · Intel Xeon Platinum 8375C · 2 threads" and cpu.hardware_class == "cpu.intel-xeon-platinum-8375c.t2"
    assert make_hardware(device="cpu", model="X", threads=1).key == "cpu · X · 1 thread"
    gpu = make_hardware(device="cuda", model="NVIDIA H100 80GB HBM3", count=1, threads=8, cuda="13.0")
    assert gpu.key == "cuda · NVIDIA H100 80GB HBM3 · x1" and gpu.hardware_class == "cuda.nvidia-h100-80gb-hbm3.x1"
    assert hardware_queues(gpu) == ["cuda", "cuda.nvidia-h100-80gb-hbm3", "cuda.nvidia-h100-80gb-hbm3.x1"]
    # Versions are recorded, not keyed: a torch upgrade keeps a fleet's tracks.
    assert make_hardware(device="cpu", model="X", threads=2, torch="2.15").key == make_hardware(device="cpu", model="X", threads=2, torch="2.14").key
    assert parse_key(cpu.key) == ("cpu", "Intel Xeon Platinum 8375C", 1, 2) and parse_key(gpu.key) == ("cuda", "NVIDIA H100 80GB HBM3", 1, None)
    assert parse_key("cpu · X") is None and parse_key("tpu · X · x1") is None


def test_this_machine_is_described_by_its_own_process():
    hw = detect_hardware("cpu", threads=1, override=False)
    assert hw.device == "cpu" and hw.threads == 1 and hw.count == 1 and hw.model and hw.memory_bytes
    assert hw.key == f"cpu · {hw.model} · 1 thread" and hw.torch == torch.__version__.split("+")[0]
    assert detect_hardware("cpu", threads=2, override=False).key != hw.key  # threads are a hardware difference here


def test_the_routing_override_applies_to_routing_only(monkeypatch):
    monkeypatch.setenv(OVERRIDE_ENV, json.dumps({"device": "cuda", "model": "Test GPU"}))
    assert detect_hardware("auto", threads=1).key == "cuda · Test GPU · x1"
    assert detect_hardware("auto", threads=1, override=False).device == "cpu"
    # What a result records is what computed it, never the override.
    spec = JobSpec.parse({"data": {"synthetic_size": 32, "image_size": 8}, "train": {"epochs": 1, "batch_size": 16, "num_threads": 1}})
    result = train(spec)
    assert result.hardware is not None and result.hardware.device == "cpu" and result.hardware.threads == 1
    assert result.summary()["hardware_key"] == result.hardware.key == detect_hardware("cpu", threads=1, override=False).key
    monkeypatch.setenv(OVERRIDE_ENV, "[1]")
    with pytest.raises(ValueError, match=OVERRIDE_ENV):
        detect_hardware("auto")


@pytest.mark.parametrize(
    "device, pin, queue",
    [
        ("auto", "auto", None),
        ("cpu", "auto", "cpu"),
        ("cuda:1", "auto", "cuda"),
        ("auto", "cuda", "cuda"),
        ("auto", "cuda.nvidia-h100-80gb-hbm3", "cuda.nvidia-h100-80gb-hbm3"),
        ("auto", "cpu.intel-xeon.t2", "cpu.intel-xeon.t2"),
        ("auto", "NVIDIA H100 80GB HBM3", "cuda.nvidia-h100-80gb-hbm3"),
        ("auto", "AMD EPYC 7R13", "cpu.amd-epyc-7r13"),
        ("cpu", "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cpu.intel-xeon-platinum-8375c"),
        ("auto", "cpu · Intel Xeon · 2 threads", "cpu.intel-xeon.t2"),
        ("auto", "cuda · NVIDIA A100-SXM4-80GB · x1", "cuda.nvidia-a100-sxm4-80gb.x1"),
    ],
)
def test_a_pin_names_the_queue_of_the_workers_that_have_it(device, pin, queue):
    assert requested_queue(device, pin) == queue
    if queue is not None and "." in queue:
        kind = queue.split(".")[0]
        worker = make_hardware(device=kind, model=pin.split(" · ")[1] if " · " in pin else "whatever", threads=2)
        assert queue.split(".")[0] in hardware_queues(worker)  # the broadest queue is always served


def test_a_worker_serves_every_pin_of_its_own_hardware():
    hw = make_hardware(device="cpu", model="Intel Xeon Platinum 8375C", threads=2)
    for pin in ("cpu", hw.key, hw.hardware_class, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"):
        assert requested_queue("auto", pin) in hardware_queues(hw), pin
    assert requested_queue("auto", make_hardware(device="cpu", model="Intel Xeon Platinum 8375C", threads=1).key) not in hardware_queues(hw)


def test_a_pin_against_the_device_is_refused_at_the_spec():
    assert pin_problem("cpu", "cuda") is not None and pin_problem("auto", "cuda") is None and pin_problem("cuda:0", "NVIDIA H100") is None
    # A CPU class names its threads: a spec asking for others would record other hardware than it pinned.
    assert "num_threads" in pin_problem("auto", "cpu.intel-xeon.t2", 1) and pin_problem("auto", "cpu.intel-xeon.t2", 2) is None
    assert pin_problem("auto", "cpu · Intel Xeon · 2 threads", 1) is not None and pin_problem("auto", "cpu", 1) is None
    with pytest.raises(SpecError, match="train.hardware") as err:
        JobSpec.parse({"train": {"device": "cpu", "hardware": "cuda.nvidia-h100-80gb-hbm3"}})
    assert "train.device" in str(err.value)
    # "auto" keeps the spec hashes of jobs stored before train.hardware existed; a pin makes a new one.
    assert JobSpec.parse({"train": {"hardware": "auto"}}).spec_hash == JobSpec().spec_hash != JobSpec.parse({"train": {"hardware": "cpu"}}).spec_hash
