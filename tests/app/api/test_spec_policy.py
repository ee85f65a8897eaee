"""app.api.spec_policy: what a spec submitted over HTTP must satisfy, checked on Settings alone (no database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError

from app.api import spec_policy
from app.api.spec_policy import parse_spec_request, set_dotted, spec_errors, sweep_specs, too_deep
from app.core.config import Settings
from dynds_core.spec import JobSpec


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "cifar10").mkdir(parents=True)
    return d


@pytest.fixture
def settings(tmp_path, data_dir) -> Settings:
    return Settings(database_url="sqlite://", home=tmp_path / "home", data_dirs=[str(data_dir)], devices=["cpu"])


def locs(errors) -> set[tuple]:
    return {tuple(e["loc"]) for e in errors}


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


@pytest.mark.parametrize("key", ["dynds.²", "train.1e3", "train. 1", "train..epochs", "train.", "", "trän.seed"])
def test_grid_keys_are_parsed_strictly(settings, key):
    with pytest.raises(RequestValidationError) as ei:
        sweep_specs({}, {key: [1]}, settings)
    (err,) = [e for e in ei.value.errors() if e["loc"] == ["body", "grid", key]]
    assert "is not a spec key" in err["msg"]
    with pytest.raises(ValueError, match="is not a spec key"):
        set_dotted({}, key, 1)
    with pytest.raises(RequestValidationError) as ei:  # refused up front: only the bad key is named
        sweep_specs({}, {key: [1], "train.seed": [0]}, settings)
    assert [e["loc"] for e in ei.value.errors()] == [["body", "grid", key]]


def test_depth_is_bounded_before_any_copy(settings, monkeypatch):
    assert too_deep(nested(40), 32) and not too_deep(nested(30), 32) and not too_deep({"a": {"b": 1}}, 2)
    assert too_deep(nested(100_000), 32)  # iterative: no RecursionError
    deep = {"train": {"seed": nested(900)}}
    spec, errors = spec_errors(deep, settings)
    assert spec is None and errors[0]["type"] == "value_error.depth"
    monkeypatch.setattr(spec_policy.copy, "deepcopy", lambda *a: pytest.fail("deepcopy of a deep base"))
    for base, grid, loc in ((deep, {"train.lr": [0.1]}, ["body", "base"]), ({}, {"train.seed": [nested(900)]}, ["body", "grid", "train.seed"])):
        with pytest.raises(RequestValidationError) as ei:
            sweep_specs(base, grid, settings)
        assert ei.value.errors()[0]["loc"] == loc and "levels deep" in ei.value.errors()[0]["msg"]


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


def test_a_sweep_of_nothing_over_an_empty_base_is_refused(settings):
    with pytest.raises(RequestValidationError) as ei:
        sweep_specs({}, {}, settings)
    assert ei.value.errors()[0]["loc"] == ["body", "base"]
    assert len(sweep_specs({}, {"train.seed": [0, 1]}, settings)) == 2  # a grid makes every point non-empty


# ---------------------------------------------------------------- bounded cost


def test_resize_target_larger_than_the_kernels_is_422(settings):
    _, errors = spec_errors({"dynds": {"kernel": {"mode": "resize", "size": [100000, 100000]}}}, settings)
    assert {("dynds", "kernel", "size", 0), ("dynds", "kernel", "size", 1)} <= locs(errors)
    _, errors = spec_errors({"dynds": {"kernel": {"mode": "resize", "size": [4, 4]}}}, settings)
    assert locs(errors) == {("dynds", "kernel", "size")} and "3x3" in errors[0]["msg"]


def test_batch_larger_than_a_training_set_of_known_size_is_422(settings):
    _, errors = spec_errors({"data": {"synthetic_size": 64}, "train": {"batch_size": 128}}, settings)
    assert locs(errors) == {("train", "batch_size")} and "synthetic_size: 64" in errors[0]["msg"]
    _, errors = spec_errors({"data": {"train_subset": 100}}, settings)  # default batch 128
    assert locs(errors) == {("train", "batch_size")} and "train_subset: 100" in errors[0]["msg"]
    assert spec_errors({"data": {"train_subset": 100}, "train": {"batch_size": 100}}, settings)[1] == []


# ---------------------------------------------------------------- the data boundary


def test_a_root_that_does_not_exist_is_422(settings, data_dir):
    _, errors = spec_errors({"data": {"dataset": "imagefolder", "root": str(data_dir / "missing.tar.gz")}}, settings)
    assert locs(errors) == {("data", "root")} and "does not exist" in errors[0]["msg"]
    assert spec_errors({"data": {"dataset": "cifar10", "root": str(data_dir / "cifar10")}}, settings)[1] == []


def test_symlinked_roots_pointing_outside_are_422(settings, data_dir, tmp_path):
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", data_dir / "link")
    _, errors = spec_errors({"data": {"dataset": "imagefolder", "root": str(data_dir / "link")}}, settings)
    assert locs(errors) == {("data", "root")} and "outside the server's data directories" in errors[0]["msg"]


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_symlink_inside_the_root_pointing_outside_is_422_before_queueing(settings, data_dir, tmp_path, depth, kind):
    """Only root was resolved at submission: a link deeper inside an allowed folder was caught only when
    the worker read it, after the job was queued. Now every entry is resolved, at any depth."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    root = data_dir / "folder"
    inner = root.joinpath(*["train", "cat", "sub"][: depth - 1]) if depth > 1 else root
    inner.mkdir(parents=True)
    link = inner / ("leak.png" if kind == "file" else "leak")
    link.symlink_to(outside / "secret.png" if kind == "file" else outside)
    spec = {"data": {"dataset": "imagefolder", "root": str(root)}}
    _, errors = spec_errors(spec, settings)
    assert locs(errors) == {("data", "root")}
    assert str(link) in errors[0]["msg"] and "outside the server's data directories" in errors[0]["msg"]
    link.unlink()
    link.symlink_to(data_dir / "cifar10")  # a link that stays inside is fine
    assert spec_errors(spec, settings)[1] == []


