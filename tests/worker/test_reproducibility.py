"""The reproducibility record's device is where training lands: dynds_core's resolve_device, never raising."""

import torch

from dynds_core.spec import JobSpec
from dynds_core.training import recipe
from worker.reproducibility import reproducibility_record


def _record(device, tmp_path):
    return reproducibility_record(JobSpec.parse({"train": {"device": device}}), repo_dir=tmp_path)


def test_the_recorded_device_is_the_one_training_resolves(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _record("auto", tmp_path)["device"] == "cpu"
    asked = []
    monkeypatch.setattr(recipe, "resolve_device", lambda name, **kw: asked.append(name) or torch.device("cpu"))
    assert _record("auto", tmp_path)["device"] == "cpu" and asked == ["auto"]  # the library's, not a copy


def test_a_device_this_machine_cannot_use_is_recorded_as_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    record = _record("cuda:1", tmp_path)  # training refuses the job; the record says what was asked
    assert record["device"] == "cuda:1" and record["git_revision"] is None
