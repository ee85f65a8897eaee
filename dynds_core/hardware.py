"""Hardware identity: what a run ran on, measured by the process that ran it, and the queues that name it.

    hw = detect_hardware("auto", threads=2)
    hw.key              # "cpu · Intel Xeon Platinum 8375C · 2 threads", or "cuda · NVIDIA H100 80GB HBM3 · x1"
    hw.hardware_class   # "cpu.intel-xeon-platinum-8375c.t2": a queue-safe slug of the same identity
    hardware_queues(hw) # ["cpu", "cpu.intel-xeon-platinum-8375c", "cpu.intel-xeon-platinum-8375c.t2"]
    requested_queue("auto", "NVIDIA H100 80GB HBM3")   # "cuda.nvidia-h100-80gb-hbm3"

A reduced step's speed-up depends on the kernels a device has (oneDNN's and cuDNN's fast paths are for 3x3
convolutions), and on a CPU on how many threads the run had: results measured on unlike hardware are never
pooled, so the key names the device kind, its model and, on a CPU, the torch thread count, or on a GPU, the
number of devices. The versions (torch, CUDA, cuDNN) are recorded beside it but are not part of the key:
they change results less than the device does, and a fleet upgrading torch should not lose its history.

A spec may pin hardware (``train.hardware``): ``auto`` (whatever the worker has), a device kind (``cpu``,
``cuda``), a class slug, a device model name or a hardware key. :func:`requested_queue` turns a pin into the
queue of the workers that have it; a worker listens to :func:`hardware_queues` of what it detected.
"""

from __future__ import annotations

import json
import os
import platform
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

# TEST ONLY: a JSON object of Hardware fields laid over what is detected (e.g. '{"device": "cuda", "model":
# "Test GPU"}'), so the routing of GPU jobs can be tested on a CPU-only machine. Never for results.
OVERRIDE_ENV = "DYNDS_HARDWARE_OVERRIDE"
DEVICE_KINDS = ("cpu", "cuda", "mps")
SEP = " · "
UNKNOWN_KEY = "unknown"
# Words that make a model name a CPU's when a pin names a model without saying the device.
_CPU_WORDS = ("intel", "amd", "xeon", "epyc", "ryzen", "core", "arm", "neoverse", "graviton", "apple", "cortex", "power")


