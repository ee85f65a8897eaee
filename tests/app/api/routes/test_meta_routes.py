"""GET /meta and POST /specs/validate."""

import pytest

from dynds_core import spec as spec_module

API = "/api/v1"


def test_meta_lists_choices_defaults_presets(client, settings):
    meta = client.get(f"{API}/meta").json()
    assert meta["choices"]["arch"] == list(spec_module.ARCHS)
    assert meta["choices"]["schedule_kind"] == list(spec_module.SCHEDULE_KINDS)
    assert meta["defaults"]["train"]["epochs"] == spec_module.TrainSpec().epochs
    assert meta["auth_required"] is False and meta["read_requires_token"] is False
    assert meta["data_dirs"] == settings.data_dirs
    for name, preset in meta["presets"].items():  # whatever examples/ holds, each is a canonical spec
        assert set(preset) == set(meta["defaults"]), name


def test_validate_returns_canonical_spec_and_hash_or_422(client):
    r = client.post(f"{API}/specs/validate", json={"spec": {"train": {"epochs": 4}}})
    assert r.status_code == 200
    body = r.json()
    assert body["spec"]["train"]["epochs"] == 4 and len(body["spec_hash"]) == 16
    bad = client.post(f"{API}/specs/validate", json={"spec": {"train": {"epochs": 0}}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "spec", "train", "epochs"]
    assert client.get(f"{API}/jobs").json()["count"] == 0


def test_validate_estimates_flops(client):
    pytest.importorskip("dynds_core.flops", reason="dynds_core.flops (the FLOP estimator) is not in this tree yet")
    est = client.post(f"{API}/specs/validate", json={"spec": {}}).json()["estimate"]
    assert est["flops_full_step"] > est["flops_reduced_step"] > 0
    assert 0 < est["predicted_flop_saving"] < 1


def test_presets_skip_invalid_files_and_follow_changes(tmp_path):
    import os

    from app.api.routes.meta import load_presets

    (tmp_path / "quick.yaml").write_text("train:\n  epochs: 3\n")
    (tmp_path / "broken.yaml").write_text("train:\n  epochs: 0\n")
    assert list(load_presets(tmp_path)) == ["quick"] and load_presets(tmp_path)["quick"]["train"]["epochs"] == 3
    (tmp_path / "quick.yaml").write_text("train:\n  epochs: 4\n")
    os.utime(tmp_path / "quick.yaml", ns=(1, 10**18))  # a distinct mtime even on coarse clocks
    assert load_presets(tmp_path)["quick"]["train"]["epochs"] == 4
    assert load_presets(tmp_path / "missing") == {}


def test_preset_data_roots_are_absolute_from_the_repository_root(tmp_path):
    """examples/ name data relative to the repository root; the API would refuse a relative root."""
    from app.api.routes.meta import load_presets

    examples = tmp_path / "repo" / "examples"
    examples.mkdir(parents=True)
    (examples / "real.yaml").write_text("data:\n  dataset: imagefolder\n  root: ../shared/data/c.tar.gz\n")
    root = load_presets(examples)["real"]["data"]["root"]
    assert root == str(tmp_path / "shared" / "data" / "c.tar.gz")
