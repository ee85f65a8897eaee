"""app.api.data_policy: where a spec's data may come from, checked through spec_errors as a submission is."""

from __future__ import annotations

import os

import pytest
from policy_helpers import locs, settings  # noqa: F401  (fixtures)

from app.api.spec_policy import spec_errors


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


def test_data_root_error_names_what_is_allowed(settings, data_dir):
    from app.api.data_policy import data_root_error

    assert data_root_error(str(data_dir / "cifar10"), settings) is None
    assert "absolute path" in data_root_error("data/cifar10", settings)
    assert str(data_dir) in data_root_error(f"{data_dir}/../elsewhere", settings)  # `..` is resolved first