class Hardware(BaseModel):
    """The hardware a run had. ``key`` and ``hardware_class`` are derived from the other fields by
    :func:`make_hardware`; comparisons pool results only under one key."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    device: str  # cpu | cuda | mps
    model: str  # the GPU's name, or the CPU's model name
    count: int = 1  # devices the run used (a CPU counts as one)
    threads: int | None = None  # torch intra-op threads (what a CPU run had; recorded on GPUs too)
    memory_bytes: int | None = None  # the GPU's memory, or the machine's RAM for a CPU
    torch: str = ""
    cuda: str | None = None
    cudnn: str | None = None
    hardware_class: str


def slug(text: str) -> str:
    """Lower case, runs of other characters as one ``-``: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def clean_cpu_model(name: str) -> str:
    """``Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz`` -> ``Intel Xeon Platinum 8375C``."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s+CPU\s*@.*$", "", name)
    name = re.sub(r"\s+@\s*[\d.]+\s*GHz$", "", name)
    name = re.sub(r"\s+(\d+-Core|Processor)\b.*$", "", name)
    return " ".join(name.split()) or "unknown CPU"


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), cleaned; the platform's word for it elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                    return clean_cpu_model(line.split(":", 1)[1])
    except OSError:
        pass
    return clean_cpu_model(platform.processor() or platform.machine() or "unknown CPU")


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def hardware_key(device: str, model: str, count: int = 1, threads: int | None = None) -> str:
    """The readable key: ``cpu · <model> · <n> threads`` or ``<device> · <model> · x<count>``."""
    if device == "cpu":
        n = threads or 1
        return SEP.join(("cpu", model, f"{n} thread{'s' if n != 1 else ''}"))
    return SEP.join((device, model, f"x{count}"))


def hardware_class(device: str, model: str, count: int = 1, threads: int | None = None) -> str:
    """The key as a queue-safe slug: ``cpu.<model>.t<threads>`` or ``<device>.<model>.x<count>``."""
    tail = f"t{threads or 1}" if device == "cpu" else f"x{count}"
    return f"{device}.{slug(model)}.{tail}"


def make_hardware(**fields: Any) -> Hardware:
    """A Hardware from its measured fields, with ``key`` and ``hardware_class`` derived from them."""
    fields = {k: v for k, v in fields.items() if k not in ("key", "hardware_class")}
    ident = (fields["device"], fields["model"], int(fields.get("count") or 1), fields.get("threads"))
    return Hardware(**fields, key=hardware_key(*ident), hardware_class=hardware_class(*ident))


def _override() -> dict[str, Any]:
    raw = os.environ.get(OVERRIDE_ENV)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{OVERRIDE_ENV} must be a JSON object of hardware fields: {exc}") from None
    if not isinstance(data, dict) or data.get("device", "cpu") not in DEVICE_KINDS:
        raise ValueError(f"{OVERRIDE_ENV} must be a JSON object with device one of {', '.join(DEVICE_KINDS)}: {raw!r}")
    return data


def detect_hardware(device: Any = "auto", *, threads: int | None = None, override: bool = True) -> Hardware:
    """The hardware a run on ``device`` (a torch.device or its name: auto, cpu, cuda, cuda:N) has in this
    process: the GPU's name and memory, or the CPU's model and RAM; ``threads`` defaults to torch's
    current intra-op thread count. Raises nothing for a device this machine lacks: it describes what the
    name would resolve to (``cuda`` on a machine without CUDA describes the CPU it would fall back to).
    ``override``: lay DYNDS_HARDWARE_OVERRIDE over it (routing tests); ``train()`` passes False, so a
    result always names the hardware that computed it."""
    import torch

    name = str(device)
    threads = threads or torch.get_num_threads()
    fields: dict[str, Any] = {"torch": torch.__version__.split("+")[0], "threads": threads}
    cuda_ok = torch.cuda.is_available()
    if name.startswith("cuda") or (name == "auto" and cuda_ok):
        if cuda_ok:
            index = int(name.split(":")[1]) if ":" in name else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
            fields.update(device="cuda", model=props.name, count=1, memory_bytes=int(props.total_memory))
            fields.update(cuda=torch.version.cuda, cudnn=str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None)
    if "device" not in fields:
        fields.update(device="cpu", model=cpu_model(), count=1, memory_bytes=_ram_bytes())
    if override:
        fields.update(_override())
    return make_hardware(**fields)


def hardware_queues(hw: Hardware) -> list[str]:
    """The queues a worker with ``hw`` serves, broadest first: the device kind, the model, the full class."""
    model = f"{hw.device}.{slug(hw.model)}"
    return [hw.device, model, hw.hardware_class]


def parse_key(key: str) -> tuple[str, str, int, int | None] | None:
    """(device, model, count, threads) of a hardware key, or None when ``key`` is not one."""
    parts = key.split(SEP)
    if len(parts) != 3 or parts[0] not in DEVICE_KINDS:
        return None
    device, model, tail = parts
    m = re.fullmatch(r"(\d+) threads?", tail) if device == "cpu" else re.fullmatch(r"x(\d+)", tail)
    if not m or not model.strip():
        return None
    n = int(m.group(1))
    return (device, model, 1, n) if device == "cpu" else (device, model, n, None)


_SLUG_PIN = re.compile(r"(cpu|cuda|mps)(\.[a-z0-9][a-z0-9-]*(\.(t|x)\d+)?)?")


def pin_problem(device: str, pin: str, threads: int | None = None) -> str | None:
    """Why ``pin`` (train.hardware) cannot go with ``device`` (train.device) and ``threads``
    (train.num_threads), or None. A pin of a CPU class names its thread count (``.t2``): a spec asking
    for other threads would run on that worker with them, and record other hardware than it pinned."""
    if pin == "auto":
        return None
    if not pin.strip() or len(pin) > 200 or not pin.isprintable():
        return "train.hardware must be auto, cpu, cuda, a hardware class (e.g. cuda.nvidia-h100-80gb-hbm3), a device model or a hardware key"
    queue = requested_queue("auto", pin)
    kind = (queue or "").split(".")[0]
    if device != "auto" and kind and kind != device.split(":")[0]:
        return f"{pin!r} is {kind} hardware, but train.device is {device!r}; set train.device to auto or {kind}"
    pinned = re.fullmatch(r"cpu\..+\.t(\d+)", queue or "")
    if pinned and threads is not None and int(pinned.group(1)) != threads:
        return (
            f"{pin!r} is a CPU with {pinned.group(1)} torch threads, but train.num_threads is {threads}; leave num_threads unset or make them equal"
        )
    return None


def requested_queue(device: str, pin: str = "auto") -> str | None:
    """The queue of the workers that have what a spec asks for (train.device, train.hardware), or None
    for any worker. A pin is a device kind, a class slug (``cuda.nvidia-h100-80gb-hbm3``, with or without
    its ``.x1`` / ``.t2`` tail), a hardware key, or a model name: a GPU's unless it names a CPU maker or
    ``train.device`` is cpu."""
    kind = device.split(":")[0] if device != "auto" else None
    if pin == "auto" or not pin:
        return kind
    if _SLUG_PIN.fullmatch(pin):
        return pin
    parsed = parse_key(pin)
    if parsed is not None:
        return hardware_class(*parsed)
    if kind is None:
        words = slug(pin).split("-")
        kind = "cpu" if any(w in _CPU_WORDS for w in words) else "cuda"
    model = clean_cpu_model(pin) if kind == "cpu" else pin
    return f"{kind}.{slug(model)}"


def hardware_of_record(record: dict[str, Any] | None) -> Hardware | None:
    """The Hardware stored in a result or reproducibility record (``{"hardware": {...}}``), or None."""
    data = (record or {}).get("hardware")
    if not isinstance(data, dict):
        return None
    try:
        return Hardware.model_validate(data)
    except ValidationError:
        return None
