"""Devices a spec may ask for when the operator declares them (DYNDS_DEVICES), an override of what the live
workers offer (e.g. GPU workers started on demand).

    declared_device_errors(spec, ["cpu", "cuda:0"])   # [] or one 422 error at train.device / train.hardware
"""

from __future__ import annotations

from typing import Any

from app.fleet.routing import declared_kinds
from dynds_core.hardware import requested_queue
from dynds_core.spec import JobSpec


def declared_device_errors(spec: JobSpec, declared: list[str]) -> list[dict[str, Any]]:
    """The device or pinned hardware a spec asks for against DYNDS_DEVICES, an operator's override of what the
    live workers offer (e.g. GPU workers started on demand): a kind not declared, or a ``cuda:N`` past the
    declared count, is refused. Without it the live workers decide, at submission (app/api/routes/jobs.py)."""
    offered = tuple(declared)
    device = spec.train.device
    if device.startswith("cuda"):
        index = int(device[5:]) if device.startswith("cuda:") else 0
        count = sum(1 for o in offered if o == "cuda" or o.startswith("cuda:"))
        if "cuda" in offered and not any(o.startswith("cuda:") for o in offered):
            count = max(count, index + 1)  # "cuda" declared without a count: any index is the workers' business
        if index >= count:
            return [{
                "loc": ["train", "device"], "msg": f"train.device {device!r} is not offered here (devices: {', '.join(offered)}); "
                "use auto or cpu", "type": "value_error.device", "input": device,
            }]  # fmt: skip
    pin = getattr(spec.train, "hardware", "auto")
    kind = (requested_queue(device, pin) or "").split(".")[0] if pin != "auto" else ""
    if kind and kind not in declared_kinds(offered):
        return [{
            "loc": ["train", "hardware"], "msg": f"train.hardware {pin!r} is {kind} hardware, which is not offered here "
            f"(devices: {', '.join(offered)}); use auto or hardware of those", "type": "value_error.device", "input": pin,
        }]  # fmt: skip
    return []
