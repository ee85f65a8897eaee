"""app.api.device_policy: the devices DYNDS_DEVICES declares, checked through spec_errors as a submission is."""

from __future__ import annotations

import pytest
from policy_helpers import locs, settings  # noqa: F401  (fixtures)

from app.api.spec_policy import spec_errors


@pytest.mark.parametrize(
    "devices, device, ok",
    [(["cpu"], "cuda", False), (["cpu"], "cuda:0", False), (["cpu"], "auto", True), (["cpu"], "cpu", True),
     (["cpu", "cuda"], "cuda", True), (["cpu", "cuda"], "cuda:3", True), (["cpu", "cuda:0"], "cuda:1", False), (["cpu", "cuda:0"], "cuda:0", True)],
)  # fmt: skip
def test_the_device_must_be_one_the_deployment_offers(settings, devices, device, ok):
    _, errors = spec_errors({"train": {"device": device}}, settings.model_copy(update={"devices": devices}))
    assert (errors == []) is ok
    if not ok:
        assert locs(errors) == {("train", "device")} and "not offered here" in errors[0]["msg"]


@pytest.mark.parametrize(
    "devices, pin, ok",
    [(["cpu"], "cuda", False), (["cpu"], "NVIDIA H100 80GB HBM3", False), (["cpu"], "cuda.test-gpu.x1", False),
     (["cpu"], "cpu.intel-xeon.t2", True), (["cpu", "cuda:0"], "cuda.nvidia-h100-80gb-hbm3", True), (["cuda"], "auto", True)],
)  # fmt: skip
def test_pinned_hardware_must_be_of_a_declared_kind(settings, devices, pin, ok):
    """DYNDS_DEVICES overrides what the live workers offer: a pin (train.hardware) of another kind is refused too."""
    _, errors = spec_errors({"train": {"hardware": pin}}, settings.model_copy(update={"devices": devices}))
    assert (errors == []) is ok
    if not ok:
        assert locs(errors) == {("train", "hardware")} and "not offered here" in errors[0]["msg"]


def test_without_declared_devices_the_policy_leaves_devices_to_the_live_workers(settings):
    """No DYNDS_DEVICES: whatever this process sees, no device is refused here (submission asks the fleet)."""
    undeclared = settings.model_copy(update={"devices": None})
    for train in ({"device": "cuda"}, {"device": "cuda:3"}, {"hardware": "NVIDIA H100 80GB HBM3"}):
        assert spec_errors({"train": train}, undeclared)[1] == []


def test_declared_device_errors_directly():
    from app.api.device_policy import declared_device_errors
    from dynds_core.spec import JobSpec

    (err,) = declared_device_errors(JobSpec.parse({"train": {"device": "cuda:1"}}), ["cpu", "cuda:0"])
    assert err["loc"] == ["train", "device"] and "cuda:1" in err["msg"]
    assert declared_device_errors(JobSpec.parse({"train": {"device": "cuda:1"}}), ["cpu", "cuda"]) == []