def test_a_symlink_loop_inside_the_root_ends_the_search(settings, data_dir):
    root = data_dir / "loop"
    (root / "a").mkdir(parents=True)
    (root / "a" / "back").symlink_to(root)
    assert spec_errors({"data": {"dataset": "imagefolder", "root": str(root)}}, settings)[1] == []


def test_a_default_root_with_a_link_out_is_422(settings, data_dir, tmp_path, monkeypatch):
    from dynds_core.data import base

    (tmp_path / "outside").mkdir()
    (data_dir / "cifar10" / "data_batch_1").symlink_to(tmp_path / "outside")
    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", data_dir)
    _, errors = spec_errors({"data": {"dataset": "cifar10"}}, settings)
    assert locs(errors) == {("data", "root")} and "data_batch_1" in errors[0]["msg"]


def test_null_roots_are_checked_as_the_loaders_default_places(settings, data_dir, tmp_path, monkeypatch):
    from dynds_core.data import base, fashion_mnist

    outside = tmp_path / "user-cache"
    outside.mkdir()
    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", outside)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_ROOT", tmp_path / "usr-share")
    for dataset in ("cifar10", "cifar100", "fashion-mnist", "imagefolder"):
        _, errors = spec_errors({"data": {"dataset": dataset}}, settings)
        assert locs(errors) == {("data", "root")}, dataset
    assert "outside the server's data directories" in spec_errors({"data": {"dataset": "cifar10"}}, settings)[1][0]["msg"]
    # the default place inside the data dirs (and holding the data): accepted
    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", data_dir)
    assert spec_errors({"data": {"dataset": "cifar10"}}, settings)[1] == []
    (data_dir / "fashion-mnist").mkdir()
    for name in fashion_mnist.FILES.values():
        (data_dir / "fashion-mnist" / name).write_bytes(b"")
    assert spec_errors({"data": {"dataset": "fashion-mnist"}}, settings)[1] == []


def test_download_needs_the_servers_permission(settings, data_dir):
    spec = {"data": {"dataset": "cifar10", "root": str(data_dir / "cifar10"), "download": True}}
    _, errors = spec_errors(spec, settings)
    assert locs(errors) == {("data", "download")} and "DYNDS_ALLOW_DOWNLOAD" in errors[0]["msg"]
    assert spec_errors(spec, settings.model_copy(update={"allow_download": True}))[1] == []


# ---------------------------------------------------------------- the deployment


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
