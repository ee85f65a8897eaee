"""app.api.spec_policy: what a spec submitted over HTTP must satisfy, checked on Settings alone (no database)."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from policy_helpers import locs, settings  # noqa: F401  (fixtures)

from app.api.spec_policy import parse_spec_request, spec_errors, too_deep
from dynds_core.spec import JobSpec


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- strict parsing


def test_nul_bytes_are_422_naming_the_field(settings, data_dir):
    spec, errors = spec_errors({"name": "a\x00b", "data": {"dataset": "imagefolder", "root": f"{data_dir}/x\x00"}}, settings)
    assert spec is None and {("name",), ("data", "root")} <= locs(errors)
    assert all("NUL" in e["msg"] for e in errors)


@pytest.mark.parametrize("key", ["²", "1e3", " 1", "١"])  # superscript two, exponent, space, Arabic-Indic one
def test_odd_digit_keys_are_keys_not_indices(settings, key):
    _, errors = spec_errors({"train": {key: 1}}, settings)
    assert ("train", key) in locs(errors)  # not int(key): "²".isdigit() is True, int("²") fails


def test_depth_is_bounded_before_any_validation(settings):
    assert too_deep(nested(40), 32) and not too_deep(nested(30), 32) and not too_deep({"a": {"b": 1}}, 2)
    assert too_deep(nested(100_000), 32)  # iterative: no RecursionError
    spec, errors = spec_errors({"train": {"seed": nested(900)}}, settings)
    assert spec is None and errors[0]["type"] == "value_error.depth"


def test_an_empty_spec_is_refused_unless_defaults_are_asked_for(settings):
    spec, errors = spec_errors({}, settings)
    assert spec is None and errors[0]["loc"] == [] and '{"defaults": true}' in errors[0]["msg"]
    spec, errors = spec_errors({"defaults": True}, settings)
    assert errors == [] and spec == JobSpec()
    for bad in ({"defaults": True, "train": {"epochs": 3}}, {"defaults": False}, {"defaults": "yes"}):
        _, errors = spec_errors(bad, settings)
        assert locs(errors) == {("defaults",)}
    with pytest.raises(RequestValidationError) as ei:  # as the routes raise it
        parse_spec_request({}, settings)
    assert ei.value.errors()[0]["loc"] == ["body", "spec"]


# ---------------------------------------------------------------- bounded cost


def test_resize_target_larger_than_the_kernels_is_422(settings):
    _, errors = spec_errors({"dynds": {"kernel": {"mode": "resize", "size": [100000, 100000]}}}, settings)
    assert {("dynds", "kernel", "size", 0), ("dynds", "kernel", "size", 1)} <= locs(errors)
    _, errors = spec_errors({"dynds": {"kernel": {"mode": "resize", "size": [4, 4]}}}, settings)
    assert locs(errors) == {("dynds", "kernel", "size")} and "3x3" in errors[0]["msg"]


@pytest.mark.parametrize("mode, scale", [("avg", "sum"), ("max", "none")])
def test_a_pooling_window_larger_than_the_kernels_is_422(settings, mode, scale):
    # The library refused it only when it built the reduced pass: the cost estimate raised it as a 500.
    _, errors = spec_errors({"dynds": {"kernel": {"mode": mode, "window": 4, "stride": 2, "scale": scale}}}, settings)
    assert locs(errors) == {("dynds", "kernel", "window")} and "at most 3" in errors[0]["msg"]
    assert spec_errors({"dynds": {"kernel": {"mode": mode, "window": 3, "stride": 2, "scale": scale}}}, settings)[1] == []


def test_batch_larger_than_a_training_set_of_known_size_is_422(settings):
    _, errors = spec_errors({"data": {"synthetic_size": 64}, "train": {"batch_size": 128}}, settings)
    assert locs(errors) == {("train", "batch_size")} and "synthetic_size: 64" in errors[0]["msg"]
    _, errors = spec_errors({"data": {"train_subset": 100}}, settings)  # default batch 128
    assert locs(errors) == {("train", "batch_size")} and "train_subset: 100" in errors[0]["msg"]
    assert spec_errors({"data": {"train_subset": 100}, "train": {"batch_size": 100}}, settings)[1] == []


# ---------------------------------------------------------------- the reduced input


@pytest.mark.parametrize(
    "arch, small_input, image_size, factor, ok, fix",
    [("resnet20", False, 8, 8, False, "dynds.input.factor 4 or less, or data.image_size 16 or more"),
     ("resnet20", False, 8, 4, True, None), ("resnet20", False, 16, 8, True, None),
     # a torchvision stem (7x7 stride 2): a 2x2 reduced input leaves it one pixel; small_input's 3x3 stem does not
     ("resnet18", False, 8, 4, False, "dynds.input.factor 2 or less, or data.image_size 12 or more"),
     ("resnet18", True, 8, 4, True, None), ("resnet18", False, 32, 8, True, None),
     ("resnet50", False, 16, 8, False, "dynds.input.factor 5 or less, or data.image_size 24 or more")],
)  # fmt: skip
def test_a_reduced_input_too_small_for_the_network_is_422_naming_what_works(settings, arch, small_input, image_size, factor, ok, fix):
    spec = {"model": {"arch": arch, "small_input": small_input}, "data": {"image_size": image_size}, "dynds": {"input": {"factor": factor}}}
    _, errors = spec_errors(spec, settings)
    assert (errors == []) is ok, errors
    if not ok:
        assert locs(errors) == {("dynds", "input", "factor")} and fix in errors[0]["msg"]


def test_the_reduced_input_rule_follows_the_data_sets_size_and_the_schedule(settings, data_dir, monkeypatch):
    from dynds_core.data import base

    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", data_dir)
    _, errors = spec_errors({"data": {"dataset": "cifar10"}, "dynds": {"input": {"factor": 8}}}, settings)
    assert errors == []  # 32x32 / 8 = 4x4
    _, errors = spec_errors({"model": {"arch": "resnet50"}, "data": {"image_size": 8}, "dynds": {"input": {"factor": 8}}}, settings)
    assert "32x32 images" not in errors[0]["msg"] and "8x8 images" in errors[0]["msg"]
    # no reduced step runs: nothing to refuse
    assert spec_errors({"data": {"image_size": 8}, "dynds": {"input": {"factor": 8}, "schedule": {"kind": "none"}}}, settings)[1] == []
